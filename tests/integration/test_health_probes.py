"""Know that the main line is dead before a customer does: probes over real SIP.

The gateway runs as its own process; SIPp plays the operator behind the
trunk's proxy and the phones. Probe intervals are 1 s here (15 min by
default); the alert window is 1 s (120 s by default). Timings are printed
(run with ``-s``), never asserted.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from gateway_process import REPO, GatewayProcess, observed

if TYPE_CHECKING:
    from collections.abc import Callable
    from email.message import EmailMessage
    from pathlib import Path

    from conftest import SippFactory
    from mailserver import MailServer
    from sipp import Sipp, SippResult

pytestmark = pytest.mark.integration
ADMIN = "admin@example.com"
CALLED = "+3225550100"
MAIN_NUMBER = "+32470000001"
ALERT_WINDOW_S = 1.5  # an alert is due 1 s after the last change: watched this long
_EVENT = re.compile(r" event (\S+) (\{.*\})$", re.MULTILINE)
_TRACE_HEAD = re.compile(
    r"^-{10,} (\S+ \S+)\n\S+ message (sent|received)[^\n]*:\n\n(.*)$", re.MULTILINE
)


@pytest.fixture
def gateway_dir(tmp_path: Path) -> Path:
    return tmp_path / "gateway"


def events(gateway: GatewayProcess, kind: str | None = None) -> list[dict[str, Any]]:
    """The gateway's status events so far, in order (from its log)."""
    found = [(k, json.loads(data)) for k, data in _EVENT.findall(gateway.log)]
    return [data for k, data in found if kind is None or k == kind]


def wait_for(
    gateway: GatewayProcess, kind: str, match: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    """The first event of ``kind`` that ``match`` accepts; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hit = next((e for e in events(gateway, kind) if match(e)), None)
        if hit is not None:
            return hit
        time.sleep(0.05)
    probes = gateway.log.count("probe of ")
    raise AssertionError(
        f"no matching {kind} event in {timeout:.0f} s ({probes} probe results logged; none"
        " means the health monitor never ran)\n" + gateway.describe()
    )


def health_is(target: str, state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["target"] == target and e["state"] == state


def invite_times(result: SippResult, direction: str) -> list[datetime]:
    """When SIPp sent or received each INVITE (its trace's own time stamps)."""
    text = result.trace.replace("\r\n", "\n")
    return [
        datetime.fromisoformat(stamp)
        for stamp, way, first in _TRACE_HEAD.findall(text)
        if way == direction and first.startswith("INVITE ")
    ]


def rules_text(targets: dict[str, str], health: dict[str, str], ring: str = "main") -> str:
    """Rules: ring ``ring`` for 1 s, then ``backup`` (if a target), with health watches."""
    lines = ["version: 1", "targets:"]
    lines += [f"  {name}: {spec}" for name, spec in targets.items()]
    lines += ["routes:", "  - name: main-line", f'    match: {{to: "{CALLED}"}}', "    steps:"]
    lines += [f"      - {{ring: {ring}, timeout: 1s, early_media_timeout: 1s}}"]
    lines += ["      - {ring: backup, timeout: 5s}"] if "backup" in targets else []
    lines += [f"alerts: {{email: [{ADMIN}], coalesce: 1s}}"]  # mail 1 s after the last change
    lines += ["health:"] if health else []
    lines += [f"  {name}: {spec}" for name, spec in health.items()]
    return "\n".join(lines) + "\n"


def mails_to_admin(mail: MailServer, count: int, timeout: float = 10.0) -> list[EmailMessage]:
    """Wait (bounded) until the admin has ``count`` alert mails; return them in order."""
    deadline = time.monotonic() + timeout
    while len(mail.inbox.accepted) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    got = [m for m in mail.inbox.accepted if m["To"] == ADMIN]
    assert len(got) == count, f"{len(got)} alert mails, wanted {count}"
    return got


def call_through(sipp: SippFactory, gateway: GatewayProcess) -> SippResult:
    """One caller, answered (by whoever), hanging up after 100 ms."""
    caller = sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 100})
    result = caller.start().wait()
    result.assert_success()
    return result


def swap(sipp: SippFactory, old: Sipp, scenario: str, **keys: str | int) -> Sipp:
    """The operator changes its mind: another scenario on the same port."""
    old.stop()
    return sipp(scenario, port=old.port, calls=None, timeout_s=60, keys=keys).start()


def test_dead_main_line_is_skipped_until_it_recovers(
    sipp: SippFactory, gateway_dir: Path, mail: MailServer
) -> None:
    operator = sipp("phone_ring_forever", calls=None, timeout_s=60).start()
    backup = sipp("phone_answer", calls=None, timeout_s=80, keys={"answer_ms": 50}).start()
    rules = rules_text(
        {"main": f'{{number: "{MAIN_NUMBER}"}}', "backup": f'{{uri: "sip:b@{backup.address}"}}'},
        {"main": "{probe: call, every: 1s, down_after: 2, up_after: 1}"},
    )
    mail.start()
    with GatewayProcess(gateway_dir, rules, proxy=operator.address, env=mail.env()) as gateway:
        wait_for(gateway, "target.health", health_is("main", "up"), 15)
        probes_before = gateway.log.count("call probe probe-")
        lost_at = datetime.now().astimezone()
        operator = swap(sipp, operator, "phone_reject_reason", code=404, cause=1)
        dead = wait_for(gateway, "target.health", health_is("main", "unassigned"), 15)
        assert dead["evidence"]["sip_code"] == 404
        assert dead["evidence"]["q850"] == 1
        detected_s = (datetime.fromisoformat(dead["since"]) - lost_at).total_seconds()
        alert = wait_for(gateway, "health.alert", health_is("main", "unassigned"), 10)
        assert "UNASSIGNED" in alert["text"]
        (lost,) = mails_to_admin(mail, 1)
        # (An encoded, folded subject may come back with a doubled space.)
        assert lost["Subject"].split() == f"sip-failover: {alert['text']}".split()

        callers = [call_through(sipp, gateway) for _ in range(5)]
        steps = events(gateway, "call.step")
        assert len(steps) == 5, gateway.describe()
        assert all(s["targets"] == ["backup"] for s in steps), "the dead main line was rung"
        probes_sent = gateway.log.count("call probe probe-") - probes_before
        # Probes reach the operator meanwhile; real calls must not.
        assert len(operator.collect().received("INVITE")) <= probes_sent

        operator = swap(sipp, operator, "phone_ring_forever")
        wait_for(gateway, "target.health", health_is("main", "up"), 15)
        back = wait_for(gateway, "health.alert", health_is("main", "up"), 10)
        assert back["previous"] == "unassigned"
        recovered = mails_to_admin(mail, 2)[1]
        assert "is UP again" in recovered["Subject"]
        call_through(sipp, gateway)
        assert events(gateway, "call.step")[5]["targets"] == ["main"], "the main line was skipped"
    gateway.assert_clean_exit()
    answered_at = invite_times(backup.collect(), "received")
    called_at = [invite_times(c, "sent")[0] for c in callers]
    skip_ms = [(b - c).total_seconds() * 1000 for c, b in zip(called_at, answered_at, strict=False)]
    print(f"\ndetection (operator answers 404 -> state unassigned): {detected_s:.2f} s")
    print(f"caller INVITE -> backup INVITE, main skipped: p50 {statistics.median(skip_ms):.1f} ms"
          f" over {len(skip_ms)} calls: {', '.join(f'{ms:.1f}' for ms in skip_ms)}")  # fmt: skip


def call_from(sipp: SippFactory, gateway: GatewayProcess, cli: str, *, answered: bool) -> None:
    """One call from ``cli``: answered (held 100 ms), or refused by the gateway."""
    scenario = "caller_answered" if answered else "caller_refused"
    caller = sipp(scenario, remote=gateway.address, keys={"cli": cli, "hold_ms": 100})
    caller.start().wait().assert_success()


def test_the_recovery_mail_lists_the_callers_who_reached_nobody(
    sipp: SippFactory, gateway_dir: Path, mail: MailServer
) -> None:
    operator = sipp("phone_ring_forever", calls=None, timeout_s=90).start()
    backup = sipp("phone_reject_reason", calls=None, timeout_s=90,
                  keys={"code": 486, "cause": 17}).start()  # fmt: skip
    rules = rules_text(
        {"main": f'{{number: "{MAIN_NUMBER}"}}', "backup": f'{{uri: "sip:b@{backup.address}"}}'},
        {"main": "{probe: call, every: 1s, down_after: 2, up_after: 1}"},
    )
    before, anna, bert, carl, answered = (f"+3247011{n:04d}" for n in range(5))
    mail.start()
    with GatewayProcess(gateway_dir, rules, proxy=operator.address, env=mail.env()) as gateway:
        wait_for(gateway, "target.health", health_is("main", "up"), 15)
        call_from(sipp, gateway, before, answered=False)  # missed, but before the outage
        operator = swap(sipp, operator, "phone_reject_reason", code=404, cause=1)
        wait_for(gateway, "target.health", health_is("main", "unassigned"), 15)
        for cli in (anna, bert, anna, carl):  # main skipped, the backup busy: nobody
            call_from(sipp, gateway, cli, answered=False)
        backup = swap(sipp, backup, "phone_answer", answer_ms=50)
        call_from(sipp, gateway, answered, answered=True)
        # The outage's alert went out: a recovery within the coalescing window
        # would cancel it, and then there would be no recovery mail either.
        wait_for(gateway, "health.alert", health_is("main", "unassigned"), 10)
        operator = swap(sipp, operator, "phone_ring_forever")
        wait_for(gateway, "health.alert", health_is("main", "up"), 20)
        recovered = mails_to_admin(mail, 2)[1]
    gateway.assert_clean_exit()
    assert "is UP again" in recovered["Subject"]
    body = recovered.get_content()
    listed = dict(re.findall(r"^  (\+\d+) +(\d+) attempts?", body, re.MULTILINE))
    assert listed == {anna: "2", bert: "1", carl: "1"}, body
    assert "3 callers reached nobody while main was UNASSIGNED" in body
    assert body.count("no voicemail (failed)") == 3, body


def test_options_says_up_where_a_call_says_unassigned_and_phones_are_never_answered(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    operator = sipp("operator_options_ok_calls_404", calls=None, timeout_s=40).start()
    phone = sipp("phone_picks_up_unless_cancelled", calls=None, timeout_s=40).start()
    number = f'{{number: "{MAIN_NUMBER}"}}'
    rules = rules_text(
        {"main": number, "main-options": number, "desk": f'{{uri: "sip:d@{phone.address}"}}'},
        {
            "main": "{probe: call, every: 1s, down_after: 2}",
            "main-options": "{probe: options, every: 1s, down_after: 2}",
            "desk": "{probe: call, every: 1s, down_after: 2}",
        },
    )
    with GatewayProcess(gateway_dir, rules, proxy=operator.address) as gateway:
        wait_for(gateway, "target.health", health_is("main", "unassigned"), 15)
        wait_for(gateway, "target.health", health_is("main-options", "up"), 15)
        wait_for(gateway, "target.health", health_is("desk", "up"), 15)
        deadline = time.monotonic() + 10
        while len(phone.collect().received("CANCEL")) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    gateway.assert_clean_exit()
    options_said = [e["state"] for e in events(gateway, "target.health") if e["evidence"]
                    and e["target"] == "main-options"]  # fmt: skip
    assert options_said == ["up"], f"OPTIONS said {options_said}"
    rang = phone.collect()
    invites, cancels = rang.received("INVITE"), rang.received("CANCEL")
    assert len(cancels) >= 3, rang.describe()
    assert len(cancels) >= len(invites) - 1, "a probe let the phone ring on"  # one may be in flight
    assert not [m for m in rang.sent(status=200) if m.cseq_method == "INVITE"], "phone answered"
    assert not rang.received("BYE"), "a probe held an answered call"


def test_flapping_line_changes_nothing(sipp: SippFactory, gateway_dir: Path) -> None:
    line = sipp("phone_flapping", calls=None, timeout_s=40, keys={"code": 404, "cause": 1}).start()
    rules = rules_text(
        {"main": f'{{uri: "sip:m@{line.address}"}}'},
        {"main": "{probe: call, every: 1s, down_after: 2, up_after: 1}"},
    )
    with GatewayProcess(gateway_dir, rules) as gateway:
        deadline = time.monotonic() + 15
        while gateway.log.count("probe of main: ") < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        # An alert would be due 1 s after the last change: watch past that.
        alert = observed(ALERT_WINDOW_S, lambda: events(gateway, "health.alert"))
    gateway.assert_clean_exit()
    seen = [e["evidence"]["sip_code"] for e in events(gateway, "target.health") if e["evidence"]]
    results = re.findall(r"probe of main: (\d+)", gateway.log)
    assert results[:6] == ["180", "404"] * 3, gateway.describe()
    assert seen == [180], f"health changed on a flapping line: {seen}"  # unknown -> up, then none
    assert alert is None, f"an alert within {ALERT_WINDOW_S} s of the last probe: {alert}"
    assert not events(gateway, "health.alert"), "an alert as the gateway stopped"


def run_probe(
    workdir: Path, rules: str, proxy: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``sip-failover probe ...`` as a user runs it, settings in the environment."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "rules.yaml").write_text(rules, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIP_FAILOVER_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "SIP_FAILOVER_RULES": str(workdir / "rules.yaml"),
        "SIP_FAILOVER_TRUNK__PROXY": f"sip:{proxy}",
        "SIP_FAILOVER_SIP__LISTEN": "127.0.0.1:5060",  # taken by a gateway: the probe uses its own
        "SIP_FAILOVER_TRUNK__REGISTRAR": f"sip:{proxy}",
        "SIP_FAILOVER_TRUNK__REGISTER": "true",  # the one-shot never registers
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway", "probe", *args],
        env=env, cwd=workdir, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("scenario", "kind", "says"),
    [
        ("phone_picks_up_unless_cancelled", "call", ["answer: 180", "verdict: good"]),
        ("operator_options_ok_calls_404", "call",
         ["answer: 404", "Q.850 cause: 1", "outcome: unassigned", "verdict: unassigned"]),
        ("operator_options_ok_calls_404", "options", ["answer: 200 OK", "verdict: good"]),
    ],
)  # fmt: skip
def test_probe_command_prints_what_the_network_answered(
    sipp: SippFactory, tmp_path: Path, scenario: str, kind: str, says: list[str]
) -> None:
    far_end: Sipp = sipp(scenario, calls=1, timeout_s=20).start()
    rules = rules_text({"main": f'{{number: "{MAIN_NUMBER}"}}'}, {"main": "{probe: options}"})
    done = run_probe(tmp_path / "probe", rules, far_end.address, "main", "--kind", kind)
    assert done.returncode == 0, done.stderr
    for line in says:
        assert line in done.stdout, done.stdout
    heard = far_end.wait()
    heard.assert_success()
    assert not heard.received("REGISTER"), "the one-shot probe registered"
    assert not heard.received("BYE"), "the probe held an answered call"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [(["nobody"], "unknown target 'nobody'"), (["main", "--kind", "ping"], "invalid choice")],
)
def test_probe_command_refuses_bad_arguments(
    tmp_path: Path, args: list[str], complaint: str
) -> None:
    rules = rules_text({"main": f'{{number: "{MAIN_NUMBER}"}}'}, {})
    done = run_probe(tmp_path, rules, "127.0.0.1:9", *args)
    assert done.returncode == 2
    assert complaint in done.stderr


def test_options_probe_to_a_silent_host_gives_a_verdict_and_no_crash(tmp_path: Path) -> None:
    # pjsip keeps the unanswered OPTIONS until timer F (32 s), longer than the
    # probe waits: the one-shot must still end with a verdict, not an abort.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        rules = rules_text({"main": f'{{number: "{MAIN_NUMBER}"}}'}, {})
        done = run_probe(tmp_path, rules, host, "main", "--kind", "options")
        silent.settimeout(0)
        heard = silent.recv(65535)
    assert heard.startswith(b"OPTIONS "), heard
    assert done.returncode in {0, 1}, f"exit {done.returncode}\n{done.stderr[-3000:]}"
    assert "answer: none" in done.stdout, done.stdout
    assert "verdict: down" in done.stdout, done.stdout
