"""Checks of this machine: the SIP engine, the rules file, the state folder, the clock."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

from gateway.cli.doctor.result import CheckResult
from gateway.cli.probe import stdout_to_stderr
from gateway.core.rules import RulesError
from gateway.rules.load import load_rules
from gateway.sip.engine_limits import running_limits

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from gateway.sip.limits import EngineLimits

MIN_FREE_BYTES = 200 * 1024 * 1024  # about 10 hours of voicemail (16 kB/s)
_ASK_FOR_CALLS = 10_000  # pjsua keeps min(this, PJSUA_MAX_CALLS)
_STA_UNSYNC = 0x0040  # <sys/timex.h>: the kernel clock is not synchronised
_TIME_ERROR = 5  # ntp_adjtime's return for an unsynchronised clock
_ENGINE_FIX = ("install the SIP engine: on x86-64 `pip install pjsua2-python==2.15.1.post1`; "
               "elsewhere build it with deploy/build-pjsua2.sh (docs/install.md)")  # fmt: skip


def check_engine() -> tuple[CheckResult, EngineLimits | None]:
    """Load pjsua2, initialise it asking for far more calls than any build has, read what it kept.

    Returns:
        The result, and the limits read (None when the engine does not load).
    """
    try:
        import pjsua2 as pj  # noqa: PLC0415 - the engine is what is being checked
    except ImportError as error:
        return CheckResult.failed("engine", f"pjsua2 does not load: {error}", _ENGINE_FIX), None
    endpoint = pj.Endpoint()
    try:
        with stdout_to_stderr():
            endpoint.libCreate()
            endpoint.libInit(_quiet_config(pj))
            limits = running_limits(endpoint)
            version = endpoint.libVersion().full
    except pj.Error as error:
        return CheckResult.failed("engine", f"pjsua2 does not start: {error.info()}",
                                  _ENGINE_FIX), None  # fmt: skip
    finally:
        with stdout_to_stderr():
            endpoint.libDestroy()
    return CheckResult.passed("engine", f"pjsua2 {version}: {describe(limits)}"), limits


def describe(limits: EngineLimits) -> str:
    """The limits in one line, as ``doctor`` and the log show them."""
    handles = f" of {limits.io_handles} handles" if limits.io_handles else ""
    tls = f"TLS {limits.tls} ({limits.tls_ciphers} ciphers)" if limits.tls_ciphers else "no TLS"
    return (f"{limits.call_slots} call slots ({limits.call_legs} for calls), "
            f"{limits.io_queue} I/O queue{handles}, {tls}")  # fmt: skip


def _quiet_config(pj: object) -> object:
    cfg = pj.EpConfig()  # type: ignore[attr-defined]
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.maxCalls = _ASK_FOR_CALLS
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    return cfg


def check_rules(path: Path, call_legs: int) -> CheckResult:
    """The rules file is valid for an engine with ``call_legs`` legs for calls."""
    try:
        rules = load_rules(path, call_legs=call_legs)
    except RulesError as error:
        problems = [str(p) for p in error.problems]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        fix = f"run `sip-failover check {path}` and fix each line it names"
        return CheckResult.failed("rules", problems[0] + more, fix)
    return CheckResult.passed("rules", f"{path}: {len(rules.routes)} routes, "
                                       f"{len(rules.targets)} targets")  # fmt: skip


def check_state_dir(folder: Path, min_free: int = MIN_FREE_BYTES) -> CheckResult:
    """The state folder exists (or can be made), is writable, and has room for voicemail."""
    probe = folder / f".doctor.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with probe.open("wb") as file:
            file.write(b"sip-failover doctor\n")
            os.fsync(file.fileno())
        probe.unlink()
    except OSError as error:
        return CheckResult.failed("state folder", f"{folder}: cannot write: {error.strerror}",
                                  f"create {folder} writable by the gateway's user, or set "
                                  "SIP_FAILOVER_STATE_DIR")  # fmt: skip
    free = shutil.disk_usage(folder).free
    if free < min_free:
        return CheckResult.failed("state folder", f"{folder}: only {free // 2**20} MB free",
                                  f"free space there (at least {min_free // 2**20} MB: "
                                  "voicemail and the call log live there)")  # fmt: skip
    return CheckResult.passed("state folder", f"{folder}: writable, {free // 2**20} MB free")


def check_clock(
    readers: tuple[Callable[[], bool | None], ...] | None = None,
) -> CheckResult:
    """The clock is synchronised: schedules, mail dates and the call log depend on it.

    Args:
        readers: ways to tell, tried in order; each returns True/False, or None
            when it cannot tell (default: timedatectl, then ntp_adjtime).
    """
    for read in readers if readers is not None else (timedatectl_synced, adjtimex_synced):
        synced = read()
        if synced is True:
            return CheckResult.passed("clock", f"synchronised ({_how(read)})")
        if synced is False:
            return CheckResult.failed("clock", f"not synchronised ({_how(read)})",
                                      "enable time synchronisation: `timedatectl set-ntp true` "
                                      "(systemd-timesyncd) or install chrony")  # fmt: skip
    return CheckResult.passed("clock", "unknown: neither timedatectl nor ntp_adjtime can tell")


def _how(read: Callable[[], bool | None]) -> str:
    return {"timedatectl_synced": "timedatectl", "adjtimex_synced": "kernel ntp_adjtime"}.get(
        getattr(read, "__name__", ""), "checked")


def timedatectl_synced() -> bool | None:
    """``timedatectl show -p NTPSynchronized``: None without systemd."""
    if shutil.which("timedatectl") is None:
        return None
    try:
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],  # noqa: S607
                             capture_output=True, text=True, timeout=5, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = out.stdout.strip()
    return {"yes": True, "no": False}.get(value) if out.returncode == 0 else None


class _Timex(ctypes.Structure):
    """``struct timex`` of Linux (<sys/timex.h>), only its head is read."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("rest", ctypes.c_long * 32)]  # fmt: skip


def adjtimex_synced() -> bool | None:
    """The kernel's NTP status (``ntp_adjtime`` with no change): None off Linux."""
    try:
        ntp_adjtime = ctypes.CDLL(None, use_errno=True).ntp_adjtime
    except (OSError, AttributeError):
        return None
    timex = _Timex()
    state = ntp_adjtime(ctypes.byref(timex))
    if state < 0:
        return None
    return state != _TIME_ERROR and not timex.status & _STA_UNSYNC
