"""Every caller from the trunk is in the call log; each one nobody spoke to is owed a call back.

One gateway, one call of each fate through a SIPp trunk: answered by the main
line; failed over and answered; a message left in the voicemail box; the box
unable to take a message; a number no route serves; a burst past the free call
slots; a caller who hangs up while it rings; a main line whose leg fails before
it leaves (pjsua will not dial its URI). Afterwards the call log holds exactly
one row per INVITE, each with the truthful result, the log exactly one
``call.ended`` per call, and ``sip-failover calls --missed`` lists every caller
who did not speak to a person.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import wave
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from gateway_process import REPO, GatewayProcess

from gateway.status.calllog import CallLog, CallRecord

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import SippFactory
    from sipp import Sipp

pytestmark = pytest.mark.integration

BURST = 6
ANSWERED, FAILOVER, VOICEMAIL, NO_BOX, NO_ROUTE, CROWD, CANCELS, LOCAL = (
    f"+3240000000{n}" for n in range(1, 9)
)
NUMBER = {  # called number -> what the route does
    "answer": "+3225550101",
    "failover": "+3225550102",
    "voicemail": "+3225550103",
    "local": "+3225550104",
    "ring": "+3225550105",
    "burst": "+3225550106",
}
_EVENT = re.compile(r"^\S+ \S+ .*? event (\S+) (\{.*\})\s*$", re.MULTILINE)


def rules(phone: Sipp, dead: Sipp, backup: Sipp, ringer: Sipp) -> str:
    box = {"greeting": "greeting.wav", "email": ["office@example.com"], "beep": False,
           "min_seconds": 0.5}  # fmt: skip
    return f"""version: 1
targets:
  phone: {{uri: "sip:phone@{phone.address}"}}
  dead: {{uri: "sip:dead@{dead.address}"}}
  backup: {{uri: "sip:backup@{backup.address}"}}
  ringer: {{uri: "sip:ringer@{ringer.address}"}}
  unsendable: {{uri: "sip:main@[::1]:5099"}}
voicemail:
  main: {json.dumps(box)}
routes:
  - name: answer
    match: {{to: "{NUMBER["answer"]}"}}
    steps: [{{ring: phone, timeout: 5s}}]
  - name: failover
    match: {{to: "{NUMBER["failover"]}"}}
    steps:
      - {{ring: dead, timeout: 5s, failover_on: [unassigned]}}
      - {{ring: backup, timeout: 5s}}
  - name: voicemail
    match: {{to: "{NUMBER["voicemail"]}"}}
    steps: [{{voicemail: main}}]
  - name: local
    match: {{to: "{NUMBER["local"]}"}}
    steps: [{{ring: unsendable, timeout: 5s}}]
  - name: ring
    match: {{to: "{NUMBER["ring"]}"}}
    steps: [{{ring: ringer, timeout: 10s}}]
  - name: burst
    match: {{to: "{NUMBER["burst"]}"}}
    steps: [{{ring: ringer, timeout: 2s}}]
"""


def write_greeting(folder: Path) -> None:
    """A short silent greeting: the caller's message starts almost at once."""
    folder.mkdir(parents=True, exist_ok=True)
    with wave.open(str(folder / "greeting.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 2400)


def logged(gateway: GatewayProcess, kind: str) -> list[dict[str, Any]]:
    return [json.loads(data) for k, data in _EVENT.findall(gateway.log) if k == kind]


def wait_for_ended(gateway: GatewayProcess, count: int, limit: float = 30.0) -> float:
    """Block until ``count`` calls have ended (bounded); return how long it took."""
    started = time.monotonic()
    while len(logged(gateway, "call.ended")) < count:
        waited = time.monotonic() - started
        assert waited < limit, f"{count} x call.ended not within {limit} s\n{gateway.describe()}"
        time.sleep(0.05)
    return time.monotonic() - started


def missed_callers(gateway: GatewayProcess) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIP_FAILOVER_")}
    env |= {"PYTHONPATH": str(REPO), "SIP_FAILOVER_STATE_DIR": str(gateway.workdir / "state")}
    done = subprocess.run([sys.executable, "-m", "gateway", "calls", "--missed"], env=env,
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return done.stdout


def call(sipp: SippFactory, gateway: GatewayProcess, scenario: str, route: str, cli: str,
         **options: Any) -> Sipp:  # fmt: skip
    keys = {"dial": NUMBER.get(route, route), "cli": cli, **options.pop("keys", {})}
    return sipp(scenario, remote=gateway.address, keys=keys, **options).start()


def test_every_caller_is_logged_once_with_the_truth(sipp: SippFactory, gateway_dir: Path) -> None:
    phone = sipp("phone_answer", keys={"answer_ms": 100}).start()
    dead = sipp("phone_reject", keys={"code": 404}).start()
    backup = sipp("phone_answer", keys={"answer_ms": 100}).start()
    ringer = sipp("phone_ring_forever", calls=None, timeout_s=60).start()
    write_greeting(gateway_dir)
    with GatewayProcess(gateway_dir, rules(phone, dead, backup, ringer)) as gateway:
        hold = {"hold_ms": 300}
        call(sipp, gateway, "caller_answered", "answer", ANSWERED,
             keys=hold).wait().assert_success()  # fmt: skip
        call(sipp, gateway, "caller_answered", "failover", FAILOVER,
             keys=hold).wait().assert_success()  # fmt: skip
        call(sipp, gateway, "caller_message", "voicemail", VOICEMAIL,
             keys={"greet_ms": 400, "hold_ms": 2500}).wait().assert_success()  # fmt: skip
        # Once that message is committed (after the caller's BYE), the box's
        # spool can take no message any more: its folder is gone.
        wait_for_ended(gateway, 3)
        tmp = gateway.workdir / "state" / "voicemail" / "tmp"
        shutil.rmtree(tmp)
        tmp.write_text("not a folder")
        no_box = call(sipp, gateway, "caller_refused", "voicemail", NO_BOX).wait()
        assert no_box.final_response().status == 480, no_box.describe()
        no_route = call(sipp, gateway, "caller_refused", "+3229999999", NO_ROUTE).wait()
        assert no_route.final_response().status == 404, no_route.describe()
        crowd = call(sipp, gateway, "caller_refused", "burst", CROWD, calls=BURST,
                     extra=("-r", "20", "-l", str(BURST))).wait()  # fmt: skip
        call(sipp, gateway, "caller_cancels", "ring", CANCELS,
             keys={"ring_ms": 300}).wait().assert_success()  # fmt: skip
        local = call(sipp, gateway, "caller_refused", "local", LOCAL).wait()
        assert local.final_response().status == 503, local.describe()
        invites = 7 + BURST
        waited = wait_for_ended(gateway, invites)
        print(f"every call.ended logged {waited:.2f} s after the last caller finished")
    gateway.assert_clean_exit()

    ended = Counter(e["call_id"] for e in logged(gateway, "call.ended"))
    assert sum(ended.values()) == invites, ended
    assert set(ended.values()) == {1}, f"a call ended twice: {ended}"
    log = CallLog(gateway.workdir / "state" / "calls.sqlite3", read_only=True)
    try:
        records = log.calls()
    finally:
        log.close()
    assert sorted(r.call_id for r in records) == sorted(ended), "rows and call.ended differ"
    by_caller: dict[str, list[CallRecord]] = {}
    for record in records:
        by_caller.setdefault(record.caller or "", []).append(record)

    def only(cli: str) -> CallRecord:
        (record,) = by_caller[cli]
        return record

    assert (only(ANSWERED).result, only(ANSWERED).answered_by) == ("answered", "phone")
    assert (only(FAILOVER).result, only(FAILOVER).answered_by) == ("answered", "backup")
    assert only(VOICEMAIL).result == "voicemail"
    assert only(VOICEMAIL).voicemail_id
    assert (only(NO_BOX).result, only(NO_BOX).reason) == ("failed", "voicemail_unavailable")
    assert only(NO_BOX).voicemail_id is None
    assert (only(NO_ROUTE).result, only(NO_ROUTE).reason) == ("refused", "no_route")
    assert (only(NO_ROUTE).sip_code, only(NO_ROUTE).route) == (404, None)
    assert (only(CANCELS).result, only(CANCELS).route) == ("abandoned", "ring")
    assert (only(LOCAL).result, only(LOCAL).outcome, only(LOCAL).sip_code) == (
        "failed", "unreachable", 503)  # fmt: skip

    # The burst: each INVITE one row, and each row says what its caller got.
    finals = [m for m in crowd.received() if m.status and m.status >= 300]
    assert len(finals) == BURST, crowd.describe()
    refused_here = [m for m in finals if m.status == 503 or m.q850_cause is None]
    assert len(by_caller[CROWD]) == BURST
    results = Counter((r.result, r.reason) for r in by_caller[CROWD])
    assert results[("refused", "over_capacity")] == len(refused_here) > 0, (results, finals)
    assert results[("failed", None)] == BURST - len(refused_here), results

    listed = {line.split()[0] for line in missed_callers(gateway).splitlines()[1:]}
    assert listed == {VOICEMAIL, NO_BOX, NO_ROUTE, CROWD, CANCELS, LOCAL}, listed
