"""The e-mail a voicemail becomes: subject, plain-text body, WAV attached.

Pure composition: the audio bytes, the time zone and the date are passed in.
The ``Message-ID`` is derived from the voicemail id, so the same voicemail
sent twice (a crash after the server's 250, before the spool removed it) is
recognisably the same message (RFC 5322 section 3.6.4).
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from gateway.voicemail.record import VoicemailMeta

ANONYMOUS = "anonymous"


def one_line(text: str) -> str:
    """``text`` with control characters and runs of blanks made single spaces.

    The caller's number comes from the SIP ``From`` header: a CR or LF in it
    must not reach a mail header.
    """
    return " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", text).split())


def caller_label(meta: VoicemailMeta) -> str:
    """The caller as shown to people: the number, or ``anonymous``."""
    return one_line(meta.caller) or ANONYMOUS


def format_duration(seconds: float) -> str:
    """``0:42``, ``3:05``, ``1:02:03``."""
    total = max(int(seconds + 0.5), 0)  # 0:42.5 reads 0:43, not round()'s even 0:42
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def subject(meta: VoicemailMeta) -> str:
    """E.g. ``Voicemail from +32470000001 (0:42) — main line unassigned``."""
    text = f"Voicemail from {caller_label(meta)} ({format_duration(meta.duration)})"
    why = one_line(meta.why)
    return f"{text} — {why}" if why else text


def message_id(meta: VoicemailMeta, sender: str) -> str:
    """A Message-ID that is the same every time this voicemail is sent."""
    domain = sender.rpartition("@")[2].strip(" <>") or "sip-failover.invalid"
    return f"<voicemail.{meta.id}@{domain}>"


def attachment_name(meta: VoicemailMeta, timezone: ZoneInfo) -> str:
    """E.g. ``voicemail-2026-03-14-1015-+32470000001.wav`` (safe on every file system)."""
    local = meta.started_at.astimezone(timezone)
    caller = re.sub(r"[^0-9A-Za-z+]+", "_", caller_label(meta)).strip("_") or ANONYMOUS
    return f"voicemail-{local:%Y-%m-%d-%H%M}-{caller}.wav"


def body(meta: VoicemailMeta, timezone: ZoneInfo, *, audio_missing: bool = False) -> str:
    """The plain-text body: who, when (in the rules' time zone), how long, and why."""
    local = meta.started_at.astimezone(timezone)
    lines = [
        f"{caller_label(meta)} left a voicemail for {meta.called}.",
        "",
        f"From:      {caller_label(meta)}",
        f"When:      {local:%A %d %B %Y, %H:%M:%S} ({timezone.key})",
        f"Duration:  {format_duration(meta.duration)}",
        f"Called:    {meta.called}",
        f"Route:     {meta.route} (box {meta.box})",
        f"Why:       {meta.why}",
        f"Id:        {meta.id}",
        "",
    ]
    if audio_missing:
        lines += ["The recording was lost on the gateway: only these details are left.", ""]
    return "\n".join(lines)


def compose(
    meta: VoicemailMeta,
    audio: bytes | None,
    *,
    sender: str,
    timezone: ZoneInfo,
    date: datetime,
) -> EmailMessage:
    """Build the mail for one voicemail.

    Args:
        meta: the voicemail.
        audio: the WAV file's bytes, or ``None`` if it is gone.
        sender: the ``From`` address.
        timezone: the rules' time zone, for the times people read.
        date: the ``Date`` header (when the message was queued: stable across retries).

    Returns:
        A message ready for ``aiosmtplib.send``; recipients are in ``To``.
    """
    if meta.kind == "alert":
        return _alert(meta, sender=sender, timezone=timezone, date=date)
    if meta.kind == "digest":
        return _digest(meta, sender=sender, date=date)
    mail = EmailMessage()
    mail["Subject"] = subject(meta)
    mail["From"] = sender
    mail["To"] = ", ".join(meta.recipients)
    mail["Date"] = format_datetime(date)
    mail["Message-ID"] = message_id(meta, sender)
    mail["X-Voicemail-Id"] = meta.id
    mail.set_content(body(meta, timezone, audio_missing=audio is None))
    if audio is not None:
        mail.add_attachment(
            audio, maintype="audio", subtype="wav", filename=attachment_name(meta, timezone)
        )
    return mail


def _alert(meta: VoicemailMeta, *, sender: str, timezone: ZoneInfo, date: datetime) -> EmailMessage:
    """An alert to the admins: a target's health changed (``meta.why`` says how)."""
    local = meta.started_at.astimezone(timezone)
    mail = _notice(meta, sender=sender, date=date)
    mail.set_content("\n".join([
        meta.why,
        "",
        f"Target:  {meta.route} ({meta.called})",
        f"Since:   {local:%A %d %B %Y, %H:%M:%S} ({timezone.key})",
        "",
        *([meta.details, ""] if meta.details else []),
        "The gateway found this by itself (probes and real calls); see docs/health.md.",
        "",
    ]))  # fmt: skip
    return mail


def _digest(meta: VoicemailMeta, *, sender: str, date: datetime) -> EmailMessage:
    """The day's call-back list (``meta.why`` is the subject, ``meta.details`` the list)."""
    mail = _notice(meta, sender=sender, date=date)
    mail.set_content(f"{meta.details}\n")
    return mail


def _notice(meta: VoicemailMeta, *, sender: str, date: datetime) -> EmailMessage:
    """The headers of a mail to the admins; the Message-ID says its kind and spool id."""
    mail = EmailMessage()
    mail["Subject"] = f"sip-failover: {one_line(meta.why)}"
    mail["From"] = sender
    mail["To"] = ", ".join(meta.recipients)
    mail["Date"] = format_datetime(date)
    domain = sender.rpartition("@")[2].strip(" <>") or "sip-failover.invalid"
    mail["Message-ID"] = f"<{meta.kind}.{meta.id}@{domain}>"
    return mail
