"""``check`` and ``explain``: the admin's two questions about a rules file.

``check``: is it right? (one ``file:line: message`` per problem).
``explain``: what would happen to a call to this number from that caller?
The command line (``gateway.cli``) parses arguments and calls these.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TextIO

from gateway.core.causes import FAILURES, Outcome
from gateway.core.rules import (
    RingAllStep,
    RingEachStep,
    RingStep,
    Rules,
    RulesError,
    Step,
    normalize_number,
)
from gateway.rules_file import load_rules

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

EXIT_OK = 0
EXIT_NO_ROUTE = 1  # the gateway would refuse the call (404)
EXIT_BAD_RULES = 2  # the rules file has problems: explain cannot answer


def check(paths: list[Path], out: TextIO) -> int:
    """Check rules files; print each problem as ``file:line: message``.

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
    return 1 if failed else 0


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def explain(  # noqa: PLR0913, PLR0917 - the command line's contract: one argument per option
    path: Path, to: str, from_: str | None, at: datetime | None, as_json: bool, out: TextIO
) -> int:
    """Say which route and steps a call would take, in words or as JSON.

    Args:
        path: the rules file.
        to: the called number.
        from_: the caller's number, None when withheld.
        at: when the call happens (echoed; no rule depends on time yet).
        as_json: print JSON instead of words.
        out: where to print.

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
    report = explanation(rules, to, from_, at)
    print(json.dumps(report, indent=2) if as_json else report["text"], file=out)
    return EXIT_OK if report["route"] is not None else EXIT_NO_ROUTE


def explanation(rules: Rules, to: str, from_: str | None, at: datetime | None) -> dict[str, Any]:
    """What happens to a call, as a JSON-ready dict; ``text`` says it in words."""
    route = rules.route_for(to, from_)
    call = {"to": to, "from": from_, "at": at.isoformat() if at else None}
    if route is None:
        return {**call, "route": None, "steps": [], "text": _refusal(rules, to, from_)}
    steps = [_step_dict(rules, step) for step in route.steps]
    words = "; ".join(f"{i}. {_step_words(rules, step)}" for i, step in enumerate(route.steps, 1))
    text = f"{f'at {at.isoformat()}: ' if at else ''}route {route.name}: {words}"
    if route.steps[-1].kind != "voicemail":
        text += "; then the call is refused"
    return {**call, "route": route.name, "steps": steps, "text": text}


def _refusal(rules: Rules, to: str, from_: str | None) -> str:
    if normalize_number(to) not in rules.public_numbers():
        numbers = ", ".join(sorted(rules.public_numbers()))
        return f"no route: {to} is not a public number here ({numbers}); refused with 404"
    return f"no route for a call to {to} from {from_ or 'anonymous'}; refused with 404"


def _step_dict(rules: Rules, step: Step) -> dict[str, Any]:
    if not isinstance(step, RingStep | RingAllStep | RingEachStep):
        return {"kind": step.kind, "box": step.voicemail}
    targets = [{"name": name, "address": rules.target(name).address} for name in step.names]
    return {
        "kind": step.kind,
        "targets": targets,
        "timeout": step.timeout,
        "early_media_timeout": step.early_media_timeout,
        "failover_on": [o.value for o in Outcome if o in step.failover_on],
    }


def _step_words(rules: Rules, step: Step) -> str:
    if not isinstance(step, RingStep | RingAllStep | RingEachStep):
        return f"voicemail {step.voicemail}"
    names = [f"{name} ({rules.target(name).address})" for name in step.names]
    if isinstance(step, RingAllStep):
        words = f"ring {_and(names)} at once for {_seconds(step.timeout)}"
    elif isinstance(step, RingEachStep):
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
