"""Retained state folded from events, as MQTT subscribers will read it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from gateway.status.bus import StatusEvent
from gateway.status.state import StatusState, health_topic

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def ev(kind: str, **data: object) -> StatusEvent:
    return StatusEvent(kind, T0, data)  # type: ignore[arg-type]


def test_health_events_become_retained_json_per_target() -> None:
    state = StatusState()
    changed = state.apply(ev("target.health", target="anna", state="down",
                             since="2026-01-05T08:00:00+00:00", evidence="timeout x2"))  # fmt: skip
    assert changed == {"target/anna/health"}
    assert json.loads(state.retained()["target/anna/health"]) == {
        "state": "down",
        "since": "2026-01-05T08:00:00+00:00",
        "evidence": "timeout x2",
    }
    assert state.targets == ("anna",)


def test_unchanged_values_are_not_republished() -> None:
    state = StatusState()
    assert state.apply(ev("calls.active", count=2)) == {"calls/active"}
    assert state.apply(ev("calls.active", count=2)) == set()
    assert state.retained()["calls/active"] == "2"


def test_trunk_rules_and_last_failover() -> None:
    state = StatusState()
    state.apply(ev("trunk.registration", state="failed", code=403, reason="Forbidden",
                   since="x", expires=None))  # fmt: skip
    state.apply(ev("rules.loaded", file="r.yaml", sha256="00", loaded_at="x", error="line 3"))
    state.apply(ev("call.failover", call_id="c1", outcome="unassigned", sip_code=404, q850=1,
                   to=["anna"], **{"from": "office-mobile"}))  # fmt: skip
    retained = {k: json.loads(v) for k, v in state.retained().items()}
    assert retained["trunk/registration"]["code"] == 403
    assert retained["rules"]["error"] == "line 3"
    assert retained["last_failover"] == {
        "at": T0.isoformat(),
        "call_id": "c1",
        "from": "office-mobile",
        "to": ["anna"],
        "outcome": "unassigned",
        "sip_code": 404,
        "q850": 1,
    }


def test_call_events_change_no_retained_topic() -> None:
    state = StatusState()
    assert state.apply(ev("call.incoming", call_id="c", caller="+32")) == set()
    assert state.retained() == {}


def test_removed_targets_lose_their_health() -> None:
    state = StatusState()
    state.set_targets(["anna", "desk"])
    state.apply(ev("target.health", target="desk", state="up", since="x", evidence="200"))
    assert state.set_targets(["anna"]) == ["desk"]
    assert state.targets == ("anna",)
    assert "target/desk/health" not in state.retained()


def test_target_names_cannot_escape_their_topic_level() -> None:
    assert health_topic("a/b+#") == "target/a_b__/health"


def test_a_nonsense_count_is_zero() -> None:
    state = StatusState()
    state.apply(ev("calls.active", count="many"))
    assert state.retained()["calls/active"] == "0"
