"""Health alerts travel the voicemail spool and mailer as audio-less notices."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from loguru import logger

from gateway.voicemail.message import compose
from gateway.voicemail.record import VoicemailMeta
from gateway.voicemail.spool import Spool

if TYPE_CHECKING:
    from pathlib import Path

SINCE = datetime(2026, 3, 14, 9, 42, 5, tzinfo=UTC)
TEXT = "office-mobile (+32470000001) answers UNASSIGNED since 10:42 — calls go to anna"


def alert(spool_id: str) -> VoicemailMeta:
    return VoicemailMeta(spool_id, "", "", "+32470000001", SINCE, 0.0, "office-mobile",
                         "alerts", TEXT, ("admin@example.com",), kind="alert")  # fmt: skip


def test_a_notice_is_queued_durably_and_survives_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    notice = spool.reserve("alert")
    queued = spool.commit_notice(alert(notice.id))
    again = Spool(tmp_path).pending()  # a restarted gateway
    assert [m.meta for m in again] == [queued.meta]
    assert again[0].meta.kind == "alert"
    spool.delivered(again[0])
    assert Spool(tmp_path).pending() == []


def test_old_records_without_a_kind_are_voicemails(tmp_path: Path) -> None:
    data = alert("x").to_json()
    del data["kind"]
    assert VoicemailMeta.from_json(data).kind == "voicemail"


def test_the_alert_mail_says_what_changed_and_has_no_attachment() -> None:
    mail = compose(alert("20260314T094205-000001-abcdef"), None, sender="gw@example.com",
                   timezone=ZoneInfo("Europe/Brussels"), date=SINCE)  # fmt: skip
    assert mail["Subject"] == f"sip-failover: {TEXT}"
    assert mail["To"] == "admin@example.com"
    assert mail["Message-ID"] == "<alert.20260314T094205-000001-abcdef@example.com>"
    assert not list(mail.iter_attachments())
    body = mail.get_content()
    assert TEXT in body
    assert "10:42:05 (Europe/Brussels)" in body
    assert "recording was lost" not in body


def test_an_alert_without_audio_is_not_reported_as_lost(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.commit_notice(alert(spool.reserve("alert").id))
    logged: list[str] = []
    sink = logger.add(logged.append, level="ERROR")
    try:
        assert len(Spool(tmp_path).pending()) == 1
    finally:
        logger.remove(sink)
    assert logged == []
