"""The values a rules file is made of: durations, numbers, names, references.

Each is an ``Annotated`` type whose validator speaks to the admin ("invalid
duration '20x' (use 20s, 1m30s, 2h)") and whose JSON schema helps their editor.
Errors are ``PydanticCustomError``s of type ``rules``; their ``sub_loc`` context
points below the validated field (an item of a list), see ``rules_errors``.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from gateway.core.causes import FAILURES, Outcome
from gateway.core.numbers import e164, is_region, number_key, prefix_key
from gateway.core.rules_errors import describe
from gateway.core.schedule import DAYS, Schedule, ScheduleError, parse_schedule

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from gateway.json_types import JsonMapping


def fail(detail: str, *sub_loc: str | int) -> PydanticCustomError:
    """A validation error in the admin's words; ``sub_loc`` points below the field."""
    return PydanticCustomError("rules", "{detail}", {"detail": detail, "sub_loc": sub_loc})


# --- durations ----------------------------------------------------------------------

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _seconds(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        parts = _DURATION_PART.findall(value)
        seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in parts)
    else:
        raise fail(f"invalid duration {describe(value)} (use 20s, 1m30s, 2h)")
    if seconds <= 0:
        raise fail(f"duration must be more than 0, got {describe(value)}")
    return seconds


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": f"^{_DURATION.pattern}$"},
        {"type": "number", "exclusiveMinimum": 0},
    ],
    "description": "seconds, or 20s, 1m30s, 15m, 2h, 500ms",
}
Duration = Annotated[float, BeforeValidator(_seconds), WithJsonSchema(_DURATION_SCHEMA)]
"""Seconds (float, > 0), written ``20s``, ``1m30s``, ``2h``, ``500ms`` or a plain number."""

# --- numbers, URIs, names -------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s.\-()]")
_NUMBER = re.compile(r"\+?\d{3,20}")
NUMBER_SCHEMA = {"type": "string", "pattern": r"^\+?[0-9 .()-]{3,40}$"}


def normalize_number(text: str, country: str | None = None) -> str:
    """A number as routes compare it: E.164 when it is a phone number, read in
    ``country`` when it has no ``+``; else separators stripped, ``00`` as ``+``."""
    return number_key(text, country)


def country_in(info: ValidationInfo) -> str | None:
    """The rules' ``country``, which ``parse_rules`` reads first and passes down."""
    country = (info.context or {}).get("country")
    return country if isinstance(country, str) else None


def _in_country(check: Callable[[object, str | None], str]) -> BeforeValidator:
    """A validator ``check(value, country)`` reading numbers in the rules' country."""
    return BeforeValidator(lambda value, info: check(value, country_in(info)))


def country(value: object) -> str:
    """An ISO 3166 region with a numbering plan, upper case (``be`` -> ``BE``)."""
    code = value.strip().upper() if isinstance(value, str) else ""
    if not is_region(code):
        raise fail(f"unknown country {describe(value)} (use an ISO 3166 code like BE, DE, FR)")
    return code


def phone_number(value: object, country: str | None = None) -> str:
    """A number the gateway dials or serves, in E.164.

    National forms are read in ``country``; a number that cannot be a phone
    number (too short or long for its country) is refused.
    """
    written = _number(value)
    found = e164(written, country)
    if found is not None:
        return found
    if written.startswith(("+", "00")):
        raise fail(
            f"{describe(value)} is not a phone number (too short or too long for its country)"
        )
    if country is None:
        raise fail(f"{describe(value)} is in national form: set country at the top of the rules "
                   "(e.g. country: BE) to read it")  # fmt: skip
    raise fail(f"{describe(value)} is not a phone number in {country}")


def _number(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise fail(
            f'write numbers in quotes, e.g. "+32470000001": YAML reads the unquoted {value} '
            "as an integer, dropping a leading + or 0"
        )
    number = _SEPARATORS.sub("", value) if isinstance(value, str) else ""
    if not _NUMBER.fullmatch(number):
        raise fail(f"invalid number {describe(value)} (expected an optional + then 3 to 20 digits)")
    return number


def caller_pattern(value: object, country: str | None = None) -> str:
    """A ``from`` pattern as callers are compared: ``anonymous``, a number
    (E.164 when it is a phone number) or a prefix ending in ``*``."""
    if isinstance(value, str) and value.strip().lower() == "anonymous":
        return "anonymous"
    if isinstance(value, str) and value.endswith("*"):
        return prefix_key(_number(value[:-1]), country) + "*"
    return number_key(_number(value), country)


_URI = re.compile(r"sips?:(?:[^@\s]+@)?[^@\s;?]+(?:[;?]\S*)?", re.IGNORECASE)


def _uri(value: object) -> str:
    if not isinstance(value, str) or not _URI.fullmatch(value):
        raise fail(f"invalid SIP URI {describe(value)} (expected sip:user@host or sips:...)")
    return value


_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def _name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise fail(
            f"invalid name {describe(value)} (use lower-case letters, digits, - and _, "
            "starting with a letter or digit)"
        )
    return value


def unknown(what: str, name: str, known: Iterable[str]) -> str:
    listed = ", ".join(sorted(known)) or "none are defined"
    return f"unknown {what} '{name}' (defined: {listed})"


def _defined(section: str, what: str) -> AfterValidator:
    def check(value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get(section)
        if known is not None and value not in known:
            raise fail(unknown(what, value, known))
        return value

    return AfterValidator(check)


def one_or_list(item: JsonMapping) -> WithJsonSchema:
    """The schema of a field written as one item or a list of them."""
    return WithJsonSchema({"anyOf": [item, {"type": "array", "items": item, "minItems": 1}]})


def one_or_many(value: object) -> object:
    return [value] if isinstance(value, str | int | float) else value


def _failover_outcome(value: object) -> Outcome:
    if value == Outcome.ANSWERED:
        raise fail("'answered' is not a failure: failover_on lists outcomes that move on")
    if value not in {str(o) for o in FAILURES}:
        expected = ", ".join(o for o in Outcome if o in FAILURES)
        raise fail(f"unknown outcome {describe(value)} (expected one of: {expected})")
    return Outcome(str(value))


_NAME_SCHEMA = {"type": "string", "pattern": f"^{_NAME.pattern}$"}
Name = Annotated[str, BeforeValidator(_name), WithJsonSchema(_NAME_SCHEMA)]
TargetRef = Annotated[str, _defined("targets", "target")]
BoxRef = Annotated[str, _defined("voicemail", "voicemail box")]
ScheduleRef = Annotated[str, _defined("schedules", "schedule")]
HealthKey = Annotated[str, BeforeValidator(_name), _defined("targets", "target")]
FailoverOutcome = Annotated[
    Outcome,
    BeforeValidator(_failover_outcome),
    WithJsonSchema({"enum": [o.value for o in Outcome if o in FAILURES]}),
]


def distinct(names: tuple[str, ...]) -> tuple[str, ...]:
    for index, name in enumerate(names):
        if name in names[:index]:
            raise fail(f"'{name}' is listed twice", index)
    return names


def valid_zone(name: str) -> str:
    """``name`` if it is a zoneinfo key (``Europe/Brussels``)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise fail(f"unknown time zone '{name}' (use an IANA name like Europe/Brussels)") from None
    return name


Dialled = Annotated[str, _in_country(phone_number), WithJsonSchema(NUMBER_SCHEMA)]
PublicNumber = Annotated[str, _in_country(phone_number), WithJsonSchema(NUMBER_SCHEMA)]
CallerPattern = Annotated[str, _in_country(caller_pattern), WithJsonSchema({"type": "string"})]
Country = Annotated[
    str,
    BeforeValidator(country),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{2}$"}),
]
SipUri = Annotated[
    str, BeforeValidator(_uri), WithJsonSchema({"type": "string", "pattern": "^sips?:"})
]
TimeZone = Annotated[str, AfterValidator(valid_zone)]


def _schedule(value: object) -> Schedule:
    try:
        return parse_schedule(value)
    except ScheduleError as error:
        raise fail(str(error), *error.key) from None


_DAY_KEY = f"({'|'.join(DAYS)})(-({'|'.join(DAYS)}))?"
_SCHEDULE_SCHEMA = {
    "type": "object",
    "description": 'day keys (mon-fri, sat, "mon,wed") -> "08:30-12:00, 13:30-18:00" or closed; '
    'closed: dates and ranges ("2026-12-24..2026-12-26"); holidays: a country code (BE, DE-BY)',
    "properties": {
        "closed": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "holidays": {
            "type": "string",
            "pattern": r"^[A-Za-z]{2}(-[\w -]+)?$",
            "description": "closed on this country's public holidays: BE, or DE-BY with a "
            "subdivision",
        },
    },
    "patternProperties": {f"^{_DAY_KEY}(,{_DAY_KEY})*$": {"type": "string"}},
    "additionalProperties": False,
}
WeeklyHours = Annotated[Schedule, PlainValidator(_schedule), WithJsonSchema(_SCHEDULE_SCHEMA)]
"""A named schedule: weekly opening hours and closed dates (``gateway.core.schedule``)."""


# --- callers ---------------------------------------------------------------------------

WITHHELD = frozenset({"", "anonymous", "unknown", "unavailable", "restricted", "private",
                      "withheld"})  # fmt: skip


def is_withheld(caller: str | None) -> bool:
    """Whether the caller's number is withheld (None, empty, ``anonymous``...)."""
    return caller is None or caller.strip().lower() in WITHHELD


def caller_matches(pattern: str, caller: str | None) -> bool:
    """Whether a normalised ``from`` pattern takes ``caller`` (None: withheld)."""
    if is_withheld(caller):
        return pattern == "anonymous"
    number = number_key(caller or "")  # already E.164 when the rules read it in their country
    return number.startswith(pattern[:-1]) if pattern.endswith("*") else number == pattern


# --- modes and health -------------------------------------------------------------------

RING_TIMEOUT_S = 30.0  # how long a leg rings when the step does not say
EARLY_MEDIA_TIMEOUT_S = 8.0  # how long a 183 announcement may last when the step does not say
AFTER_ANSWER_S = 3.0  # a leg is listened to this long after its answer: some networks
# answer, then play the tones (rules' sit.hold_answer holds the answer meanwhile)

CALL_PROBE_EVERY_S = 900.0  # a call probe costs a leg (and maybe money): every 15 min
OPTIONS_PROBE_EVERY_S = 60.0  # an OPTIONS probe costs nothing

Mode = Literal["normal", "force-backup", "closed"]
MODES: tuple[Mode, ...] = ("normal", "force-backup", "closed")


class HealthWatch(BaseModel):
    """How the health monitor watches one target (docs/health.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: Literal["call", "options"] | None = Field(
        default=None, description="call, options, or absent: passive evidence only"
    )
    every: Duration | None = Field(
        default=None, description="interval between probes (default 1m for options, 15m for call)"
    )
    only: ScheduleRef | None = Field(default=None, description="probe only while it is open")
    down_after: int = Field(default=2, ge=1, description="bad results in a row before down")
    up_after: int = Field(default=1, ge=1, description="good results in a row before up")

    @property
    def interval(self) -> float | None:
        """Seconds between probes; None when the target is not probed."""
        if self.probe is None:
            return None
        return self.every or (CALL_PROBE_EVERY_S if self.probe == "call" else OPTIONS_PROBE_EVERY_S)
