"""What the feed publishes matches the JSON schemas documented in docs/schemas/.

jsonschema is not a dependency, so a small checker covers the subset the
schemas use: type, enum, const, pattern, required, properties,
additionalProperties, items, and the events schema's per-kind ``$defs``.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.cli import state as commands
from gateway.core.loop_test import LoopConfig, LoopResult, LoopVerdict
from gateway.health.inbound_loop import verdict_event
from gateway.status.bus import EventBus, StatusEvent
from gateway.status.calllog import CallLog
from gateway.status.state import StatusState

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
TYPES = {"string": str, "integer": int, "number": (int, float), "object": dict, "array": list,
         "boolean": bool, "null": type(None)}  # fmt: skip


def _is(value: object, type_name: str) -> bool:
    if isinstance(value, bool) and type_name in {"integer", "number"}:
        return False  # JSON has no 1 == true
    return isinstance(value, TYPES[type_name])


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def errors(value: object, spec: dict, path: str = "$") -> list[str]:
    found: list[str] = []
    kinds = spec.get("type")
    if kinds is not None:
        names = kinds if isinstance(kinds, list) else [kinds]
        ok = any(_is(value, n) for n in names)
        if not ok:
            return [f"{path}: {value!r} is not {kinds}"]
    if "enum" in spec and value not in spec["enum"]:
        found.append(f"{path}: {value!r} not in {spec['enum']}")
    if "const" in spec and value != spec["const"]:
        found.append(f"{path}: {value!r} != {spec['const']!r}")
    if "pattern" in spec and isinstance(value, str) and not re.search(spec["pattern"], value):
        found.append(f"{path}: {value!r} does not match {spec['pattern']}")
    if isinstance(value, dict):
        found += object_errors(value, spec, path)
    if isinstance(value, list) and "items" in spec:
        for index, item in enumerate(value):
            found += errors(item, spec["items"], f"{path}[{index}]")
    return found


def object_errors(value: dict, spec: dict, path: str) -> list[str]:
    props = spec.get("properties", {})
    found = [f"{path}: missing {key}" for key in spec.get("required", []) if key not in value]
    if spec.get("additionalProperties", True) is False:
        found += [f"{path}: unexpected {key}" for key in value if key not in props]
    for key, sub in props.items():
        if key in value:
            found += errors(value[key], sub, f"{path}.{key}")
    return found


def event_errors(event: dict) -> list[str]:
    spec = schema("events")
    found = errors(event, spec)
    data_spec = spec["$defs"].get(event.get("kind"), {})
    return found + errors(event.get("data"), data_spec, "$.data")


def folded(*events: tuple[str, dict]) -> dict[str, str]:
    state = StatusState()
    for kind, data in events:
        state.apply(StatusEvent(kind, T0, data))
    return state.retained()


_LOOP = LoopConfig("+3225550100", "+32470000009")
INBOUND = verdict_event(LoopResult(LoopVerdict.BLOCKED, 0.2, 403), _LOOP, "blocked (403)")
RETAINED = folded(
    ("trunk.registration", {"state": "registered", "code": 200, "reason": "OK",
                            "since": "2026-01-05T08:00:00+00:00", "expires": 300}),
    ("target.health", {"target": "anna", "state": "unassigned",
                       "since": "2026-01-05T08:00:00+00:00", "evidence": "404 on call probe"}),
    ("rules.loaded", {"file": "rules.yaml", "sha256": "ab" * 32,
                      "loaded_at": "2026-01-05T08:00:00+00:00", "error": None}),
    ("calls.active", {"count": 2}),
    ("pool.slots", {"in_use": 3, "free": 3, "workers": {"worker1": {"in_use": 3, "free": 0},
                                                         "worker2": {"in_use": 0, "free": 3}}}),
    ("call.failover", {"call_id": "c1", "from": ["office-mobile"], "to": ["anna", "desk"],
                       "outcome": "unassigned", "sip_code": 404, "q850": 1}),
    ("inbound.health", INBOUND),
)  # fmt: skip


@pytest.mark.parametrize(
    ("topic", "name"),
    [("trunk/registration", "trunk-registration"), ("target/anna/health", "target-health"),
     ("rules", "rules"), ("calls/active", "calls-active"), ("last_failover", "last-failover"),
     ("slots", "slots"), ("inbound/health", "inbound-health")],
)  # fmt: skip
def test_retained_payloads_match_their_schema(topic: str, name: str) -> None:
    payload = RETAINED[topic]
    value = payload if name == "calls-active" else json.loads(payload)
    assert errors(value, schema(name)) == []


def test_availability_schema_has_both_values() -> None:
    assert errors("online", schema("availability")) == []
    assert errors("offline", schema("availability")) == []
    assert errors("away", schema("availability")) != []


def test_events_match_the_events_schema() -> None:
    bus = EventBus()
    sub = bus.subscribe("s", 10)
    bus.publish("call.step", {"call_id": "c", "step": 0, "kind": "ring", "targets": ["anna"]})
    bus.publish("call.ended", {"call_id": "c", "result": "voicemail", "outcome": "no_answer",
                               "sip_code": 480, "q850": 19, "duration": 31.2})  # fmt: skip
    bus.publish("inbound.health", INBOUND)
    while (event := sub.get_nowait()) is not None:
        assert event_errors(json.loads(event.to_json())) == []


def test_the_checker_catches_a_wrong_event() -> None:
    wrong = {"kind": "call.ended", "at": "x", "data": {"call_id": "c", "result": "maybe"}}
    assert len(event_errors(wrong)) >= 2


def logged_calls(state_dir: Path) -> None:
    """A failover answered by anna, and a caller who left a voicemail, in the call log."""
    log = CallLog(state_dir / commands.CALL_LOG)
    later = T0 + timedelta(seconds=5)
    log.record_many([StatusEvent(kind, at, {"call_id": cid, **data}) for cid, kind, at, data in [
        ("c1", "call.incoming", T0, {"caller": "+3211", "called": "+3225550100", "route": "main"}),
        ("c1", "call.step", T0, {"step": 0, "kind": "ring", "targets": ["office-mobile"]}),
        ("c1", "call.leg", T0, {"leg": 1, "target": "office-mobile", "outcome": "unassigned",
                                "sip_code": 404, "q850": 1}),
        ("c1", "call.failover", T0, {"outcome": "unassigned", "sip_code": 404, "q850": 1}),
        ("c1", "call.step", T0, {"step": 1, "kind": "ring", "targets": ["anna"]}),
        ("c1", "call.answered", later, {"target": "anna"}),
        ("c1", "call.ended", later, {"result": "answered", "outcome": "answered",
                                     "sip_code": 200, "q850": 16, "duration": 5.0}),
        ("c2", "call.incoming", later, {"caller": "+3222", "called": "+3225550100"}),
        ("c2", "voicemail.recorded", later, {"id": "vm-1"}),
        ("c2", "call.ended", later, {"result": "voicemail", "outcome": "no_answer",
                                     "sip_code": None, "q850": None, "duration": 40.0}),
        ("c3", "call.incoming", later, {"caller": "+3233", "called": "+3225550100"}),
    ]])  # fmt: skip
    log.close()


def calls_json(state_dir: Path, *, missed: bool) -> list[dict]:
    out, err = io.StringIO(), io.StringIO()
    code = commands.calls(state_dir, None, missed=missed, now=T0, out=out, err=err, as_json=True)
    assert (code, err.getvalue()) == (0, "")
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_calls_json_lines_match_the_call_schema(tmp_path: Path) -> None:
    logged_calls(tmp_path)
    lines = calls_json(tmp_path, missed=False)
    assert [c["call_id"] for c in lines] == ["c3", "c2", "c1"]  # newest first; c3 still live
    assert [errors(c, schema("call")) for c in lines] == [[], [], []]
    answered = lines[2]
    assert [(s["targets"], s["outcome"]) for s in answered["steps"]] == [
        (["office-mobile"], "unassigned"), (["anna"], "answered")]  # fmt: skip
    assert answered["legs"][0]["sip_code"] == 404
    assert datetime.fromisoformat(answered["started"]) == T0  # an offset, so no ambiguity
    assert lines[0]["result"] is None


def test_missed_json_lines_match_their_schema(tmp_path: Path) -> None:
    logged_calls(tmp_path)
    (line,) = calls_json(tmp_path, missed=True)
    assert errors(line, schema("missed-caller")) == []
    assert (line["caller"], line["attempts"], line["voicemail_ids"]) == ("+3222", 1, ["vm-1"])


def test_the_checker_catches_a_wrong_call_line() -> None:
    wrong = {"call_id": "c", "started": "2026-01-05 08:00", "steps": [{"step": "first"}]}
    found = errors(wrong, schema("call"))
    assert "$.started: '2026-01-05 08:00' does not match" in " ".join(found)
    assert any(f.startswith("$.steps[0]") for f in found)
