"""The gateway as its own process, the way systemd runs it, for end-to-end tests.

``GatewayProcess`` writes the rules file, starts ``python -m gateway run``
with settings in the environment, waits for its ``ready`` log line, and on
exit sends SIGTERM and records how it ended. A pjlib assert aborts the
process (exit -6, SIGABRT): :meth:`GatewayProcess.assert_clean_exit` makes
that a test failure with the log attached.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self, TypeVar

from sipp import LOOPBACK, free_udp_port

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import TracebackType

READY_TIMEOUT = 15.0
EXIT_TIMEOUT = 15.0
REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
RTP_BLOCK = 40  # ports for one gateway's RTP and RTCP: its call legs, with room to spare


class GatewayProcess:
    """Run the gateway on 127.0.0.1 for one test.

    Args:
        workdir: the test's folder (rules file, state dir, log).
        rules: text of the rules file (YAML).
        proxy: ``host:port`` where legs to numbers go (the trunk's proxy).
        registrar: ``host:port`` of the trunk registrar; None: no registration.
        username: trunk account user.
        password: trunk account password.
        expires: registration expiry asked for, seconds.
        sources: addresses allowed to send calls in.
        env: more ``SIP_FAILOVER_*`` settings (they win over the above).
        args: more arguments of ``run`` (``--workers 3``).
        host: the address it listens on (another namespace's: tests/integration/netns.py).
        command: the subcommand (``run``, ``edge``).
        prefix: what runs it (``ip netns exec NAME``), nothing for this namespace.
    """

    def __init__(
        self,
        workdir: Path,
        rules: str,
        *,
        proxy: str | None = None,
        registrar: str | None = None,
        username: str = "gateway",
        password: str = "secret",
        expires: int = 300,
        sources: Sequence[str] = (LOOPBACK,),
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        host: str = LOOPBACK,
        command: Sequence[str] = ("run",),
        prefix: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.args = list(args)
        self.host = host
        self.argv = [*prefix, sys.executable, "-m", "gateway", *command]
        self.port = free_udp_port()
        self.rules_path = workdir / "rules.yaml"
        self.log_path = workdir / "gateway.log"
        self.exit_code: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._settings = {
            "SIP_FAILOVER_SIP__LISTEN": f"{host}:{self.port}",
            # RTP ports of its own: two gateways on one block (several test runs at
            # once) could bind the same port and hear each other's audio.
            "SIP_FAILOVER_SIP__RTP_PORT": str(free_udp_port(RTP_BLOCK, even=True)),
            "SIP_FAILOVER_SIP__RTP_PORT_RANGE": str(RTP_BLOCK),
            "SIP_FAILOVER_TRUNK__REGISTRAR": f"sip:{registrar or LOOPBACK}",
            "SIP_FAILOVER_TRUNK__REGISTER": "true" if registrar else "false",
            "SIP_FAILOVER_TRUNK__USERNAME": username,
            "SIP_FAILOVER_TRUNK__PASSWORD": password,
            "SIP_FAILOVER_TRUNK__SOURCES": json.dumps(list(sources)),
            "SIP_FAILOVER_TRUNK__EXPIRES": str(expires),
            "SIP_FAILOVER_RULES": str(self.rules_path),
            "SIP_FAILOVER_STATE_DIR": str(workdir / "state"),
        }
        if proxy:
            self._settings["SIP_FAILOVER_TRUNK__PROXY"] = f"sip:{proxy}"
        self._settings.update(env or {})
        self._rules = rules

    @property
    def address(self) -> str:
        """``127.0.0.1:port`` of the gateway's SIP socket (for SIPp's remote)."""
        return f"{self.host}:{self.port}"

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> Self:
        """Start the gateway and wait for its ``ready`` line (15 s)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.rules_path.write_text(self._rules, encoding="utf-8")
        # Only our settings: a developer's own SIP_FAILOVER_* must not leak in.
        base = {k: v for k, v in os.environ.items() if not k.startswith("SIP_FAILOVER_")}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*self.argv, *self.args],
                cwd=self.workdir,
                env={**base, "PYTHONPATH": str(REPO), **self._settings},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._ready_logged():
            if self.process.poll() is not None:
                self.exit_code = self.process.returncode
                raise AssertionError(f"gateway died before ready\n{self.describe()}")
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(
                    f"gateway not ready in {READY_TIMEOUT:.0f} s\n{self.describe()}"
                )
            time.sleep(0.05)

    def _ready_logged(self) -> bool:
        listen = f"listen={self.address}"
        return any("ready" in line and listen in line for line in self.log.splitlines())

    def stop(self) -> int:
        """SIGTERM, wait up to 15 s (then SIGKILL), record and return the exit code."""
        if self.process is None:
            raise AssertionError("gateway was never started")
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._dump_stacks()  # where it hung, into the log the failure shows
                self.process.kill()
                self.process.wait(timeout=5)
                self.exit_code = -int(signal.SIGKILL)
                return self.exit_code
        self.exit_code = self.process.returncode
        return self.exit_code

    def _dump_stacks(self, within: float = 3.0) -> None:
        """SIGUSR1: the gateway writes every thread's stack to its log (service/stacks.py)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + within
        while "Current thread" not in self.log and time.monotonic() < deadline:
            time.sleep(0.05)

    def is_alive(self, timeout: float = 1.0) -> bool:
        """Whether the gateway answers an OPTIONS from a plain socket within ``timeout``."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, 0))
            sock.settimeout(timeout)
            sock.sendto(_options(self.address, sock.getsockname()[1]), (LOOPBACK, self.port))
            try:
                sock.recv(4096)
            except TimeoutError:
                return False
        return self.process is not None and self.process.poll() is None

    def send_udp(self, payload: bytes, src_ip: str = LOOPBACK) -> None:
        """Push one raw datagram to the gateway's SIP port from ``src_ip``."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((src_ip, 0))
            sock.sendto(payload, (LOOPBACK, self.port))

    def assert_clean_exit(self) -> None:
        """Stop the gateway if needed; fail unless it exited 0."""
        code = self.exit_code if self.exit_code is not None else self.stop()
        if code == 0:
            return
        why = {
            -int(signal.SIGABRT): "aborted (SIGABRT): a pjlib assert fired in the SIP engine",
            -int(signal.SIGKILL): f"did not exit within {EXIT_TIMEOUT:.0f} s of SIGTERM",
            -int(signal.SIGSEGV): "crashed (SIGSEGV), likely a pjsua2 object used after free",
        }.get(code, "exited with an error")
        raise AssertionError(f"gateway {why}: exit {code}\n{self.describe()}")

    def describe(self, tail: int = 6000) -> str:
        return f"--- gateway log (tail) ---\n{self.log[-tail:]}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.exit_code is None and self.process is not None:
            self.stop()


def _options(target: str, local_port: int) -> bytes:
    """A minimal RFC 3261 OPTIONS request from 127.0.0.1:local_port."""
    tag = secrets.token_hex(4)
    return (
        f"OPTIONS sip:{target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{LOOPBACK}:{local_port}>;tag={tag}\r\n"
        f"To: <sip:{target}>\r\n"
        f"Call-ID: {secrets.token_hex(8)}@{LOOPBACK}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Accept: application/sdp\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def observed(window: float, happened: Callable[[], T]) -> T | None:
    """Watch ``happened()`` for ``window`` seconds: what it first returned that was
    truthy, or None if nothing happened. A check that something does NOT happen
    needs a window; this one ends early when it does, and names what came.
    """
    deadline = time.monotonic() + window
    while True:
        seen = happened()
        if seen or time.monotonic() >= deadline:
            return seen or None
        time.sleep(0.05)


def sip_failover(gateway: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``sip-failover <args>`` as an admin would, on the gateway's state folder."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIP_FAILOVER_")}
    env = {
        **base,
        "PYTHONPATH": str(REPO),
        "SIP_FAILOVER_STATE_DIR": str(gateway.workdir / "state"),
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=gateway.workdir, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
