"""The admins' rules file: targets, voicemail boxes and routes (DESIGN.md "Rules file").

Pure: text in, a frozen ``Rules`` out, or a ``RulesError`` listing every problem
with its file and line (see ``rules_errors``; the value types are in
``rules_values``, targets, steps and routes in ``rules_routes``, voicemail boxes
and alerts in ``rules_mail``). Checks come in two passes, like a
compiler's: the structure of the whole file (every problem at once), then the
checks that need the whole file (route names unique); references to targets and
voicemail boxes are checked in the first pass, against the names the file
defines. Schedules (``when``/``unless``) are evaluated with the time passed in
(``route_for(..., at=)``); the mode (``normal``, ``force-backup``, ``closed``) is
applied by the planner (``gateway.core.plan``); the ``health`` section is the
model the health monitor reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from ruamel.yaml.comments import CommentedMap

from gateway.core.causes import Outcome
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
from gateway.core.rules_routes import (
    TAGS,
    Match,
    NumberTarget,
    RingAllStep,
    RingEachStep,
    RingStep,
    Route,
    Step,
    Target,
    UriTarget,
    VoicemailStep,
)
from gateway.core.rules_values import (
    AFTER_ANSWER_S,
    MODES,
    Country,
    Duration,
    FailoverOutcome,
    HealthKey,
    HealthWatch,
    Mode,
    Name,
    TimeZone,
    WeeklyHours,
    country,
    fail,
    normalize_number,
    unknown,
)
from gateway.core.schedule import is_open

if TYPE_CHECKING:
    from datetime import datetime

    from gateway.json_types import JsonObject

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


class SitMeaning(Strict):
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


class Rules(Strict):
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
        raise RulesError(problems_of(error.errors(), tree, source, Rules, TAGS)) from None


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


def rules_json_schema() -> JsonObject:
    """The JSON schema of the rules file, for editors (yaml-language-server)."""
    schema = Rules.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "sip-failover rules",
    }
