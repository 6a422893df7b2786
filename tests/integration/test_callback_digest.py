"""The daily call-back digest: mailed once a day to a real aiosmtpd, even across a restart.

The call log is filled beforehand with yesterday's calls; the digest time is
00:00, so today's digest, which covers yesterday, is due as soon as the
gateway starts. The rules' zone is one where it is about noon now, so the test
never straddles a midnight.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import pytest
from gateway_process import GatewayProcess
from rulesets import one_phone

from gateway.status.bus import StatusEvent
from gateway.status.calllog import CallLog
from gateway.voicemail.spool import Spool

if TYPE_CHECKING:
    from pathlib import Path

    from mailserver import MailServer

pytestmark = pytest.mark.integration
ADMIN = "admin@example.com"
ANNA, BERT, CARL, DORA = "+32470000011", "+32470000022", "+32470000033", "+32470000044"


def zone_near_noon() -> ZoneInfo:
    """A fixed-offset zone where it is 12:xx now (``Etc/GMT-5`` is UTC+5)."""
    offset = 12 - datetime.now(UTC).hour
    return ZoneInfo("Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}")


def yesterdays_calls(state_dir: Path, zone: ZoneInfo) -> datetime:
    """Anna missed twice, Bert left a voicemail, Carl got through later, Dora was answered."""
    noon = datetime.now(zone).replace(hour=12, minute=0, second=0, microsecond=0)
    yesterday = noon - timedelta(days=1)
    state_dir.mkdir(parents=True)
    log = CallLog(state_dir / "calls.sqlite3")
    for n, (caller, result) in enumerate([(ANNA, "failed"), (BERT, "voicemail"),
                                          (CARL, "abandoned"), (ANNA, "refused"),
                                          (CARL, "answered"), (DORA, "answered")]):  # fmt: skip
        at, cid = yesterday + timedelta(minutes=n), f"call-{n}"
        events = [StatusEvent("call.incoming", at, {"call_id": cid, "caller": caller})]
        if result == "voicemail":
            events.append(StatusEvent("voicemail.recorded", at, {"call_id": cid, "id": "vm-7"}))
        events.append(StatusEvent("call.ended", at, {"call_id": cid, "result": result}))
        log.record_many(events)
    log.close()
    return yesterday


def wait_for_log(gateway: GatewayProcess, pattern: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while (found := re.search(pattern, gateway.log)) is None:
        assert time.monotonic() < deadline, f"no {pattern!r} in the log\n{gateway.describe()}"
        time.sleep(0.05)
    return found[0]


def test_the_digest_is_mailed_once_a_day_even_across_a_restart(
    gateway_dir: Path, mail: MailServer
) -> None:
    zone = zone_near_noon()
    yesterday = yesterdays_calls(gateway_dir / "state", zone)
    rules = one_phone("127.0.0.1:9") + f"timezone: {zone.key}\n"
    rules += f'alerts: {{email: [{ADMIN}], digest: "00:00"}}\n'
    today = datetime.now(zone).date()
    mail.start()
    with GatewayProcess(gateway_dir, rules, env=mail.env()) as gateway:
        wait_for_log(gateway, rf"call-back digest of {today}: 2 callers")
        deadline = time.monotonic() + 10
        while not mail.inbox.accepted and time.monotonic() < deadline:
            time.sleep(0.05)
    gateway.assert_clean_exit()
    (digest,) = mail.inbox.accepted
    assert digest["To"] == ADMIN
    assert digest["Subject"] == f"sip-failover: 2 callers to call back ({today:%a %d %b})"
    body = digest.get_content()
    assert f"  {ANNA}  2 attempts  {yesterday:%a %d %b} 12:00, {yesterday:%a %d %b} 12:03" in body
    assert re.search(rf"  {re.escape(BERT)} .* voicemail left", body), body
    assert CARL not in body, "a caller who got through later is still listed"
    assert DORA not in body

    with GatewayProcess(gateway_dir, rules, env=mail.env()) as again:
        wait_for_log(again, rf"call-back digest: last sent for {today}")
    again.assert_clean_exit()
    assert Spool(gateway_dir / "state" / "voicemail").pending() == [], "a second digest queued"
    assert len(mail.inbox.accepted) == 1
