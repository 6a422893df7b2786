"""The mail a voicemail becomes, as the recipient's mail client reads it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import pytest

from gateway.voicemail.message import compose, format_duration
from gateway.voicemail.record import VoicemailMeta

BRUSSELS = ZoneInfo("Europe/Brussels")
META = VoicemailMeta(
    id="20260314T091530-000000-a1b2c3",
    call_id="call-1",
    caller="+32470000001",
    called="+3225550100",
    started_at=datetime(2026, 3, 14, 9, 15, 30, tzinfo=UTC),
    duration=42.4,
    route="main-line",
    box="main",
    why="main line unassigned",
    recipients=("office@example.com", "anna@example.com"),
)
AUDIO = b"RIFF....WAVEfmt the bytes are attached as they are"
QUEUED = datetime(2026, 3, 14, 9, 16, 20, tzinfo=UTC)


def received(meta: VoicemailMeta = META, audio: bytes | None = AUDIO) -> EmailMessage:
    """The mail as it would arrive: serialised, then parsed back."""
    mail = compose(meta, audio, sender="Gateway <gw@example.net>", timezone=BRUSSELS, date=QUEUED)
    parsed = message_from_bytes(mail.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def test_subject_names_caller_duration_and_why() -> None:
    assert received()["Subject"] == "Voicemail from +32470000001 (0:42) — main line unassigned"


def test_withheld_caller_is_anonymous() -> None:
    assert received(replace(META, caller=""))["Subject"].startswith("Voicemail from anonymous (")


def test_body_tells_who_when_in_local_time_and_why() -> None:
    text = text_of(received())
    assert "+32470000001" in text
    assert "Saturday 14 March 2026, 10:15:30 (Europe/Brussels)" in text
    assert "0:42" in text
    assert "+3225550100" in text
    assert "main-line" in text
    assert "main line unassigned" in text
    assert META.id in text


def test_wav_is_attached_with_date_and_caller_in_its_name() -> None:
    (attachment,) = received().iter_attachments()
    assert attachment.get_content_type() == "audio/wav"
    assert attachment.get_filename() == "voicemail-2026-03-14-1015-+32470000001.wav"
    assert attachment.get_content() == AUDIO


def test_headers_address_everyone_and_stay_the_same_on_a_resend() -> None:
    first, again = received(), received()
    assert first["To"] == "office@example.com, anna@example.com"
    assert first["Message-ID"] == again["Message-ID"] == f"<voicemail.{META.id}@example.net>"
    assert first["Date"] == "Sat, 14 Mar 2026 09:16:20 +0000"


def test_a_caller_id_with_line_breaks_cannot_inject_headers() -> None:
    mail = received(replace(META, caller="+3247\r\nBcc: victim@example.org"))
    assert mail["Bcc"] is None
    assert "victim" in mail["Subject"]  # shown, harmlessly, on one line
    (attachment,) = mail.iter_attachments()
    assert "\n" not in (attachment.get_filename() or "\n")


def test_lost_audio_still_sends_the_details() -> None:
    mail = received(audio=None)
    assert list(mail.iter_attachments()) == []
    assert "recording was lost" in text_of(mail)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0:00"), (42.4, "0:42"), (59.6, "1:00"), (185, "3:05"), (3723, "1:02:03")],
)
def test_durations_read_like_a_clock(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown
