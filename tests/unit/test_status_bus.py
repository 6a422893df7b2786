"""Event bus: bounded, independent subscriptions; publishing never fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.status.bus import EventBus, StatusEvent

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def drain(sub) -> list[StatusEvent]:
    out = []
    while (event := sub.get_nowait()) is not None:
        out.append(event)
    return out


def test_every_subscriber_gets_every_event_in_order() -> None:
    bus = EventBus()
    a, b = bus.subscribe("a", 10), bus.subscribe("b", 10)
    for n in range(3):
        bus.publish("calls.active", {"count": n}, T0)
    assert [e.data["count"] for e in drain(a)] == [0, 1, 2]
    assert [e.data["count"] for e in drain(b)] == [0, 1, 2]


def test_full_subscriber_drops_its_oldest_and_counts_without_hurting_others() -> None:
    bus = EventBus()
    slow, fast = bus.subscribe("slow", 3), bus.subscribe("fast", 100)
    for n in range(10):
        bus.publish("calls.active", {"count": n}, T0)
    assert [e.data["count"] for e in drain(slow)] == [7, 8, 9]
    assert slow.dropped == 7
    assert slow.take_dropped() == 7
    assert slow.take_dropped() == 0
    assert len(drain(fast)) == 10
    assert fast.dropped == 0


def test_publish_never_raises_into_the_call_path() -> None:
    bus = EventBus()
    sub = bus.subscribe("s", 10)
    bus.publish("call.leg", {"call_id": "x"}, datetime(2026, 1, 1))  # noqa: DTZ001 - naive on purpose: a bug, logged
    bus.publish("call.leg", {"call_id": "y"})
    assert [e.data["call_id"] for e in drain(sub)] == ["y"]


def test_event_time_is_utc_and_json_round_trips() -> None:
    bus = EventBus()
    sub = bus.subscribe("s", 10)
    brussels = timezone(timedelta(hours=1))
    bus.publish("call.step", {"call_id": "c", "kind": "ring", "targets": ["anna"]},
                datetime(2026, 1, 5, 9, 0, tzinfo=brussels))  # fmt: skip
    (event,) = drain(sub)
    assert event.at == T0
    assert event.at.tzinfo == UTC
    assert StatusEvent.from_json(event.to_json()) == event
    assert event.to_dict()["data"] == {"call_id": "c", "kind": "ring", "targets": ["anna"]}


def test_from_json_refuses_other_documents() -> None:
    with pytest.raises(ValueError, match="not a status event"):
        StatusEvent.from_json('["call.leg"]')


async def test_async_iteration_ends_after_close_and_drain() -> None:
    bus = EventBus()
    sub = bus.subscribe("s", 10)
    bus.publish("calls.active", {"count": 1}, T0)
    sub.close()
    bus.publish("calls.active", {"count": 2}, T0)  # after close: not received
    assert [e.data["count"] async for e in sub] == [1]


def test_zero_sized_subscription_is_refused() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        EventBus().subscribe("s", 0)


def test_a_value_json_cannot_hold_reaches_every_subscriber_as_the_text_mqtt_shows() -> None:
    # The call log, the status file and MQTT must see the same event: a
    # subscriber that json.dumps its fields (the status file) must not choke.
    bus = EventBus()
    sub = bus.subscribe("s", 10)
    since = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    bus.publish("target.health", {"target": "anna", "since": since, "names": ("a", "b"),
                                  "evidence": {"at": since, 7: None}}, T0)  # fmt: skip
    (event,) = drain(sub)
    assert event.data == {"target": "anna", "since": str(since), "names": ["a", "b"],
                          "evidence": {"at": str(since), "7": None}}  # fmt: skip
    assert StatusEvent.from_json(event.to_json()) == event
