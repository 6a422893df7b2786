"""``sip-failover probe TARGET``: ask the network about one target, once, now.

A process of its own, next to a running gateway: pjsua allows one endpoint
per process, so this one gets its own, on an ephemeral port of the listen
address, with no registration (a second contact registered for the trunk
account could take the gateway's incoming calls) and refusing every INVITE.
It runs one probe through ``gateway.health.probes.Prober``, prints what the network
answered and the verdict the health board would draw from it, and exits.

Exit codes: 0 the probe ran (whatever it found), 2 bad settings, rules or
target name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import TYPE_CHECKING, TextIO

from gateway.app import setup_logging
from gateway.config_check import checked_settings
from gateway.core.admission import Capacity
from gateway.core.health import ProbeResult, verdict
from gateway.core.plan import dial_of
from gateway.core.rules import RulesError
from gateway.health.probes import Prober
from gateway.rules.load import load_rules
from gateway.sip.engine import SipEngine
from gateway.sip.engine_limits import planned_limits
from gateway.sip.signals import LegSignal, OptionsSignal

if TYPE_CHECKING:
    from collections.abc import Iterator

    from gateway.config import Settings
    from gateway.core.health import Evidence
    from gateway.core.plan import Dial
    from gateway.core.rules import Rules

KINDS = ("call", "options")
POLL_S = 0.005  # pjsua is polled from the loop (threadCnt=0)
DRAIN_S = 3.0  # after the probe: time for the CANCEL/487/ACK exchange to finish
EXIT_RAN, EXIT_USAGE = 0, 2


def probe(target: str, kind: str | None, out: TextIO, err: TextIO) -> int:
    """Run one probe of ``target`` and print the answer.

    Args:
        target: a target name from the rules file of the settings.
        kind: ``call`` or ``options``; None: the target's ``health.probe``,
            else ``call``.
        out: where the answer is printed.
        err: where problems with settings, rules or arguments are printed.

    Returns:
        0 when the probe ran, 2 for bad settings, rules, kind or target.
    """
    settings = checked_settings(err)
    if settings is None:
        return EXIT_USAGE
    try:
        rules = load_rules(settings.rules)
    except RulesError as error:
        for problem in error.problems:
            print(problem, file=err)
        return EXIT_USAGE
    if target not in rules.targets:
        known = ", ".join(sorted(rules.targets)) or "none"
        print(f"unknown target {target!r} in {settings.rules} (targets: {known})", file=err)
        return EXIT_USAGE
    kind = kind or _configured_kind(rules, target)
    if kind not in KINDS:
        print(f"unknown probe kind {kind!r} (expected call or options)", file=err)
        return EXIT_USAGE
    dial = dial_of(target, rules.targets[target])
    setup_logging(settings.log_level)
    evidence, reason = asyncio.run(_probe_once(_own_endpoint(settings), dial, kind, rules))
    print(describe(dial, kind, evidence, reason), file=out)
    return EXIT_RAN


def _configured_kind(rules: Rules, target: str) -> str:
    watch = rules.health.get(target)
    return (watch.probe if watch is not None else None) or "call"


def _own_endpoint(settings: Settings) -> Settings:
    """The settings for this process's own endpoint: any free port, no REGISTER."""
    sip = settings.sip.model_copy(update={"listen": f"{settings.sip.host}:0", "rtp_port": 0})
    trunk = settings.trunk.model_copy(update={"register_enabled": False})
    return settings.model_copy(update={"sip": sip, "trunk": trunk})


async def _probe_once(
    settings: Settings, dial: Dial, kind: str, rules: Rules
) -> tuple[Evidence | None, str]:
    limits = planned_limits()
    engine = SipEngine(settings, lambda _offer, _last_resort: False, limits)  # takes no call
    loop = asyncio.get_running_loop()
    prober = Prober(engine, loop, Capacity(limits.call_legs, limits.io_handles))
    with stdout_to_stderr():
        engine.start()
    prober.capacity = Capacity(engine.limits.call_legs, engine.limits.io_handles)  # as kept
    pump = loop.create_task(_pump(engine, prober), name="probe.pump")
    try:
        if kind == "options":
            return await prober.options_answer(engine.dial_uri(dial))
        return await prober.call(dial, sit_itu=rules.sit.itu), ""
    finally:
        await _drain(engine)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        engine.destroy()


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """pjlib prints its start-up lines on stdout (fd 1) before any log setting
    applies: keep stdout for the answer, which scripts read."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


async def _pump(engine: SipEngine, prober: Prober) -> None:
    while True:
        for signal in engine.poll():
            if isinstance(signal, OptionsSignal):
                prober.on_options(signal)
            elif isinstance(signal, LegSignal):
                prober.on_leg(signal)
        await asyncio.sleep(POLL_S)


async def _drain(engine: SipEngine) -> None:
    """Let a cancelled probe leg end (487 ACKed) before the endpoint goes."""
    for _ in range(round(DRAIN_S / POLL_S)):  # bounded: a silent far end cannot hold us
        if not engine.legs_in_use():
            return
        await asyncio.sleep(POLL_S)
    if engine.legs_in_use():
        engine.hang_up_all()


def describe(dial: Dial, kind: str, evidence: Evidence | None, reason: str = "") -> str:
    """What the network answered, as lines for a person.

    E.g. ``office-mobile (+32470000001), call probe``, then ``answer: 404``,
    ``Q.850 cause: 1``, ``outcome: unassigned``, ``verdict: unassigned``.
    ``reason`` is the answer's reason phrase where the engine reports it
    (OPTIONS); pjsua's INVITE legs report the code and Reason header only.
    """
    head = f"{dial.name} ({dial.label}), {kind} probe"
    if evidence is None:
        return f"{head}\nnot run: no call leg free"
    seen = verdict(evidence)
    answer = "none" if evidence.sip_code is None else f"{evidence.sip_code} {reason}".strip()
    if evidence.outcome is ProbeResult.PROGRESS:
        answer += " (ringing: CANCEL sent)"
    lines = [
        head,
        f"answer: {answer}",
        f"Q.850 cause: {'none' if evidence.q850 is None else evidence.q850}",
        f"outcome: {evidence.outcome.value}",
        f"verdict: {'none' if seen is None else seen.value}",
        f"evidence: {evidence.text}",
    ]
    return "\n".join(lines)
