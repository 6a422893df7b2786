"""The admins' rules file: targets, voicemail boxes and routes (DESIGN.md "Rules file").

Pure: text in, a frozen ``Rules`` out, or a ``RulesError`` listing every problem
with its file and line (see ``rules_errors``; the value types are in
``rules_values``). Checks come in two passes, like a
compiler's: the structure of the whole file (every problem at once), then the
checks that need the whole file (route names unique); references to targets and
voicemail boxes are checked in the first pass, against the names the file
defines. Schedules (``when``/``unless``) are evaluated with the time passed in
(``route_for(..., at=)``); the mode (``normal``, ``force-backup``, ``closed``) is
applied by the planner (``gateway.core.plan``); the ``health`` section is the
model the health monitor reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from ruamel.yaml.comments import CommentedMap

from gateway.core.causes import FAILURES, Outcome
from gateway.core.rules_errors import (
    Problem,
    RulesError,
    describe,
    line_of,
    load_tree,
    plain,
    problems_of,
)
from gateway.core.rules_loop import LoopTestRule  # noqa: TC001 - pydantic reads it at run time
from gateway.core.rules_mail import Alerts, GreetingCheck, Strict, VoicemailBox
from gateway.core.rules_values import (
    AFTER_ANSWER_S,
    EARLY_MEDIA_TIMEOUT_S,
    MODES,
    NUMBER_SCHEMA,
    RING_TIMEOUT_S,
    BoxRef,
    CallerPattern,
    Country,
    Dialled,
    Duration,
    FailoverOutcome,
    HealthKey,
    HealthWatch,
    Mode,
    Name,
    PublicNumber,
    ScheduleRef,
    SipUri,
    TargetRef,
    TimeZone,
    WeeklyHours,
    caller_matches,
    country,
    country_in,
    distinct,
    fail,
    normalize_number,
    one_or_list,
    one_or_many,
    unknown,
)
from gateway.core.schedule import is_open

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "MODES",
    "Alerts",
    "Duration",
    "GreetingCheck",
    "HealthWatch",
    "Match",
    "Mode",
    "NumberTarget",
    "Problem",
    "RingAllStep",
    "RingEachStep",
    "RingStep",
    "Route",
    "Rules",
    "RulesError",
    "SitMeaning",
    "Step",
    "Target",
    "UriTarget",
    "VoicemailBox",
    "VoicemailStep",
    "normalize_number",
    "parse_rules",
    "rules_json_schema",
]  # fmt: skip


# --- models --------------------------------------------------------------------------


_Strict = Strict


_MAIN = Field(default=False, description="the main line: left out while the mode is force-backup")


class NumberTarget(_Strict):
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


class UriTarget(_Strict):
    """A SIP URI called directly (``sip:`` or ``sips:``)."""

    uri: SipUri
    main: bool = _MAIN

    @property
    def address(self) -> str:
        return self.uri


class _RingOptions(_Strict):
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


class VoicemailStep(_Strict):
    """Take a message into a voicemail box; always a route's last step."""

    kind: ClassVar[str] = "voicemail"
    voicemail: BoxRef

    @property
    def names(self) -> tuple[str, ...]:
        return ()


_STEP_KEYS = {"ring": "RingStep", "ring_all": "RingAllStep", "ring_each": "RingEachStep",
              "voicemail": "VoicemailStep"}  # fmt: skip
_TARGET_KEYS = {"number": "NumberTarget", "uri": "UriTarget"}


def _tag_by_key(keys: Mapping[str, str]) -> Any:
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
_TAGS: dict[str, type[BaseModel]] = {
    "RingStep": RingStep, "RingAllStep": RingAllStep, "RingEachStep": RingEachStep,
    "VoicemailStep": VoicemailStep, "NumberTarget": NumberTarget, "UriTarget": UriTarget,
}  # fmt: skip


IsOpen = Callable[[str], bool]


class Match(_Strict):
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


class Route(_Strict):
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


class SitMeaning(_Strict):
    """What a Special Information Tone heard on a leg means (gateway/core/sit.py)."""

    itu: FailoverOutcome = Field(
        default=Outcome.UNASSIGNED,
        description="the outcome of an ITU-T E.180 SIT (950/1400/1800 Hz), which carries no "
        "cause; the North-American codes carry their own",
    )
    hold_answer: Duration | None = Field(
        default=None,
        description="hold an answer this long (at most 3s) while its audio is heard for SIT: "
        "tones then fail the leg over instead of ending the call; absent: bridge at once",
    )

    @field_validator("hold_answer")
    @classmethod
    def _within_listening(cls, hold: float | None) -> float | None:
        if hold is not None and hold > AFTER_ANSWER_S:
            raise fail(f"at most {AFTER_ANSWER_S:.0f}s: the gateway listens that long after "
                       "an answer")  # fmt: skip
        return hold


class Rules(_Strict):
    """A whole, checked rules file."""

    version: Literal[1] = Field(description="format version; always 1")
    timezone: TimeZone = "UTC"
    country: Country | None = Field(
        default=None,
        description="ISO 3166 country numbers without + are read in (BE): 025550100 is "
        "+3225550100; absent: numbers are written with + or 00",
    )
    mode: Mode = Field(
        default="normal",
        description="normal; force-backup: leave out the main line; closed: voicemail only",
    )
    targets: dict[Name, Target] = Field(default_factory=dict)
    voicemail: dict[Name, VoicemailBox] = Field(default_factory=dict)
    alerts: Alerts = Field(default_factory=Alerts, description="who hears of health changes")
    schedules: dict[Name, WeeklyHours] = Field(default_factory=dict)
    routes: Annotated[tuple[Route, ...], Field(min_length=1)]
    health: dict[HealthKey, HealthWatch] = Field(default_factory=dict)
    sit: SitMeaning = Field(
        default_factory=SitMeaning, description="what tones heard in early media mean"
    )
    loop_test: LoopTestRule | None = Field(
        default=None, description="call the public number through the trunk, expect it back"
    )
    _override: Mode | None = PrivateAttr(default=None)

    @field_validator("routes")
    @classmethod
    def _names_unique(cls, routes: tuple[Route, ...]) -> tuple[Route, ...]:
        names = [route.name for route in routes]
        for index, name in enumerate(names):
            if name in names[:index]:
                first = names.index(name)
                raise fail(f"route name '{name}' is already used by routes[{first}]",
                            index, "name")  # fmt: skip
        return routes

    @model_validator(mode="after")
    def _references(self) -> Rules:
        # parse_rules checks references item by item (all at once, with lines);
        # this catches Rules built in code, where there is no file to point into.
        for r, route in enumerate(self.routes):
            for s, step in enumerate(route.steps):
                for name in step.names:
                    if name not in self.targets:
                        raise fail(unknown("target", name, self.targets), "routes", r, "steps", s)
                if isinstance(step, VoicemailStep) and step.voicemail not in self.voicemail:
                    raise fail(unknown("voicemail box", step.voicemail, self.voicemail),
                                "routes", r, "steps", s)  # fmt: skip
            for key in ("when", "unless"):
                name = getattr(route.match, key)
                if name is not None and name not in self.schedules:
                    raise fail(unknown("schedule", name, self.schedules), "routes", r, "match", key)
        return self

    def route_for(self, to: str, from_: str | None, at: datetime | None = None) -> Route | None:
        """The first route that takes a call to ``to`` from ``from_`` at ``at``.

        Args:
            to: the called number, in any form a trunk sends (``025550100``,
                ``tel:+32…``, ``sip:…;user=phone``): read in ``country``.
            from_: the caller's number; None (or ``anonymous``...) when withheld.
            at: when the call comes (aware); None: schedules are not considered.

        Returns:
            The route, or None: the call is refused (404).
        """
        is_open = None if at is None else (lambda name: self.is_open(name, at))
        to, from_ = self.number(to), None if from_ is None else self.number(from_)
        return next((r for r in self.routes if r.match.matches(to, from_, is_open)), None)

    def number(self, text: str) -> str:
        """A number as a trunk sent it, as routes, the call log and the feed show it:
        E.164 when it is a phone number (read in ``country``), else as written."""
        return normalize_number(text, self.country)

    def is_open(self, schedule: str, at: datetime) -> bool:
        """Whether the schedule called ``schedule`` is open at ``at`` (aware).

        Raises:
            KeyError: no such schedule.
        """
        return is_open(self.schedules[schedule], at, ZoneInfo(self.timezone))

    @property
    def active_mode(self) -> tuple[Mode, Literal["file", "mqtt"]]:
        """The mode the planner applies, and where it comes from."""
        if self._override is not None:
            return self._override, "mqtt"
        return self.mode, "file"

    @property
    def mode_override(self) -> Mode | None:
        """The mode set over MQTT, which wins over the file's; None when not set."""
        return self._override

    def with_mode_override(self, mode: Mode | None) -> Rules:
        """These rules with ``mode`` overriding the file's (None: the file's again)."""
        copy = self.model_copy()
        copy._override = mode  # noqa: SLF001 - a copy of our own class
        return copy

    def main_line(self, route: Route) -> frozenset[str]:
        """The targets force-backup leaves out of ``route``.

        Those marked ``main: true``; when no target in the file is marked, the
        targets of the route's first ring step.
        """
        marked = frozenset(name for name, t in self.targets.items() if t.main)
        if marked:
            return marked
        first = next((step for step in route.steps if step.names), None)
        return frozenset(first.names) if first is not None else frozenset()

    def public_numbers(self) -> frozenset[str]:
        """Every number a route serves (normalised): calls to others are refused."""
        return frozenset(number for route in self.routes for number in route.match.to)

    def target(self, name: str) -> NumberTarget | UriTarget:
        """The target called ``name``.

        Raises:
            KeyError: no such target.
        """
        return self.targets[name]


def parse_rules(
    text: str,
    source: str,
    *,
    call_legs: int | None = None,
    check_greeting: GreetingCheck | None = None,
) -> Rules:
    """Parse and check a rules file's text.

    Args:
        text: the YAML text.
        source: the file name to put in problems.
        call_legs: the call legs the SIP engine gives calls (the caller's leg
            included): a ``ring_all`` of more targets than a call can ring at
            once is a problem. None: not checked.
        check_greeting: says what is wrong with a voicemail greeting file
            (None when it is fine). None: greetings are not checked.

    Returns:
        The checked rules.

    Raises:
        RulesError: every problem found, each with its line.
    """
    tree = load_tree(text, source)
    if not isinstance(tree, CommentedMap):
        got = "an empty file" if tree is None else describe(plain(tree))
        message = f"(top): expected a mapping with version, targets and routes, got {got}"
        raise RulesError([Problem(source, line_of(tree, (), {}), message)])
    data = plain(tree)
    assert isinstance(data, dict)
    sections = ("targets", "voicemail", "schedules")
    context: dict[str, object] = {section: _names_in(data.get(section)) for section in sections}
    context |= {"call_legs": call_legs, "check_greeting": check_greeting}
    context["country"] = _country_of(data.get("country"))
    try:
        return Rules.model_validate(data, context=context)
    except ValidationError as error:
        raise RulesError(problems_of(error.errors(), tree, source, Rules, _TAGS)) from None


def _country_of(value: object) -> str | None:
    """The file's country if it is one (else its own problem, reported at its line)."""
    try:
        return country(value) if value is not None else None
    except PydanticCustomError:
        return None


def _names_in(section: object) -> frozenset[str] | None:
    if section is None:
        return frozenset()
    return frozenset(map(str, section)) if isinstance(section, Mapping) else None


def rules_json_schema() -> dict[str, Any]:
    """The JSON schema of the rules file, for editors (yaml-language-server)."""
    schema = Rules.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "sip-failover rules",
    }
