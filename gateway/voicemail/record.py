"""What the spool keeps of each message: its metadata and retry state, as JSON.

One JSON record per message (``queue/<id>.json`` or ``failed/<id>.json``,
gateway/voicemail/spool.py)::

    {"format": 1, "meta": {…VoicemailMeta…}, "retry": {…RetryState…}}

``record_json`` writes it, ``read_record`` reads it back; a record that is
not what ``record_json`` writes raises, and the spool sets it aside.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from gateway.json_types import as_object, loads
from gateway.voicemail.retry import RetryState

if TYPE_CHECKING:
    from pathlib import Path

    from gateway.json_types import JsonMapping, JsonObject, JsonValue

FORMAT = 1
Kind = Literal["voicemail", "alert", "digest"]
_KINDS: dict[str, Kind] = {"voicemail": "voicemail", "alert": "alert", "digest": "digest"}


def now_utc() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class VoicemailMeta:
    """What is known about one voicemail, written next to its audio.

    Attributes:
        id: the spool id (from ``Reservation.id``), sortable by time.
        call_id: the inbound call's id.
        caller: the caller's number, ``""`` when withheld.
        called: the number that was called.
        started_at: when recording started (aware).
        duration: length of the recording in seconds.
        route: the route that sent the call to voicemail.
        box: the voicemail box.
        why: why the call ended here, e.g. "main line unassigned, backups no answer".
        recipients: addresses the message is mailed to.
        kind: ``voicemail`` (with its WAV), or a notice to the admins that
            travels the same queue with no audio: ``alert`` (a health change)
            or ``digest`` (the day's call-back list).
        details: more text for a notice's body (the callers to call back).
    """

    id: str
    call_id: str
    caller: str
    called: str
    started_at: datetime
    duration: float
    route: str
    box: str
    why: str
    recipients: tuple[str, ...]
    kind: Kind = "voicemail"
    details: str = ""

    def __post_init__(self) -> None:
        if self.started_at.tzinfo is None:
            raise ValueError("started_at must be timezone-aware")
        if not self.recipients:
            raise ValueError(f"voicemail {self.id} has no recipients")

    def to_json(self) -> JsonObject:
        """The metadata as JSON values."""
        return {
            "id": self.id, "call_id": self.call_id, "caller": self.caller,
            "called": self.called, "started_at": self.started_at.isoformat(),
            "duration": self.duration, "route": self.route, "box": self.box, "why": self.why,
            "recipients": list(self.recipients), "kind": self.kind, "details": self.details,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: JsonMapping) -> VoicemailMeta:
        """Read metadata written by ``to_json``.

        Raises:
            KeyError, TypeError, ValueError: not what ``to_json`` writes.
        """
        recipients = data["recipients"]
        if not isinstance(recipients, list):
            raise TypeError(f"recipients: not a list: {recipients!r}")
        return cls(
            _text(data, "id"), _text(data, "call_id"), _text(data, "caller"),
            _text(data, "called"), datetime.fromisoformat(_text(data, "started_at")),
            _number(data["duration"]), _text(data, "route"), _text(data, "box"),
            _text(data, "why"), tuple(str(address) for address in recipients),
            _KINDS[_text(data, "kind", "voicemail")], _text(data, "details", ""),
        )  # fmt: skip


@dataclass(frozen=True)
class SpooledMessage:
    """A committed voicemail and its delivery state.

    Attributes:
        meta: what the voicemail is.
        retry: where it stands in the mail queue.
        audio: the WAV file.
    """

    meta: VoicemailMeta
    retry: RetryState
    audio: Path

    @property
    def id(self) -> str:
        return self.meta.id


def record_json(meta: VoicemailMeta, retry: RetryState) -> JsonObject:
    """A message's record as it is written to the spool."""
    return {"format": FORMAT, "meta": meta.to_json(), "retry": _retry_json(retry)}


def read_record(text: str) -> tuple[VoicemailMeta, RetryState]:
    """A record written by ``record_json``.

    Raises:
        KeyError, TypeError, ValueError: the text is not such a record.
    """
    record = _object(loads(text), "record")
    meta = VoicemailMeta.from_json(_object(record["meta"], "meta"))
    return meta, _retry_from_json(_object(record["retry"], "retry"))


def _retry_json(retry: RetryState) -> JsonObject:
    return {
        "queued_at": retry.queued_at.isoformat(),
        "attempts": retry.attempts,
        "next_attempt_at": retry.next_attempt_at.isoformat() if retry.next_attempt_at else None,
        "last_error": retry.last_error,
    }


def _retry_from_json(data: JsonMapping) -> RetryState:
    later, error = data.get("next_attempt_at"), data.get("last_error")
    return RetryState(
        queued_at=datetime.fromisoformat(_text(data, "queued_at")),
        attempts=int(_number(data.get("attempts", 0))),
        next_attempt_at=datetime.fromisoformat(str(later)) if later else None,
        last_error=None if error is None else str(error),
    )


def _object(value: JsonValue, what: str) -> JsonObject:
    found = as_object(value)
    if found is None:
        raise TypeError(f"{what}: not an object: {value!r}")
    return found


def _text(data: JsonMapping, key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise TypeError(f"{key}: not text: {value!r}")
    return value


def _number(value: JsonValue) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a number: {value!r}")
    return float(value)
