"""What a route is: the targets it rings, its steps, and the calls it matches.

The pydantic models of the rules file's ``targets`` entries and ``routes``
items (DESIGN.md "Rules file"). Each checks itself (a name a step rings is
checked against the file's names passed down by ``parse_rules``); the checks
across the whole file (route names unique, references of rules built in code)
are in ``gateway.core.rules``, which holds ``Rules`` and re-exports these models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.core.causes import FAILURES
from gateway.core.rules_mail import Strict
from gateway.core.rules_values import (
    EARLY_MEDIA_TIMEOUT_S,
    NUMBER_SCHEMA,
    RING_TIMEOUT_S,
    BoxRef,
    CallerPattern,
    Dialled,
    Duration,
    FailoverOutcome,
    Name,
    PublicNumber,
    ScheduleRef,
    SipUri,
    TargetRef,
    caller_matches,
    country_in,
    distinct,
    fail,
    normalize_number,
    one_or_list,
    one_or_many,
)

_MAIN = Field(default=False, description="the main line: left out while the mode is force-backup")


class NumberTarget(Strict):
    """A number dialled through the trunk, in E.164 (read in the rules' country)."""

    number: Dialled
    main: bool = _MAIN
    _country: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _read_in(self, info: ValidationInfo) -> NumberTarget:
        self._country = country_in(info)
        return self

    @property
    def address(self) -> str:
        return self.number

    @property
    def country(self) -> str | None:
        """The rules' country: where the trunk dials national forms from."""
        return self._country


class UriTarget(Strict):
    """A SIP URI called directly (``sip:`` or ``sips:``)."""

    uri: SipUri
    main: bool = _MAIN

    @property
    def address(self) -> str:
        return self.uri


class _RingOptions(Strict):
    timeout: Duration = Field(default=RING_TIMEOUT_S, description="how long each leg may ring")
    early_media_timeout: Duration = Field(
        default=EARLY_MEDIA_TIMEOUT_S,
        description="how long a 183 announcement may last before the leg is given up",
    )
    failover_on: frozenset[FailoverOutcome] = Field(
        default=FAILURES, description="outcomes that move on to the next step"
    )
    ring_if_down: bool = Field(
        default=False, description="ring targets even while their health is down or unassigned"
    )


class RingStep(_RingOptions):
    """Ring one target."""

    kind: ClassVar[str] = "ring"
    ring: TargetRef

    @property
    def names(self) -> tuple[str, ...]:
        return (self.ring,)


_RingList = Annotated[tuple[TargetRef, ...], Field(min_length=1), AfterValidator(distinct)]


class RingAllStep(_RingOptions):
    """Ring several targets at once; the first to answer wins."""

    kind: ClassVar[str] = "ring_all"
    ring_all: _RingList

    @field_validator("ring_all")
    @classmethod
    def _within_the_engine(cls, names: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        # The caller's own leg is one of the engine's call legs: a call can
        # ring one target fewer than there are legs. A leg past that would be
        # "rung" in words only; the gateway fails it at once as unreachable.
        legs = (info.context or {}).get("call_legs")
        if legs is not None and len(names) > legs - 1:
            raise fail(
                f"{len(names)} targets at once, but a call can ring at most {legs - 1} at once "
                f"(the SIP engine has {legs} call legs and the caller holds one): ring the "
                "others in a next step, or use ring_each"
            )
        return names

    @property
    def names(self) -> tuple[str, ...]:
        return self.ring_all


class RingEachStep(_RingOptions):
    """Ring several targets one after another, ``timeout`` each."""

    kind: ClassVar[str] = "ring_each"
    ring_each: _RingList

    @property
    def names(self) -> tuple[str, ...]:
        return self.ring_each


class VoicemailStep(Strict):
    """Take a message into a voicemail box; always a route's last step."""

    kind: ClassVar[str] = "voicemail"
    voicemail: BoxRef

    @property
    def names(self) -> tuple[str, ...]:
        return ()


_STEP_KEYS = {"ring": "RingStep", "ring_all": "RingAllStep", "ring_each": "RingEachStep",
              "voicemail": "VoicemailStep"}  # fmt: skip
_TARGET_KEYS = {"number": "NumberTarget", "uri": "UriTarget"}


def _tag_by_key(keys: Mapping[str, str]) -> Callable[[object], str | None]:
    """Which model a step or target is: the one named by the one key it has."""

    def tag(value: object) -> str | None:
        if isinstance(value, BaseModel):
            return type(value).__name__
        found = [tag for key, tag in keys.items() if isinstance(value, Mapping) and key in value]
        return found[0] if len(found) == 1 else None

    return tag


Step = Annotated[
    Annotated[RingStep, Tag("RingStep")]
    | Annotated[RingAllStep, Tag("RingAllStep")]
    | Annotated[RingEachStep, Tag("RingEachStep")]
    | Annotated[VoicemailStep, Tag("VoicemailStep")],
    Discriminator(
        _tag_by_key(_STEP_KEYS),
        custom_error_type="step_kind",
        custom_error_message="a step needs exactly one of ring, ring_all, ring_each, voicemail",
    ),
]
Target = Annotated[
    Annotated[NumberTarget, Tag("NumberTarget")] | Annotated[UriTarget, Tag("UriTarget")],
    Discriminator(
        _tag_by_key(_TARGET_KEYS),
        custom_error_type="target_kind",
        custom_error_message="a target needs exactly one of number, uri",
    ),
]
TAGS: dict[str, type[BaseModel]] = {
    "RingStep": RingStep, "RingAllStep": RingAllStep, "RingEachStep": RingEachStep,
    "VoicemailStep": VoicemailStep, "NumberTarget": NumberTarget, "UriTarget": UriTarget,
}  # fmt: skip
"""Each tag of ``Step`` and ``Target`` and its model: problems name the model's fields."""


IsOpen = Callable[[str], bool]


class Match(Strict):
    """Which calls a route takes: called number(s), optionally caller patterns."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    to: Annotated[
        tuple[PublicNumber, ...],
        BeforeValidator(one_or_many),
        one_or_list(NUMBER_SCHEMA),
        Field(min_length=1, description="the public number(s) this route serves"),
    ]
    from_: Annotated[
        tuple[CallerPattern, ...],
        BeforeValidator(one_or_many),
        one_or_list({"type": "string"}),
        Field(alias="from", description='numbers, prefixes like "+3247*", or "anonymous"'),
    ] = ()
    when: ScheduleRef | None = Field(default=None, description="only while this schedule is open")
    unless: ScheduleRef | None = Field(
        default=None, description="only while this schedule is closed"
    )

    def matches(self, to: str, from_: str | None, is_open: IsOpen | None = None) -> bool:
        """Whether a call to ``to`` from ``from_`` (None: withheld) takes this route.

        ``is_open(schedule)`` says whether a schedule is open now; None: schedules
        are not considered (every ``when``/``unless`` is taken as met).
        """
        if normalize_number(to) not in self.to:  # E.164 already, from Rules.route_for
            return False
        if self.from_ and not any(caller_matches(p, from_) for p in self.from_):
            return False
        if is_open is None:
            return True
        return (self.when is None or is_open(self.when)) and (
            self.unless is None or not is_open(self.unless)
        )

    @property
    def catches_all(self) -> bool:
        """Whether this match takes every call to its numbers (no caller, no schedule)."""
        return not self.from_ and self.when is None and self.unless is None


class Route(Strict):
    """A named rule: the calls it matches and the steps they go through."""

    name: Name
    match: Match
    steps: Annotated[tuple[Step, ...], Field(min_length=1)]

    @field_validator("steps")
    @classmethod
    def _voicemail_last(cls, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        for index, step in enumerate(steps[:-1]):
            if isinstance(step, VoicemailStep):
                raise fail("a step after voicemail could never run (voicemail ends the call)",
                            index + 1)  # fmt: skip
        return steps
