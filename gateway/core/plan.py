"""Rules + call + health + now -> Plan: the steps one call will go through.

The planner is where "skip a route we know is dead" happens: a *probed* target
whose health is ``unassigned`` or ``down`` is left out of a ring step (unless
the step says ``ring_if_down``). Only a probed target may be skipped: with no
probe, a skipped target would never be tried again, so never recover. A ring
step left with no target is dropped, and when nothing is left to ring the plan
still ends in voicemail if the route has one. The session never looks at rules
or health again: a call runs on the plan it started with, so a rule reload
never changes a call in progress.

The mode (docs/rules.md "Modes") is applied here too: ``force-backup`` leaves
the main line out of every ring step (a step left empty is dropped), ``closed``
keeps only the route's voicemail step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from gateway.core.causes import FAILURES, Outcome
from gateway.core.health import DEAD
from gateway.core.rules_values import MODES, Mode

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from gateway.core.rules import Rules

DEAD_HEALTH = DEAD  # the health states a plan skips a probed target for (core/health.py)
RING_TIMEOUT_S = 30.0  # how long a leg rings when the step does not say
EARLY_MEDIA_TIMEOUT_S = 8.0  # how long a 183 announcement may last when the step does not say


class RingMode(StrEnum):
    """How the targets of one ring step are rung."""

    ONE = "ring"
    ALL = "ring_all"
    EACH = "ring_each"


@dataclass(frozen=True, slots=True)
class Dial:
    """A target resolved to what the SIP adapter dials."""

    name: str
    uri: str | None = None
    number: str | None = None  # E.164
    country: str | None = None  # the rules' country: where national forms are dialled from

    def __post_init__(self) -> None:
        if (self.uri is None) == (self.number is None):
            raise ValueError("a dial target has exactly one of uri or number")

    @property
    def label(self) -> str:
        return self.number or self.uri or self.name


@dataclass(frozen=True, slots=True)
class RingPlan:
    """Ring targets: one, all at once, or each in turn."""

    mode: RingMode
    targets: tuple[Dial, ...]
    timeout: float = RING_TIMEOUT_S
    early_media_timeout: float = EARLY_MEDIA_TIMEOUT_S
    failover_on: frozenset[Outcome] = FAILURES
    skipped: tuple[str, ...] = ()  # names left out because their health is dead

    @property
    def kind(self) -> str:
        return self.mode.value

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.targets)


@dataclass(frozen=True, slots=True)
class VoicemailPlan:
    """Take a message into a box."""

    box: str

    kind: str = field(default="voicemail", init=False)

    @property
    def names(self) -> tuple[str, ...]:
        return (f"voicemail:{self.box}",)


PlanStep = RingPlan | VoicemailPlan


@dataclass(frozen=True, slots=True)
class Plan:
    """The route a call matched and the steps it will go through."""

    route: str
    steps: tuple[PlanStep, ...]
    mode: Mode = "normal"
    skipped: tuple[str, ...] = ()  # targets left out because their health is dead


def dial_of(name: str, target: object) -> Dial:
    """Resolve a rules target to a Dial."""
    number = getattr(target, "number", None)
    uri = getattr(target, "uri", None)
    return Dial(name=name, number=number, uri=uri, country=getattr(target, "country", None))


def plan_call(
    rules: Rules, to: str, from_: str | None, at: datetime, health: Mapping[str, str]
) -> Plan | None:
    """The plan for a call: the route that takes it, its steps for this mode and health.

    The one planning function of the running gateway and of ``explain``, so
    that they cannot disagree. Only a target with a probe is skipped for its
    health (docs/health.md): real calls are an unprobed target's only evidence,
    so skipping it once would skip it for ever.

    Args:
        rules: the rules in force, with their mode (``Rules.active_mode``).
        to: the called number.
        from_: the caller's number; None when withheld.
        at: when the call comes (aware), for schedules.
        health: target name -> health state; names without a probe are ignored.

    Returns:
        The plan, or None when no route takes the call (it is refused with 404).
    """
    route = rules.route_for(to, from_, at)
    if route is None:
        return None
    watched = probed(rules)
    skippable = {name: state for name, state in health.items() if name in watched}
    mode, _ = rules.active_mode
    return plan_steps(route.name, tuple(route.steps), rules.targets, skippable,
                      mode=mode, main=rules.main_line(route))  # fmt: skip


def probed(rules: Rules) -> frozenset[str]:
    """The targets with a probe: the only ones a plan skips for their health."""
    return frozenset(name for name, watch in rules.health.items() if watch.probe is not None)


def plan_steps(  # noqa: PLR0913 - the route, the rules' parts and the call's context
    route_name: str,
    steps: tuple[object, ...],
    targets: Mapping[str, object],
    health: Mapping[str, str] | None = None,
    *,
    mode: Mode = "normal",
    main: frozenset[str] = frozenset(),
) -> Plan:
    """Turn a route's steps into a Plan, leaving out targets known dead.

    Args:
        route_name: the matched route's name.
        steps: the route's steps (rules model objects: ``ring``, ``ring_all``,
            ``ring_each`` or ``voicemail`` attribute, plus ring options).
        targets: the rules' targets by name.
        health: target name -> health state (``up``, ``unassigned``, ``down``,
            ``unknown``); a missing name is ``unknown``.
        mode: ``normal``, ``force-backup`` (leave out ``main``) or ``closed``
            (only voicemail).
        main: the route's main-line target names (for ``force-backup``).

    Returns:
        The plan. It may be empty when every ring target is dead and the route
        has no voicemail; the caller is then refused.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    health = health or {}
    left_out = main if mode == "force-backup" else frozenset()
    planned: list[PlanStep] = []
    dead: list[str] = []
    for step in steps:
        box = getattr(step, "voicemail", None)
        if box is not None:
            planned.append(VoicemailPlan(box=box))
            continue
        ring = _ring_plan(step, targets, health, left_out)
        dead += [n for n in ring.skipped if health.get(n, "unknown") in DEAD]
        if ring.targets and mode != "closed":
            planned.append(ring)
    return Plan(route_name, tuple(planned), mode, skipped=tuple(dict.fromkeys(dead)))


def _ring_plan(
    step: object, targets: Mapping[str, object], health: Mapping[str, str], left_out: frozenset[str]
) -> RingPlan:
    mode, all_names = _mode_and_names(step)
    names = tuple(n for n in all_names if n not in left_out)
    ring_if_down = bool(getattr(step, "ring_if_down", False))
    alive = [n for n in names if ring_if_down or health.get(n, "unknown") not in DEAD]
    return RingPlan(
        mode=mode,
        targets=tuple(dial_of(n, targets[n]) for n in alive),
        timeout=float(getattr(step, "timeout", RING_TIMEOUT_S)),
        early_media_timeout=float(getattr(step, "early_media_timeout", EARLY_MEDIA_TIMEOUT_S)),
        failover_on=frozenset(getattr(step, "failover_on", FAILURES)),
        skipped=tuple(n for n in names if n not in alive),
    )


def _mode_and_names(step: object) -> tuple[RingMode, tuple[str, ...]]:
    for mode in RingMode:
        value = getattr(step, mode.value, None)
        if value is not None:
            names = (value,) if isinstance(value, str) else tuple(value)
            return mode, names
    raise TypeError(f"not a step the planner knows: {step!r}")
