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
from gateway.core.health import DEAD, HealthState
from gateway.core.rules import NumberTarget, UriTarget, VoicemailStep
from gateway.core.rules_values import EARLY_MEDIA_TIMEOUT_S, MODES, RING_TIMEOUT_S, Mode

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from gateway.core.rules import RingAllStep, RingEachStep, RingStep, Rules

    RuleStep = RingStep | RingAllStep | RingEachStep | VoicemailStep
    RuleTarget = NumberTarget | UriTarget

DEAD_HEALTH = DEAD  # the health states a plan skips a probed target for (core/health.py)


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


def dial_of(name: str, target: RuleTarget) -> Dial:
    """Resolve a rules target to a Dial."""
    if isinstance(target, NumberTarget):
        return Dial(name=name, number=target.number, country=target.country)
    return Dial(name=name, uri=target.uri)


def rung_instead(rules: Rules, target: str) -> tuple[str, ...]:
    """Targets the routes that ring ``target`` ring with it or after it, in rules order.

    What "calls go to" means in an alert: a target of another route is no
    backup of this one.
    """
    found: list[str] = []
    for route in rules.routes:
        seen = False
        for step in route.steps:
            seen = seen or target in step.names
            found += [name for name in step.names if seen and name != target]
    return tuple(dict.fromkeys(found))


def plan_call(
    rules: Rules, to: str, from_: str | None, at: datetime,
    health: Mapping[str, HealthState],
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
    steps: Sequence[RuleStep],
    targets: Mapping[str, RuleTarget],
    health: Mapping[str, HealthState] | None = None,
    *,
    mode: Mode = "normal",
    main: frozenset[str] = frozenset(),
) -> Plan:
    """Turn a route's steps into a Plan, leaving out targets known dead.

    Args:
        route_name: the matched route's name.
        steps: the route's steps, as the rules file gives them.
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
        if isinstance(step, VoicemailStep):
            planned.append(VoicemailPlan(box=step.voicemail))
            continue
        ring = _ring_plan(step, targets, health, left_out)
        dead += [n for n in ring.skipped if health.get(n, HealthState.UNKNOWN) in DEAD]
        if ring.targets and mode != "closed":
            planned.append(ring)
    return Plan(route_name, tuple(planned), mode, skipped=tuple(dict.fromkeys(dead)))


def _ring_plan(
    step: RingStep | RingAllStep | RingEachStep,
    targets: Mapping[str, RuleTarget],
    health: Mapping[str, HealthState],
    left_out: frozenset[str],
) -> RingPlan:
    names = tuple(n for n in step.names if n not in left_out)
    unknown = HealthState.UNKNOWN
    alive = [n for n in names if step.ring_if_down or health.get(n, unknown) not in DEAD]
    return RingPlan(
        mode=RingMode(step.kind),
        targets=tuple(dial_of(n, targets[n]) for n in alive),
        timeout=step.timeout,
        early_media_timeout=step.early_media_timeout,
        failover_on=step.failover_on,
        skipped=tuple(n for n in names if n not in alive),
    )
