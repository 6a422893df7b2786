"""The call log on a real SQLite file: rows, the call-back list, the writer task."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from gateway.cli.state import format_table
from gateway.status.bus import EventBus, StatusEvent
from gateway.status.calllog import CallLog

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[CallLog]:
    call_log = CallLog(tmp_path / "calls.sqlite")
    yield call_log
    call_log.close()


def call(
    call_id: str, caller: str, minute: int, result: str, *, voicemail: str | None = None
) -> list[StatusEvent]:
    """The events of one call that ends with ``result``."""
    start, end = at(minute), at(minute) + timedelta(seconds=30)
    events = [
        StatusEvent("call.incoming", start, {"call_id": call_id, "caller": caller,
                                             "called": "+3225550100", "route": "main-line"}),
        StatusEvent("call.step", start, {"call_id": call_id, "step": 0, "kind": "ring",
                                         "targets": ["office-mobile"]}),
    ]  # fmt: skip
    if result == "answered":
        events.append(StatusEvent("call.answered", end, {"call_id": call_id, "target": "anna"}))
    if voicemail:
        events.append(
            StatusEvent("voicemail.recorded", end, {"id": voicemail, "call_id": call_id,
                                                    "caller": caller, "called": "+3225550100",
                                                    "duration": 12.0, "why": "no_answer"})
        )  # fmt: skip
    ended = {"call_id": call_id, "result": result, "outcome": None, "sip_code": None,
             "q850": None, "duration": 30.0}  # fmt: skip
    return [*events, StatusEvent("call.ended", end, ended)]


def day(log: CallLog) -> None:
    for events in (
        call("a", "+3211", 0, "answered"),
        call("b", "+3222", 1, "voicemail", voicemail="vm1"),
        call("c", "+3233", 2, "abandoned"),
        call("d", "+3222", 3, "abandoned"),
        call("e", "+3244", 4, "failed"),
        call("f", "+3244", 5, "answered"),  # got through later: settled
        call("g", "+3211", 6, "refused"),  # missed after an earlier answered call
    ):
        log.record_many(events)
    log.record(StatusEvent("call.incoming", at(7), {"call_id": "h", "caller": "+3255"}))


def test_missed_lists_callers_nobody_spoke_to_newest_first(log: CallLog) -> None:
    day(log)
    missed = log.missed()
    assert [(m.caller, m.attempts) for m in missed] == [("+3211", 1), ("+3222", 2), ("+3233", 1)]
    assert missed[1].voicemail_ids == ("vm1",)
    assert missed[1].first_attempt == at(1)
    assert missed[1].last_attempt == at(3)
    assert missed[1].last_result == "abandoned"


def test_missed_since_counts_only_later_attempts(log: CallLog) -> None:
    day(log)
    missed = log.missed(since=at(2))
    assert [(m.caller, m.attempts) for m in missed] == [("+3211", 1), ("+3222", 1), ("+3233", 1)]


def test_a_failover_call_keeps_every_step_and_leg(log: CallLog) -> None:
    cid = {"call_id": "x"}
    log.record_many([
        StatusEvent("call.incoming", at(0), {**cid, "caller": "+3299", "called": "+3225550100",
                                             "route": "main-line"}),
        StatusEvent("call.step", at(0), {**cid, "step": 0, "kind": "ring",
                                         "targets": ["office-mobile"]}),
        StatusEvent("call.leg", at(1), {**cid, "leg": 1, "target": "office-mobile",
                                        "outcome": "unassigned", "sip_code": 404, "q850": 1}),
        StatusEvent("call.failover", at(1), {**cid, "from": "office-mobile", "to": ["anna"],
                                             "outcome": "unassigned", "sip_code": 404,
                                             "q850": 1}),
        StatusEvent("call.step", at(1), {**cid, "step": 1, "kind": "ring_all",
                                         "targets": ["anna", "desk"]}),
        StatusEvent("call.leg", at(2), {**cid, "leg": 3, "target": "desk",
                                        "outcome": "busy", "sip_code": 486, "q850": 17}),
        StatusEvent("call.answered", at(2), {**cid, "target": "anna"}),
        StatusEvent("call.ended", at(3), {**cid, "result": "answered", "outcome": "answered",
                                          "sip_code": 200, "q850": 16, "duration": 61.5}),
    ])  # fmt: skip
    (record,) = log.calls()
    assert (record.caller, record.route, record.answered_by) == ("+3299", "main-line", "anna")
    assert (record.result, record.duration) == ("answered", 61.5)
    assert [(s.kind, s.targets, s.outcome, s.sip_code) for s in record.steps] == [
        ("ring", ("office-mobile",), "unassigned", 404),
        ("ring_all", ("anna", "desk"), "answered", 200),
    ]
    assert [(g.target, g.outcome, g.q850) for g in record.legs] == [
        ("office-mobile", "unassigned", 1),
        ("desk", "busy", 17),
    ]
    table = format_table([record], tz=UTC)
    assert "2026-03-02 09:00:00  +3299" in table
    assert "office-mobile unassigned 404 > desk busy 486" in table


def test_calls_since_newest_first_and_table_shows_voicemail(log: CallLog) -> None:
    day(log)
    records = log.calls(since=at(5))
    assert [r.call_id for r in records] == ["h", "g", "f"]
    table = format_table(log.calls(since=at(1))[-1:], tz=UTC).splitlines()
    assert table[0].split() == ["time", "caller", "called", "route", "result", "who", "secs",
                                "path"]  # fmt: skip
    assert "vm:vm1" in table[1]


async def test_run_records_bus_events_and_flushes_on_stop(log: CallLog) -> None:
    bus = EventBus()
    task = asyncio.create_task(log.run(bus))
    await asyncio.sleep(0)  # let it subscribe
    for event in call("r", "+3266", 0, "abandoned"):
        bus.publish(event.kind, event.data, event.at)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [m.caller for m in log.missed()] == ["+3266"]


def test_log_survives_reopening(tmp_path: Path) -> None:
    first = CallLog(tmp_path / "calls.sqlite")
    first.record_many(call("a", "+3211", 0, "abandoned"))
    first.close()
    again = CallLog(tmp_path / "calls.sqlite")
    assert [m.caller for m in again.missed()] == ["+3211"]
    again.close()


async def test_a_batch_being_written_when_the_log_stops_is_not_lost(tmp_path: Path) -> None:
    # The gateway stops right after a call: the batch handed to the writer
    # thread must be written before the rest is flushed, never dropped.
    for attempt in range(30):
        log = CallLog(tmp_path / f"calls-{attempt}.sqlite")
        bus = EventBus()
        task = asyncio.create_task(log.run(bus))
        await asyncio.sleep(0)  # let it subscribe
        incoming, *rest = call(f"c{attempt}", "+3277", 0, "failed")
        bus.publish(incoming.kind, incoming.data, incoming.at)
        await asyncio.sleep(0)  # the writer takes the first batch
        for event in rest:
            bus.publish(event.kind, event.data, event.at)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (record,) = log.calls()
        log.close()
        assert (record.caller, record.result) == ("+3277", "failed"), f"attempt {attempt}"
