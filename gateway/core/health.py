"""What the gateway believes about each target: health with hysteresis.

Evidence comes from OPTIONS probes, call probes and the outcome of every real
call (passive). Each piece of evidence gives a verdict: good, unassigned, down,
or none. ``down_after`` consecutive bad verdicts make a target ``down`` or
``unassigned``; ``up_after`` consecutive good ones make it ``up``. Results are
counted, not timed, so the logic needs no clock: the wall time of a change is
the time stamped on the evidence that caused it.

Invariants of ``TargetHealth``:
- the good streak and the bad streak are never both above zero;
- the state leaves ``up``/``unknown`` for a bad state only when the bad streak
  reaches ``down_after``, and becomes ``up`` only when the good streak reaches
  ``up_after``;
- once bad, the kind of the latest bad verdict is the state (a 404 after a run
  of timeouts turns ``down`` into ``unassigned``);
- evidence without a verdict neither extends nor breaks a streak.

What a person is told, and when, is ``alerts.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from gateway.core.causes import Outcome

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from gateway.json_types import JsonObject


class HealthState(StrEnum):
    """What the gateway believes about a target."""

    UP = "up"
    UNASSIGNED = "unassigned"
    DOWN = "down"
    UNKNOWN = "unknown"


DEAD: frozenset[HealthState] = frozenset({HealthState.DOWN, HealthState.UNASSIGNED})
"""States a plan may skip. ``unknown`` is never skipped: no evidence, no verdict."""


class Source(StrEnum):
    """Where a piece of evidence came from."""

    OPTIONS_PROBE = "options-probe"
    CALL_PROBE = "call-probe"
    CALL = "call"


class ProbeResult(StrEnum):
    """Probe results that are not a classified final response."""

    RESPONDED = "responded"  # OPTIONS: some final response came back
    PROGRESS = "progress"  # an INVITE got 180/183; a probe CANCELs on it
    TIMEOUT = "timeout"  # no response at all (timer B/F, RFC 3261 17.1)


class Verdict(StrEnum):
    """What one piece of evidence says about a target."""

    GOOD = "good"
    UNASSIGNED = "unassigned"
    DOWN = "down"


_SOURCE_WORDS: dict[Source, str] = {
    Source.OPTIONS_PROBE: "OPTIONS probe",
    Source.CALL_PROBE: "call probe",
    Source.CALL: "a call",
}


@dataclass(frozen=True, slots=True)
class Evidence:
    """One observation about a target.

    Attributes:
        source: options probe, call probe or a real call.
        outcome: the classified outcome of the leg, or a ``ProbeResult``.
        sip_code: the SIP status seen (final, or 180/183 for progress), if any.
        q850: the Q.850 cause from the Reason header, if any.
        at: wall time of the observation (aware); becomes ``since`` on a change.
        text: a short line for people, e.g. "404 Q.850 cause 1 to call probe".
        rang: the leg got 180/183 before it ended (tells a phone that did not
            answer from a number that never reached a phone).
    """

    source: Source
    outcome: Outcome | ProbeResult
    sip_code: int | None
    q850: int | None
    at: datetime
    text: str
    rang: bool = False

    @classmethod
    def of(  # noqa: PLR0913 - every field is a separate fact about the leg
        cls,
        source: Source,
        outcome: Outcome | ProbeResult,
        at: datetime,
        *,
        sip_code: int | None = None,
        q850: int | None = None,
        rang: bool = False,
    ) -> Evidence:
        """Build evidence with its human text (arguments as the attributes)."""
        text = f"{_code_words(sip_code, q850, outcome)} to {_SOURCE_WORDS[source]}"
        return cls(source, outcome, sip_code, q850, at, text, rang)

    def as_json(self) -> JsonObject:
        """The evidence as JSON values (for ``target.health`` events)."""
        return {
            "source": self.source.value,
            "outcome": self.outcome.value,
            "sip_code": self.sip_code,
            "q850": self.q850,
            "at": self.at.isoformat(),
            "text": self.text,
        }


def _code_words(sip_code: int | None, q850: int | None, outcome: Outcome | ProbeResult) -> str:
    if sip_code is None:
        return "no response" if outcome is ProbeResult.TIMEOUT else str(outcome.value)
    return f"{sip_code} Q.850 cause {q850}" if q850 is not None else str(sip_code)


# A final response to OPTIONS means the server is there, whatever it says (a 404
# or 501 included): OPTIONS never tells "unassigned". Except these: 408 is what
# pjsip reports on its own when timer F fires, 503 what it reports on a transport
# error (and what an overloaded server says), 504 a proxy's "next hop silent".
_OPTIONS_DOWN = frozenset({408, 503, 504})

# Good means "the number exists and reaches a phone". ``failed`` (other 4xx/6xx:
# 401, 488 ...) is about our request or the trunk account, not the target, and
# gives no verdict. ``no_answer`` is good only when the leg rang (see verdict()).
_LEG_VERDICTS: dict[Outcome | ProbeResult, Verdict] = {
    Outcome.ANSWERED: Verdict.GOOD,
    Outcome.BUSY: Verdict.GOOD,
    Outcome.REJECTED: Verdict.GOOD,
    ProbeResult.PROGRESS: Verdict.GOOD,
    Outcome.UNASSIGNED: Verdict.UNASSIGNED,
    Outcome.UNREACHABLE: Verdict.DOWN,
    ProbeResult.TIMEOUT: Verdict.DOWN,
}


def verdict(evidence: Evidence) -> Verdict | None:
    """What a piece of evidence says about its target, or None.

    None when it says nothing about the target: ``failed``, and ``no_answer``
    without ringing (a switched-off phone, which the operator answers fast anyway).
    """
    if evidence.source is Source.OPTIONS_PROBE:
        if evidence.sip_code is None or evidence.sip_code in _OPTIONS_DOWN:
            return Verdict.DOWN
        return Verdict.GOOD
    if evidence.outcome is Outcome.NO_ANSWER:
        return Verdict.GOOD if evidence.rang else None
    return _LEG_VERDICTS.get(evidence.outcome)


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """Hysteresis thresholds of one target (rules: ``health.<target>``)."""

    down_after: int = 2
    up_after: int = 1

    def __post_init__(self) -> None:
        """Raises ValueError for a threshold below 1 (it could never be reached)."""
        if self.down_after < 1 or self.up_after < 1:
            raise ValueError("down_after and up_after must be at least 1")


@dataclass(frozen=True, slots=True)
class WatchedTarget:
    """A target as the health board knows it: its address and thresholds."""

    address: str  # the number or URI; a changed address starts over at unknown
    policy: HealthPolicy = HealthPolicy()


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """A target's current health, as published."""

    address: str
    state: HealthState
    since: datetime
    evidence: Evidence | None  # None until some evidence counted

    def as_json(self, target: str) -> JsonObject:
        """The ``target.health`` event data: target, state, since, evidence."""
        return {
            "target": target,
            "state": self.state.value,
            "since": self.since.isoformat(),
            "evidence": None if self.evidence is None else self.evidence.as_json(),
        }


@dataclass(frozen=True, slots=True)
class HealthChange:
    """A target's health moved from ``previous`` to ``state`` at ``since``.

    ``outage_since`` is set on a change from a dead state back to ``up``: when
    the target went ``down``/``unassigned`` (a move between the two is one outage).
    """

    target: str
    address: str
    previous: HealthState
    state: HealthState
    since: datetime
    evidence: Evidence | None
    outage_since: datetime | None = None

    def as_json(self) -> JsonObject:
        """The ``target.health`` event data: target, state, since, evidence."""
        status = HealthStatus(self.address, self.state, self.since, self.evidence)
        return status.as_json(self.target)


class TargetHealth:
    """One target's health state machine (see the module invariants)."""

    def __init__(self, target: str, watched: WatchedTarget, since: datetime) -> None:
        """Start at ``unknown`` from ``since`` (aware wall time)."""
        self.target = target
        self.watched = watched
        self.state = HealthState.UNKNOWN
        self.since = since
        self.evidence: Evidence | None = None
        self.dead_since: datetime | None = None  # when the current outage began
        self._good = 0
        self._bad = 0

    def observe(self, evidence: Evidence) -> HealthChange | None:
        """Count one piece of evidence; return the change if the state changed."""
        seen = verdict(evidence)
        if seen is None:
            return None
        self.evidence = evidence
        new = self._count_good() if seen is Verdict.GOOD else self._count_bad(seen)
        if new is self.state:
            return None
        outage = self.dead_since if new is HealthState.UP else None
        change = HealthChange(
            self.target, self.watched.address, self.state, new, evidence.at, evidence, outage
        )
        if new in DEAD and self.state not in DEAD:
            self.dead_since = evidence.at
        elif new not in DEAD:
            self.dead_since = None
        self.state, self.since = new, evidence.at
        return change

    def status(self) -> HealthStatus:
        """The current state, its start and the last evidence that counted."""
        return HealthStatus(self.watched.address, self.state, self.since, self.evidence)

    def _count_good(self) -> HealthState:
        self._good, self._bad = self._good + 1, 0
        return HealthState.UP if self._good >= self.watched.policy.up_after else self.state

    def _count_bad(self, seen: Verdict) -> HealthState:
        self._good, self._bad = 0, self._bad + 1
        if self._bad >= self.watched.policy.down_after or self.state in DEAD:
            return HealthState(seen.value)
        return self.state


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a rules reload did to the board (names, sorted)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]  # clear their retained topics
    reset: tuple[str, ...]  # address changed: back to unknown, history dropped


class HealthBoard:
    """The health of every target in the rules."""

    def __init__(self) -> None:
        """Start empty; ``reload`` gives it the targets."""
        self._targets: dict[str, TargetHealth] = {}

    def reload(self, watched: Mapping[str, WatchedTarget], at: datetime) -> Reloaded:
        """Follow a rules reload, keeping the history of targets that remain.

        A remaining target with a new policy keeps its state and streaks under
        the new thresholds; one with a new address is another phone line, so it
        starts over at ``unknown``. ``at`` (aware) is the ``since`` of new and
        reset targets. Returns the names added, removed and reset.
        """
        old = self._targets
        removed = sorted(old.keys() - watched.keys())
        added = sorted(watched.keys() - old.keys())
        reset = sorted(
            n for n in watched.keys() & old.keys() if old[n].watched.address != watched[n].address
        )
        for name in removed:
            del old[name]
        for name in (*added, *reset):
            old[name] = TargetHealth(name, watched[name], at)
        for name, spec in watched.items():
            old[name].watched = spec
        return Reloaded(tuple(added), tuple(removed), tuple(reset))

    def observe(self, target: str, evidence: Evidence) -> HealthChange | None:
        """Count evidence for a target; None for a name no longer in the rules.

        A call still ringing a target that a reload removed reports its
        outcome later: it is dropped, not an error.
        """
        health = self._targets.get(target)
        return None if health is None else health.observe(evidence)

    def state(self, target: str) -> HealthState:
        """The target's state; ``unknown`` for a name the board does not know."""
        health = self._targets.get(target)
        return HealthState.UNKNOWN if health is None else health.state

    def snapshot(self) -> dict[str, HealthStatus]:
        """Every target's status, by name."""
        return {name: health.status() for name, health in self._targets.items()}
