"""The rules' mail-related sections: voicemail boxes and health alerts."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import time
from typing import TYPE_CHECKING, Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from gateway.core.rules_errors import describe
from gateway.core.rules_values import Duration, fail, one_or_list, one_or_many

if TYPE_CHECKING:
    from pydantic.config import JsonDict

GreetingCheck = Callable[[str], str | None]
"""A greeting as written in the rules -> what is wrong with its file, or None."""


class Strict(BaseModel):
    """Every section of the rules: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


EmailList = Annotated[
    tuple[str, ...], BeforeValidator(one_or_many), one_or_list({"type": "string"})
]


def _check_addresses(email: tuple[str, ...]) -> tuple[str, ...]:
    for index, address in enumerate(email):
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address):
            raise fail(f"invalid e-mail address '{address}'", index)
    return email


_HHMM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def _local_time(value: object) -> time:
    found = _HHMM.fullmatch(value.strip()) if isinstance(value, str) else None
    if found is None:
        raise fail(f'expected a time of day as "HH:MM", e.g. "18:00"; got {describe(value)}')
    return time(int(found[1]), int(found[2]))


LocalTime = Annotated[
    time,
    BeforeValidator(_local_time),
    WithJsonSchema({"type": "string", "pattern": f"^{_HHMM.pattern}$"}),
]
"""A wall-clock time of day in the rules' time zone, written ``"18:00"``."""


NO_ADDRESS = "a voicemail box needs at least one address: its messages would reach nobody"


def _email_required(schema: JsonDict) -> None:
    """The schema says what the validator enforces: an editor flags a box without email."""
    properties = schema["properties"]
    email = properties.get("email") if isinstance(properties, dict) else None
    assert isinstance(email, dict), "VoicemailBox has an email field"
    email.pop("default", None)
    schema["required"] = ["email"]


class VoicemailBox(Strict):
    """Where messages go: a greeting, who gets them, how long they may be."""

    model_config = ConfigDict(json_schema_extra=_email_required)

    greeting: str | None = Field(
        default=None,
        description="WAV file played first (relative to the rules file); the built-in one if unset",
    )
    email: EmailList = Field(
        default=(),
        validate_default=True,  # left out is the mistake this catches: check it too
        description="who gets the messages: one address or a list; at least one",
    )
    max_seconds: Duration = Field(default=180.0, description="the recording stops at this length")
    silence_seconds: Duration = Field(
        default=6.0, description="the recording stops after this much silence"
    )
    min_seconds: float = Field(
        default=2.0, ge=0, description="shorter messages are hang-ups: reported, not mailed"
    )
    beep: bool = Field(default=True, description="a beep after the greeting")

    @field_validator("email")
    @classmethod
    def _addresses(cls, email: tuple[str, ...]) -> tuple[str, ...]:
        if not email:
            raise fail(NO_ADDRESS)
        return _check_addresses(email)

    @field_validator("greeting")
    @classmethod
    def _greeting_playable(cls, greeting: str | None, info: ValidationInfo) -> str | None:
        # A missing file would cost each caller pjsua's warnings and the
        # built-in greeting instead: the file system edge says what is wrong.
        check: GreetingCheck | None = (info.context or {}).get("check_greeting")
        problem = None if greeting is None or check is None else check(greeting)
        if problem is not None:
            raise fail(f"{problem}; leave greeting out to play the built-in one")
        return greeting


class Alerts(Strict):
    """Who is told, by mail, when a target's health changes (docs/health.md)."""

    email: EmailList = ()
    coalesce: Duration = Field(
        default=120.0,
        description="changes within this quiet time make one mail; a flap that ends "
        "where it began makes none",
    )
    digest: LocalTime | None = Field(
        default=None,
        description='"HH:MM" in the rules\' timezone: mail the call-back list of the day '
        "then (none on a day nobody was missed)",
    )

    @field_validator("email")
    @classmethod
    def _addresses(cls, email: tuple[str, ...]) -> tuple[str, ...]:
        return _check_addresses(email)

    @model_validator(mode="after")
    def _digest_has_readers(self) -> Alerts:
        if self.digest is not None and not self.email:
            raise fail("a digest needs alerts.email: nobody would get it", "digest")
        return self
