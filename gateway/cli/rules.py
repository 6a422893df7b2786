"""``check`` and ``explain``: the admin's two questions about a rules file.

``check``: is it right? (one ``file:line: message`` per problem, then warnings
about calls no route takes and routes that can never match).
``explain``: what would happen to a call to this number from that caller, at
that time, in that mode, with those targets' health?
The command line (``gateway.cli``) parses arguments and calls these.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TextIO
from zoneinfo import ZoneInfo

from gateway.core.causes import FAILURES, Outcome
from gateway.core.plan import DEAD_HEALTH, Plan, PlanStep, RingPlan, plan_call, probed
from gateway.core.rules import Route, Rules, RulesError
from gateway.core.schedule import describe_schedule, sample_times, why_closed
from gateway.rules.load import load_rules

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from gateway.core.health import HealthState
    from gateway.json_types import JsonObject, JsonValue

EXIT_OK = 0
EXIT_NO_ROUTE = 1  # the gateway would refuse the call (404)
EXIT_BAD_RULES = 2  # the rules file has problems: explain cannot answer
SAMPLE_STEP = timedelta(minutes=15)
UNKNOWN_CALLER = "+10000000000"


def check(paths: list[Path], out: TextIO, at: datetime | None = None) -> int:
    """Check rules files; print each problem as ``file:line: message``, then warnings.

    Warnings (``file: warning: ...``) do not fail the check: calls that no route
    takes, routes that never match in a sample week from ``at`` (default: now),
    schedules that are never open, a mode other than normal.

    Returns:
        0 when every file is right, 1 when any has a problem.
    """
    failed = False
    for path in paths:
        try:
            rules = load_rules(path)
        except RulesError as error:
            failed = True
            for problem in error.problems:
                print(problem, file=out)
            continue
        print(f"{path}: ok ({_count(len(rules.routes), 'route')}, "
              f"{_count(len(rules.targets), 'target')})", file=out)  # fmt: skip
        for warning in warnings(rules, at or datetime.now(UTC)):
            print(f"{path}: warning: {warning}", file=out)
    return 1 if failed else 0


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def warnings(rules: Rules, at: datetime) -> list[str]:
    """What is allowed but probably not meant, in the admin's words."""
    found = [f"schedule '{name}' has no opening hours: it is never open"
             for name, schedule in rules.schedules.items() if not any(schedule.days)]  # fmt: skip
    found += [f"no route takes every call to {n} (none without from, when or unless): "
              "the calls no route takes are refused with 404"
              for n in sorted(rules.public_numbers()) if not _caught(rules, n)]  # fmt: skip
    used = _routes_used(rules, at)
    found += [f"route '{r.name}' never matches: routes above it take all its calls "
              "(tried every 15 minutes for a week, with the callers the rules name)"
              for r in rules.routes if r.name not in used]  # fmt: skip
    if rules.mode != "normal":
        found.append(f"mode is {rules.mode}: {MODE_WORDS[rules.mode]}")
    return found


def _caught(rules: Rules, number: str) -> bool:
    return any(r.match.catches_all and number in r.match.to for r in rules.routes)


def _routes_used(rules: Rules, at: datetime) -> set[str]:
    zone = ZoneInfo(rules.timezone)
    monday = at.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    monday -= timedelta(days=monday.weekday())
    times = sample_times(monday, rules.schedules.values(), SAMPLE_STEP)
    patterns = {p for r in rules.routes for p in r.match.from_}
    callers = {None, UNKNOWN_CALLER} | {p.rstrip("*") + ("123456" if p.endswith("*") else "")
                                        for p in patterns if p != "anonymous"}  # fmt: skip
    used = set()
    for number in rules.public_numbers():
        for caller in callers:
            for time in times:
                route = rules.route_for(number, caller, time)
                if route is not None:
                    used.add(route.name)
    return used


MODE_WORDS = {
    "normal": "every step as written",
    "force-backup": "the main line is left out of every route",
    "closed": "calls go straight to voicemail (refused when the route has none)",
}


def explain(  # noqa: PLR0913, PLR0917 - the command line's contract: one argument per option
    path: Path,
    to: str,
    from_: str | None,
    at: datetime | None,
    as_json: bool,
    out: TextIO,
    health: Mapping[str, HealthState] | None = None,
    mode: str | None = None,
) -> int:
    """Say which route and steps a call would take, in words or as JSON.

    Args:
        path: the rules file.
        to: the called number.
        from_: the caller's number, None when withheld.
        at: when the call happens; naive means in the rules' time zone; None: now.
        as_json: print JSON instead of words.
        out: where to print.
        health: target name -> health state (``up``, ``down``, ``unassigned``...).
        mode: a mode as if set over MQTT (wins over the file's); None: the file's.

    Returns:
        0 when a route takes the call, 1 when none does (the gateway answers 404),
        2 when the rules file has problems (they are printed).
    """
    try:
        rules = load_rules(path)
    except RulesError as error:
        for problem in error.problems:
            print(problem, file=out)
        return EXIT_BAD_RULES
    unknown = [f"--health {name}={state}: no target '{name}' in the rules "
               f"(targets: {', '.join(sorted(rules.targets)) or 'none'})"
               for name, state in (health or {}).items() if name not in rules.targets]  # fmt: skip
    if unknown:
        print("\n".join(unknown), file=out)
        return EXIT_BAD_RULES
    if mode:
        rules = rules.with_mode_override(mode)  # type: ignore[arg-type] # checked by argparse
    when = at or datetime.now(UTC)
    when = when if when.tzinfo else when.replace(tzinfo=ZoneInfo(rules.timezone))
    report = explanation(rules, to, from_, when, health)
    print(json.dumps(report, indent=2) if as_json else report["text"], file=out)
    return EXIT_OK if report["route"] is not None else EXIT_NO_ROUTE


def explanation(
    rules: Rules,
    to: str,
    from_: str | None,
    at: datetime,
    health: Mapping[str, HealthState] | None = None,
) -> JsonObject:
    """What happens to a call, as a JSON-ready dict; ``text`` says it in words."""
    local = at.astimezone(ZoneInfo(rules.timezone))
    mode, source = rules.active_mode
    states: JsonObject = {name: str(state) for name, state in (health or {}).items()}
    call: JsonObject = {"to": to, "from": from_, "at": local.isoformat(), "mode": mode,
                        "mode_source": source, "health": states}  # fmt: skip
    intro = f"at {local:%a %Y-%m-%d %H:%M} ({rules.timezone}), mode {mode} (from {source})"
    plan = plan_call(rules, to, from_, at, health or {})  # the gateway's own planner
    schedules = {name: rules.is_open(name, at) for name in rules.schedules}
    closed = {name: reason for name, schedule in rules.schedules.items()
              if (reason := why_closed(schedule, local.date())) is not None}  # fmt: skip
    call |= {"schedules": {**schedules}, "closed_because": {**closed}}
    if plan is None:
        text = f"{intro}: {_refusal(rules, to, from_)}{_closed_words(closed)}"
        return {**call, "route": None, "steps": [], "text": text}
    route = next(r for r in rules.routes if r.name == plan.route)
    words = "; ".join(f"{i}. {_step_words(step)}" for i, step in enumerate(plan.steps, 1))
    text = f"{intro}: route {route.name}{_why(rules, route, schedules)}: {words or 'no step'}"
    text += _left_out(rules, route, plan, health or {})
    if not plan.steps or plan.steps[-1].kind != "voicemail":
        text += "; then the call is refused"
    text += _closed_words(closed)
    steps: list[JsonValue] = [_step_dict(step) for step in plan.steps]
    return {**call, "route": route.name, "steps": steps, "text": text}


def _closed_words(closed: Mapping[str, str]) -> str:
    """Which schedules a closed date or a public holiday closes all day today."""
    return "".join(f"; {name} is closed: {reason}" for name, reason in closed.items())


def _why(rules: Rules, route: Route, schedules: Mapping[str, bool]) -> str:
    reasons = []
    if route.match.from_:
        reasons.append(f"caller matches {', '.join(route.match.from_)}")
    for key, name in (("when", route.match.when), ("unless", route.match.unless)):
        if name is not None:
            state = "open" if schedules[name] else "closed"
            hours = describe_schedule(rules.schedules[name])
            reasons.append(f"{key} {name} ({hours}) is {state}")
    return f" ({'; '.join(reasons)})" if reasons else ""


def _left_out(
    rules: Rules, route: Route, plan: Plan, health: Mapping[str, HealthState]
) -> str:
    planned = {n for step in plan.steps for n in step.names}
    skipped = {n for step in plan.steps if isinstance(step, RingPlan) for n in step.skipped}
    skipped |= set(plan.skipped)
    written = [n for step in route.steps for n in step.names]
    notes = []
    for name in dict.fromkeys(written):
        if name in planned:
            if health.get(name) in DEAD_HEALTH and name not in probed(rules):
                notes.append(f"{name} is {health[name]} but has no probe: rung anyway "
                             "(only probed targets are skipped)")  # fmt: skip
            continue
        if name in skipped or plan.mode == "normal":
            notes.append(f"{name} left out (health {health.get(name, 'down or unassigned')})")
        elif plan.mode == "force-backup" and name in rules.main_line(route):
            notes.append(f"{name} left out (main line, mode force-backup)")
        else:
            notes.append(f"{name} left out (mode {plan.mode})")
    return f"; {'; '.join(notes)}" if notes else ""


def _refusal(rules: Rules, to: str, from_: str | None) -> str:
    number = rules.number(to)
    if number not in rules.public_numbers():
        numbers = ", ".join(sorted(rules.public_numbers()))
        hint = "" if number.startswith("+") or rules.country else (
            " (numbers without + are read only with a country in the rules)")
        return (f"no route: {number} is not a public number here ({numbers}){hint}; "
                "refused with 404")  # fmt: skip
    return f"no route for a call to {to} from {from_ or 'anonymous'} now; refused with 404"


def _step_dict(step: PlanStep) -> JsonObject:
    if not isinstance(step, RingPlan):
        return {"kind": step.kind, "box": step.box}
    return {
        "kind": step.kind,
        "targets": [{"name": t.name, "address": t.label} for t in step.targets],
        "timeout": step.timeout,
        "early_media_timeout": step.early_media_timeout,
        "failover_on": [o.value for o in Outcome if o in step.failover_on],
        "skipped": list(step.skipped),
    }


def _step_words(step: PlanStep) -> str:
    if not isinstance(step, RingPlan):
        return f"voicemail {step.box}"
    names = [f"{t.name} ({t.label})" for t in step.targets]
    if step.kind == "ring_all":
        words = f"ring {_and(names)} at once for {_seconds(step.timeout)}"
    elif step.kind == "ring_each":
        words = f"ring {', then '.join(names)}, {_seconds(step.timeout)} each"
    else:
        words = f"ring {names[0]} for {_seconds(step.timeout)}"
    if step.failover_on != FAILURES:
        words += f", fail over on {', '.join(o for o in Outcome if o in step.failover_on)}"
    return words


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _seconds(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    if minutes and rest:
        return f"{int(minutes)}m{rest:g}s"
    return f"{int(minutes)}m" if minutes else f"{rest:g}s"
