"""``sip-failover demo``: the story a newcomer sees, and a clear failure when it breaks.

The demo runs the real gateway and a pjsua2 far side as processes on loopback,
and its own mail server; these tests need nothing else (no SIPp, no broker).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.demo.run import run_demo

# alone: the timeline's order within milliseconds and the tones' timing want a quiet machine.
pytestmark = [pytest.mark.integration, pytest.mark.alone, pytest.mark.timeout(80)]

ROOT = Path(__file__).resolve().parents[2]

# The demo's rules, except that the office mobile only fails over when busy:
# an "unassigned" answer then ends the call instead of reaching anna.
NO_FAILOVER_ON_UNASSIGNED = """\
version: 1
targets:
  office-mobile: {number: "+32470000001"}
  anna:          {number: "+32480000002"}
routes:
  - name: main-line
    match: {to: "+3225550100"}
    steps:
      - ring: office-mobile
        timeout: 20s
        failover_on: [busy]
      - ring: anna
        timeout: 25s
"""


def _line_with(lines: list[str], *words: str) -> str:
    found = [line for line in lines if all(word in line for word in words)]
    assert found, f"no timeline line with {words}:\n" + "\n".join(lines)
    return found[0]


def _time_of(line: str) -> float:
    return float(line.split(maxsplit=1)[0])


def _number(pattern: str, line: str) -> float:
    found = re.search(pattern, line)
    assert found, f"{pattern!r} not in {line!r}"
    return float(found[1])


def test_demo_command_shows_failover_to_anna_a_mailed_voicemail_and_tones_heard() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    dial = _line_with(lines, "+32470999999 dials +3225550100")
    rejected = _line_with(lines, "operator: 404 Not Found", "Q.850;cause=1")
    failover = _line_with(lines, "failover office-mobile -> anna", "unassigned", "404", "cause 1")
    answered = _line_with(lines, "anna answered")
    audio = _line_with(lines, "caller hears anna")
    ended = _line_with(lines, "call ended (answered")
    # The story reads in the order it happened, from the caller's INVITE on.
    times = [_time_of(line) for line in (dial, rejected, failover, answered, audio, ended)]
    assert times == sorted(times)
    assert times[0] == 0.0
    assert "level 0," not in audio
    _line_with(lines, "failover:", "ms from the operator's 404 to anna's INVITE")
    assert "early" not in done.stdout
    # The admin is told the main line is lost, by mail.
    _line_with(lines, "mail server: to admin@example.com:", "office-mobile", "UNASSIGNED")

    # The second call: the lost line is left out, anna is busy, voicemail takes it.
    second = lines[lines.index(_line_with(lines, "+32470888888 dials +3225550100")) :]
    skipped = _line_with(second, "ring anna", "office-mobile left out", "unassigned")
    busy = _line_with(second, "anna's mobile: 486 Busy Here")
    to_voicemail = _line_with(second, "failover anna -> voicemail:main", "busy", "486")
    greeting = _line_with(second, "caller hears the greeting")
    beep = _line_with(second, "caller hears the beep")
    hangup = _line_with(second, "caller hangs up after talking")
    saved = _line_with(second, "gateway: voicemail from +32470888888 saved")
    ended = _line_with(second, "call ended (voicemail")
    mailed = _line_with(second, "mail server: to office@example.com:", "Voicemail from")
    steps = (second[0], skipped, busy, to_voicemail, greeting, beep, hangup, saved, ended, mailed)
    times = [_time_of(line) for line in steps]
    assert times == sorted(times)
    assert not [line for line in second if "office-mobile +32470000001" in line]
    assert _number(r"level (\d+)", greeting) > 0
    assert _number(r"level (\d+)", beep) > 0

    # The mail as the mail server got it, its recording as long as the caller talked.
    mail = second[second.index(_line_with(second, "as the mail server received it")) :]
    _line_with(mail, "From:", "sip-failover@example.com")
    _line_with(mail, "To:", "office@example.com")
    _line_with(mail, "Subject:", "Voicemail from +32470888888", "anna busy")
    _line_with(mail, "| +32470888888 left a voicemail for +3225550100.")
    attached = _line_with(mail, "attached: voicemail-", "+32470888888.wav")
    assert _number(r", ([\d.]+) kB", attached) > 10  # real audio, not a bare header
    talked = _number(r"after talking ([\d.]+) s", hangup)
    assert abs(_number(r"kB, ([\d.]+) s of audio", attached) - talked) <= 1.0
    _check_third_call(lines)
    # --quiet: the timeline and the mail only, no introduction.
    assert "Watch a customer" not in done.stdout


def test_demo_fails_loudly_when_the_gateway_does_not_fail_over(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run_demo(quiet=False, rules=NO_FAILOVER_ON_UNASSIGNED)

    captured = capsys.readouterr()
    assert code != 0
    assert "sip-failover demo FAILED" in captured.err
    assert "the gateway did not fail over on the operator's 404, cause 1" in captured.err
    # The gateway's own log is shown, so the reason can be read.
    assert "last lines from the gateway:" in captured.err
    assert "event call.ended" in captured.err
    # The timeline still shows what did happen.
    assert "operator: 404 Not Found" in captured.out
    assert "caller gets 404" in captured.out
    assert "failover: " not in captured.out
    assert "as the mail server received it" not in captured.out


def _check_third_call(lines: list[str]) -> None:
    """The workshop's operator plays tones in early media and never answers."""
    third = lines[lines.index(_line_with(lines, "+32470777777 dials +3225550101")) :]
    progress = _line_with(third, "workshop's operator: 183 Session Progress")
    plays = _line_with(third, "workshop's operator plays SIT tones")
    heard = _line_with(third, "gateway: hears SIT itu", "into the operator's audio: unassigned")
    failover = _line_with(third, "failover workshop-mobile -> anna", "unassigned", "tones")
    cancelled = _line_with(third, "workshop's operator: the gateway cancelled (487)")
    answered = _line_with(third, "anna answered")
    audio = _line_with(third, "caller hears anna")
    ended = _line_with(third, "call ended (answered")
    steps = (third[0], progress, plays, heard, failover, answered, audio, ended)
    times = [_time_of(line) for line in steps]
    assert times == sorted(times)
    # The CANCEL follows the tones (the failover's line is logged once anna's INVITE left).
    assert _time_of(heard) <= _time_of(cancelled)
    # The ITU SIT lasts about 1 s: it is recognised before it ends, not at a timeout.
    assert _number(r" ([\d.]+) s into the operator's audio", heard) <= 1.5
    assert times[3] - times[1] <= 2.0
    _line_with(third, "caller connected to anna (until then: ringback, never the operator)")
    assert "level 0," not in audio
