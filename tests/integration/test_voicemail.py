"""Voicemail to e-mail end to end: SIPp callers, the gateway process, aiosmtpd.

The caller scenarios play /usr/share/sip-tester/g711a.pcap (7.08 s of speech,
A-law, 30 ms packets, its first 0.5 s quiet) after waiting for the greeting
and the beep. The mail server is aiosmtpd on a free 127.0.0.1 port, started
late, stopped, or made to refuse as a test needs. What the gateway did is
read from its log: every status event is a line ``event <kind> <json>``.
"""

from __future__ import annotations

import io
import json
import math
import re
import signal
import struct
import time
import wave
from typing import TYPE_CHECKING, Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from gateway_process import GatewayProcess

if TYPE_CHECKING:
    from collections.abc import Callable
    from email.message import EmailMessage
    from pathlib import Path

    from conftest import SippFactory
    from mailserver import MailServer
    from sipp import Sipp

pytestmark = pytest.mark.integration

CALLED = "+3225550100"
CALLER = "+32470999999"
PCAP_SECONDS = 7.08  # 236 packets of 30 ms
GREETING_S = 0.5
BEEP_S = 0.4  # gateway/assets/beep.wav
LEAD_S = 0.3  # the caller starts talking this long after the beep
GREET_MS = int((GREETING_S + BEEP_S + LEAD_S) * 1000)
SILENT_RMS = 50
MEASURED: dict[str, float] = {}


# -- rules, greeting, audio ------------------------------------------------------------


def write_greeting(folder: Path, seconds: float = GREETING_S) -> None:
    """A short greeting next to the rules file (a 400 Hz tone, 8 kHz mono 16-bit)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = b"".join(
        struct.pack("<h", int(6000 * math.sin(2 * math.pi * 400 * n / 8000)))
        for n in range(int(seconds * 8000))
    )
    with wave.open(str(folder / "greeting.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)


def voicemail_rules(main: Sipp, **box: object) -> str:
    """Rules: ring ``main``, fail over on unassigned to the box ``main``."""
    settings = {"greeting": "greeting.wav", "email": ["office@example.com"], **box}
    return (
        "version: 1\ntimezone: Europe/Brussels\ntargets:\n"
        f'  main: {{uri: "sip:main@{main.address}"}}\n'
        f"voicemail:\n  main: {json.dumps(settings)}\n"
        "routes:\n  - name: main-line\n"
        f'    match: {{to: "{CALLED}"}}\n    steps:\n'
        "      - ring: main\n        timeout: 3s\n        failover_on: [unassigned]\n"
        "      - voicemail: main\n"
    )


def wav_of(mail: EmailMessage) -> tuple[float, float]:
    """The attached WAV's duration (s) and loudness (RMS of its 16-bit samples)."""
    (attachment,) = mail.iter_attachments()
    assert attachment.get_content_type() == "audio/wav"
    with wave.open(io.BytesIO(attachment.get_content())) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        frames = wav.readframes(wav.getnframes())
        seconds = wav.getnframes() / wav.getframerate()
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    return seconds, math.sqrt(sum(s * s for s in samples) / max(len(samples), 1))


# -- the gateway's log -------------------------------------------------------------------

_EVENT = re.compile(r"^(\S+ \S+) .*? event (\S+) (\{.*\})\s*$", re.MULTILINE)


def events(gateway: GatewayProcess, kind: str) -> list[dict[str, Any]]:
    """Data of every ``kind`` event the gateway logged, in order."""
    return [json.loads(data) for _, k, data in _EVENT.findall(gateway.log) if k == kind]


def event_time(gateway: GatewayProcess, kind: str) -> float:
    """Wall-clock time (epoch seconds) of the first ``kind`` event in the log."""
    for stamp, k, _ in _EVENT.findall(gateway.log):
        if k == kind:
            return time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + float(
                "0" + stamp[19:]
            )
    raise AssertionError(f"no {kind} event\n{gateway.describe()}")


def wait_for(
    gateway: GatewayProcess, kind: str, count: int = 1, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """Block until the gateway logged ``count`` ``kind`` events (bounded)."""
    deadline = time.monotonic() + timeout
    while len(found := events(gateway, kind)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count} x {kind} in {timeout} s\n{gateway.describe()}")
        time.sleep(0.05)
    return found


def spool(gateway: GatewayProcess, folder: str) -> list[str]:
    """Files in ``state/voicemail/<folder>``."""
    path = gateway.workdir / "state" / "voicemail" / folder
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def bye_sent_at(caller: Sipp) -> float:
    """Wall-clock time SIPp sent its BYE (from its message trace)."""
    result = caller.collect()
    stamps = re.findall(
        r"^-{10,} (\S+ \S+)\n\S+ message sent[^\n]*:\n\n\s*BYE ", result.trace, re.MULTILINE
    )
    assert stamps, result.describe()
    day, clock = stamps[0].split()
    return time.mktime(time.strptime(f"{day} {clock[:8]}", "%Y-%m-%d %H:%M:%S")) + float(
        "0" + clock[8:]
    )


# -- the tests -----------------------------------------------------------------------------


def test_message_after_failover_is_mailed_with_what_the_caller_said(
    sipp: SippFactory, gateway_dir: Path, mail: MailServer
) -> None:
    mail.start()
    main = sipp("phone_reject_reason", keys={"code": 404, "cause": 1}).start()
    write_greeting(gateway_dir)
    with GatewayProcess(gateway_dir, voicemail_rules(main), env=mail.env()) as gateway:
        hold_ms = int(PCAP_SECONDS * 1000) + 100
        caller = sipp("caller_message", remote=gateway.address,
                      keys={"greet_ms": GREET_MS, "hold_ms": hold_ms}).start()  # fmt: skip
        caller.wait().assert_success()
        (recorded,) = wait_for(gateway, "voicemail.recorded")
        (delivered,) = wait_for(gateway, "voicemail.delivered")
    gateway.assert_clean_exit()
    assert main.wait().received("INVITE"), "the main target was not rung first"
    assert delivered == {"id": recorded["id"], "recipients": ["office@example.com"]}
    (message,) = mail.inbox.accepted
    assert message["X-Voicemail-Id"] == recorded["id"]
    assert message["Subject"].startswith(f"Voicemail from {CALLER} (0:0")
    seconds, loudness = wav_of(message)
    sent = hold_ms / 1000  # the caller talked from the end of the beep to its BYE
    MEASURED["wav_s"], MEASURED["sent_s"] = seconds, sent
    MEASURED["bye_to_recorded_s"] = event_time(gateway, "voicemail.recorded") - bye_sent_at(caller)
    print(f"measured: {MEASURED}")
    assert abs(seconds - sent) < 1.0, f"recorded {seconds:.2f} s, the caller sent {sent:.2f} s"
    assert loudness > SILENT_RMS, f"the recording is silence (RMS {loudness:.0f})"
    assert spool(gateway, "queue") == []


def leave_message(sipp: SippFactory, gateway: GatewayProcess, talk_ms: int = 2500) -> Sipp:
    """A caller who talks ``talk_ms`` after the beep, then hangs up."""
    caller = sipp("caller_message", remote=gateway.address,
                  keys={"greet_ms": GREET_MS, "hold_ms": talk_ms}).start()  # fmt: skip
    caller.wait().assert_success()
    return caller


def kill(gateway: GatewayProcess) -> None:
    """SIGKILL: no shutdown, no flush; keep its log next to the new one."""
    assert gateway.process is not None
    gateway.process.send_signal(signal.SIGKILL)
    gateway.exit_code = gateway.process.wait(timeout=5)
    gateway.log_path.rename(gateway.log_path.with_suffix(".killed.log"))


FAST_RETRY = {"SIP_FAILOVER_SMTP__RETRY_FIRST": "0.3"}  # then 0.6, 1.2 s (jitter halves at most)


def test_mail_server_down_then_up_delivers_exactly_once(
    sipp: SippFactory, gateway_dir: Path, mail: MailServer
) -> None:
    main = sipp("phone_reject", keys={"code": 404}).start()
    write_greeting(gateway_dir)
    rules = voicemail_rules(main, min_seconds=1)
    with GatewayProcess(gateway_dir, rules, env=mail.env(**FAST_RETRY)) as gateway:
        leave_message(sipp, gateway)
        (recorded,) = wait_for(gateway, "voicemail.recorded")
        # the first attempt and two retries find no server
        wait_for_line(gateway, f"voicemail {recorded['id']}: attempt 3 failed")
        mail.start()
        wait_for(gateway, "voicemail.delivered")
        assert spool(gateway, "queue") == []
    gateway.assert_clean_exit()
    (outage,) = events(gateway, "voicemail.failed")  # told once, not at every attempt
    assert outage["id"] == recorded["id"]
    assert outage["permanent"] is False
    assert f"cannot reach 127.0.0.1:{mail.port}" in outage["error"]
    assert (mail.inbox.attempts, len(mail.inbox.accepted)) == (1, 1)
    assert mail.inbox.accepted[0]["X-Voicemail-Id"] == recorded["id"]
    assert len(events(gateway, "voicemail.delivered")) == 1


def test_killed_gateway_delivers_after_restart_and_never_twice(
    sipp: SippFactory, gateway_dir: Path, mail: MailServer
) -> None:
    main = sipp("phone_reject", keys={"code": 404}).start()
    write_greeting(gateway_dir)
    rules = voicemail_rules(main, min_seconds=1)
    # The first attempt, before the kill, finds no server; a retry is due soon
    # after (a restart keeps the schedule of each message).
    env = mail.env(**FAST_RETRY)
    with GatewayProcess(gateway_dir, rules, env=env) as gateway:
        leave_message(sipp, gateway)
        (recorded,) = wait_for(gateway, "voicemail.recorded")
        kill(gateway)  # announced, not delivered
    assert spool(gateway, "queue") == [f"{recorded['id']}.json", f"{recorded['id']}.wav"]

    mail.start()
    with GatewayProcess(gateway_dir, rules, env=env) as restarted:
        (delivered,) = wait_for(restarted, "voicemail.delivered")
        kill(restarted)  # after the 250: the spool has forgotten the message
    assert delivered["id"] == recorded["id"]
    assert spool(restarted, "queue") == []

    with GatewayProcess(gateway_dir, rules, env=env) as again:
        pass
    again.assert_clean_exit()
    assert [m["X-Voicemail-Id"] for m in mail.inbox.accepted] == [recorded["id"]]
    seconds, loudness = wav_of(mail.inbox.accepted[0])
    assert seconds > 2.0
    assert loudness > SILENT_RMS


@pytest.mark.parametrize(
    ("reply", "login", "kept_in", "alarms", "said"),
    [
        ("554 5.7.1 message refused", None, "failed", [True], "554"),
        # an outage is told once; a wrong login at every attempt
        ("451 4.3.0 try again later", None, "queue", [False], "451"),
        ("250 OK", "wrong-password", "queue", [False, False], "fix the SMTP credentials"),
    ],
    ids=["5xx-permanent", "4xx-temporary", "wrong-password"],
)
def test_mail_server_refusals_alarm_and_keep_the_message(
    sipp: SippFactory,
    gateway_dir: Path,
    mail: MailServer,
    reply: str,
    login: str | None,
    kept_in: str,
    alarms: list[bool],
    said: str,
) -> None:
    mail.inbox.reply = reply
    if login is None:
        mail.start()
        extra = FAST_RETRY
    else:
        mail.start(authenticator=only_user_with("right-password"), auth_require_tls=False)
        extra = {**FAST_RETRY, "SIP_FAILOVER_SMTP__USERNAME": "gateway",
                 "SIP_FAILOVER_SMTP__PASSWORD": login}  # fmt: skip
    main = sipp("phone_reject", keys={"code": 404}).start()
    write_greeting(gateway_dir)
    rules = voicemail_rules(main, min_seconds=1)
    with GatewayProcess(gateway_dir, rules, env=mail.env(**extra)) as gateway:
        leave_message(sipp, gateway)
        (recorded,) = wait_for(gateway, "voicemail.recorded")
        if kept_in == "queue":  # retried, and still waiting
            wait_for_line(gateway, f"voicemail {recorded['id']}: attempt 2 failed")
        told = wait_for(gateway, "voicemail.failed", count=len(alarms))
        kept = spool(gateway, kept_in)
    gateway.assert_clean_exit()
    assert kept == [f"{recorded['id']}.json", f"{recorded['id']}.wav"]
    assert mail.inbox.accepted == []
    told = events(gateway, "voicemail.failed")
    if reply.startswith("4"):  # after the second attempt too
        assert len(told) == 1, "a passing outage was told more than once"
    told = told[: len(alarms)]
    assert [a["permanent"] for a in told] == alarms
    assert {a["id"] for a in told} == {recorded["id"]}
    assert said in told[0]["error"]
    assert "wrong-password" not in gateway.log


@pytest.mark.parametrize(
    ("greeting_s", "hang_up_ms", "why"),
    [(GREETING_S, 1000, "shorter than 2 s"), (2.0, 0, "hung up during the greeting")],
    ids=["after-1s-of-message", "during-greeting"],
)
def test_caller_who_hangs_up_early_leaves_no_mail_and_an_event_says_why(
    sipp: SippFactory,
    gateway_dir: Path,
    mail: MailServer,
    greeting_s: float,
    hang_up_ms: int,
    why: str,
) -> None:
    mail.start()
    main = sipp("phone_reject", keys={"code": 404}).start()
    write_greeting(gateway_dir, greeting_s)
    with GatewayProcess(gateway_dir, voicemail_rules(main), env=mail.env()) as gateway:
        leave_message(sipp, gateway, hang_up_ms)
        (dropped,) = wait_for(gateway, "voicemail.dropped")
        wait_for(gateway, "call.ended")
    gateway.assert_clean_exit()
    assert dropped["caller"] == CALLER
    assert why in dropped["why"]
    assert dropped["duration"] < 2.0
    assert events(gateway, "voicemail.recorded") == []
    assert spool(gateway, "queue") == spool(gateway, "tmp") == []
    assert mail.inbox.attempts == 0


@pytest.mark.parametrize(
    ("box", "ended_by", "expected_s"),
    [
        ({"silence_seconds": 1.5}, "silence", LEAD_S + PCAP_SECONDS + 1.5),
        ({"max_seconds": 3}, "max_length", 3.0),
    ],
    ids=["silence", "max_seconds"],
)
def test_silence_or_the_length_limit_ends_the_recording(
    sipp: SippFactory,
    gateway_dir: Path,
    mail: MailServer,
    box: dict[str, float],
    ended_by: str,
    expected_s: float,
) -> None:
    mail.start()
    main = sipp("phone_reject", keys={"code": 404}).start()
    write_greeting(gateway_dir)
    with GatewayProcess(gateway_dir, voicemail_rules(main, **box), env=mail.env()) as gateway:
        caller = sipp("caller_message_held", remote=gateway.address,
                      keys={"greet_ms": GREET_MS}, recv_timeout_ms=15000).start()  # fmt: skip
        held = caller.wait()
        wait_for(gateway, "voicemail.delivered")
    gateway.assert_clean_exit()
    held.assert_success()
    assert held.received("BYE"), "the gateway did not end the call"
    (recorded,) = events(gateway, "voicemail.recorded")
    assert f"saved ({recorded['duration']:.1f} s, ended by {ended_by})" in gateway.log
    seconds, _ = wav_of(mail.inbox.accepted[0])
    MEASURED[f"{ended_by}_wav_s"], MEASURED[f"{ended_by}_expected_s"] = seconds, expected_s
    print(f"measured: {MEASURED}")
    assert abs(seconds - expected_s) < 1.0


def test_sigterm_during_a_message_keeps_it_and_exits_cleanly(
    sipp: SippFactory, gateway_dir: Path, mail: MailServer
) -> None:
    main = sipp("phone_reject", keys={"code": 404}).start()
    write_greeting(gateway_dir)
    rules = voicemail_rules(main, max_seconds=20, silence_seconds=15)
    env = mail.env(SIP_FAILOVER_SHUTDOWN_GRACE="1")  # the message outlasts the grace period
    with GatewayProcess(gateway_dir, rules, env=env) as gateway:
        caller = sipp("caller_message_held", remote=gateway.address,
                      keys={"greet_ms": GREET_MS}, recv_timeout_ms=15000).start()  # fmt: skip
        wait_for_line(gateway, '"kind": "voicemail"')
        time.sleep(GREET_MS / 1000 + 2)  # two seconds into the message
        gateway.stop()
    caller.stop()
    (recorded,) = events(gateway, "voicemail.recorded")
    assert spool(gateway, "queue") == [f"{recorded['id']}.json", f"{recorded['id']}.wav"]
    gateway.assert_clean_exit()


# -- more helpers --------------------------------------------------------------------------


def wait_for_line(gateway: GatewayProcess, text: str, timeout: float = 15.0) -> None:
    """Block until ``text`` appears in the gateway's log (bounded)."""
    deadline = time.monotonic() + timeout
    while text not in gateway.log:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in {timeout} s\n{gateway.describe()}")
        time.sleep(0.05)


def only_user_with(password: str) -> Callable[..., Any]:
    """An aiosmtpd authenticator that accepts ``gateway`` / ``password`` only."""

    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (b"gateway", password.encode())
        return AuthResult(success=ok, handled=False)  # not handled: the server answers 535

    return check
