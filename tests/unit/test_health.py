"""Target health: verdicts, hysteresis, the board across reloads, alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.core.alerts import AlertCoalescer, alert_text
from gateway.core.causes import Outcome, classify
from gateway.core.health import (
    Evidence,
    HealthBoard,
    HealthChange,
    HealthPolicy,
    HealthState,
    ProbeResult,
    Source,
    TargetHealth,
    Verdict,
    WatchedTarget,
    verdict,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MOBILE = "+32470000001"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def call(status: int, reason: str | None = None, *, minute: float = 0, rang: bool = False):
    c = classify(status, reason)
    return Evidence.of(Source.CALL, c.outcome, at(minute), sip_code=status, q850=c.q850, rang=rang)


def probe(status: int, reason: str | None = None, *, minute: float = 0):
    c = classify(status, reason)
    return Evidence.of(Source.CALL_PROBE, c.outcome, at(minute), sip_code=status, q850=c.q850)


def ringing(status: int = 180, *, minute: float = 0):
    return Evidence.of(Source.CALL_PROBE, ProbeResult.PROGRESS, at(minute), sip_code=status)


def options(status: int | None, *, minute: float = 0):
    result = ProbeResult.TIMEOUT if status is None else ProbeResult.RESPONDED
    return Evidence.of(Source.OPTIONS_PROBE, result, at(minute), sip_code=status)


GOOD = ringing
BAD = probe  # with 404: unassigned, with 503: down


def health(down_after: int = 2, up_after: int = 1) -> TargetHealth:
    return TargetHealth(
        "office-mobile", WatchedTarget(MOBILE, HealthPolicy(down_after, up_after)), T0
    )


def run(h: TargetHealth, evidence: list[Evidence]) -> list[tuple[HealthState, HealthState]]:
    return [(c.previous, c.state) for e in evidence if (c := h.observe(e))]


# --- verdicts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        (call(200), Verdict.GOOD),
        (call(486), Verdict.GOOD),
        (call(603), Verdict.GOOD),
        (call(487, minute=0, rang=True), None),  # failed (487) says nothing
        (Evidence.of(Source.CALL, Outcome.NO_ANSWER, T0, rang=True), Verdict.GOOD),
        (Evidence.of(Source.CALL, Outcome.NO_ANSWER, T0, sip_code=480), None),
        (call(404), Verdict.UNASSIGNED),
        (call(480, "Q.850;cause=1"), Verdict.UNASSIGNED),
        (call(503), Verdict.DOWN),
        (call(488), None),
        (ringing(180), Verdict.GOOD),
        (ringing(183), Verdict.GOOD),
        (probe(604), Verdict.UNASSIGNED),
        (probe(500, "Q.850;cause=38"), Verdict.DOWN),
        (Evidence.of(Source.CALL_PROBE, Outcome.UNREACHABLE, T0), Verdict.DOWN),
        (options(200), Verdict.GOOD),
        (options(501), Verdict.GOOD),
        (options(404), Verdict.GOOD),  # OPTIONS never says unassigned
        (options(503), Verdict.DOWN),
        (options(408), Verdict.DOWN),
        (options(None), Verdict.DOWN),
    ],
    ids=lambda v: v.text if isinstance(v, Evidence) else str(v),
)
def test_verdict_of_each_result(evidence, expected):
    assert verdict(evidence) is expected


def test_evidence_text_names_code_cause_and_source():
    assert probe(404, "Q.850;cause=1").text == "404 Q.850 cause 1 to call probe"
    assert options(None).text == "no response to OPTIONS probe"
    assert call(486).text == "486 to a call"


def test_evidence_as_json_for_status_events():
    data = probe(404, "Q.850;cause=1", minute=42).as_json()
    assert data == {
        "source": "call-probe",
        "outcome": "unassigned",
        "sip_code": 404,
        "q850": 1,
        "at": "2026-03-02T09:42:00+00:00",
        "text": "404 Q.850 cause 1 to call probe",
    }


# --- hysteresis -------------------------------------------------------------


def test_unknown_needs_down_after_bad_results_to_be_down():
    h = health(down_after=2)
    assert h.observe(BAD(503, minute=1)) is None
    change = h.observe(BAD(503, minute=2))
    assert change is not None
    assert (change.previous, change.state, change.since) == (
        HealthState.UNKNOWN,
        HealthState.DOWN,
        at(2),
    )
    assert h.status().since == at(2)


def test_up_after_good_results_bring_it_back():
    h = health(down_after=1, up_after=2)
    assert run(h, [BAD(404)]) == [(HealthState.UNKNOWN, HealthState.UNASSIGNED)]
    assert h.observe(GOOD(minute=1)) is None
    assert h.state is HealthState.UNASSIGNED
    assert run(h, [GOOD(minute=2)]) == [(HealthState.UNASSIGNED, HealthState.UP)]


def test_a_fresh_target_is_up_after_up_after_good_results():
    assert run(health(up_after=1), [GOOD()]) == [(HealthState.UNKNOWN, HealthState.UP)]
    h = health(up_after=3)
    assert run(h, [GOOD(), GOOD()]) == []
    assert h.state is HealthState.UNKNOWN


def test_flapping_below_down_after_changes_nothing():
    h = health(down_after=2)
    run(h, [GOOD()])
    flaps = [BAD(404), GOOD(), BAD(503), GOOD(), BAD(404)]
    assert run(h, flaps) == []
    assert h.state is HealthState.UP


def test_unassigned_and_down_are_told_apart():
    h404, h503 = health(), health()
    assert run(h404, [BAD(404), BAD(404)])[-1][1] is HealthState.UNASSIGNED
    assert run(h503, [BAD(503), BAD(503)])[-1][1] is HealthState.DOWN


def test_the_latest_bad_kind_wins_and_the_streak_goes_on():
    h = health(down_after=2)
    run(h, [GOOD()])
    assert run(h, [BAD(503), BAD(404)]) == [(HealthState.UP, HealthState.UNASSIGNED)]
    assert run(h, [BAD(503)]) == [(HealthState.UNASSIGNED, HealthState.DOWN)]


def test_evidence_without_verdict_neither_extends_nor_breaks_a_streak():
    h = health(down_after=2)
    run(h, [GOOD()])
    assert run(h, [BAD(404), call(488), call(480), BAD(404)]) == [
        (HealthState.UP, HealthState.UNASSIGNED)
    ]
    assert h.status().evidence == BAD(404)


def test_one_failing_call_flips_the_state_when_down_after_is_one():
    h = health(down_after=1)
    run(h, [GOOD()])
    failing = call(404, "Q.850;cause=1", minute=42)
    change = h.observe(failing)
    assert change is not None
    assert change.state is HealthState.UNASSIGNED
    assert change.evidence == failing
    assert change.as_json() == {
        "target": "office-mobile",
        "state": "unassigned",
        "since": "2026-03-02T09:42:00+00:00",
        "evidence": failing.as_json(),
    }


def test_thresholds_below_one_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        HealthPolicy(down_after=0)
    with pytest.raises(ValueError, match="at least 1"):
        HealthPolicy(up_after=0)


# --- the board --------------------------------------------------------------


def board_with(**addresses: str) -> HealthBoard:
    board = HealthBoard()
    board.reload(
        {n: WatchedTarget(a, HealthPolicy(down_after=1)) for n, a in addresses.items()}, T0
    )
    return board


def test_board_tracks_each_target_apart():
    board = board_with(office=MOBILE, anna="+32480000002")
    change = board.observe("office", BAD(404, minute=5))
    assert change is not None
    assert change.address == MOBILE
    assert board.state("office") is HealthState.UNASSIGNED
    assert board.state("anna") is HealthState.UNKNOWN
    assert board.snapshot()["anna"].as_json("anna") == {
        "target": "anna",
        "state": "unknown",
        "since": "2026-03-02T09:00:00+00:00",
        "evidence": None,
    }


def test_reload_keeps_history_of_remaining_targets():
    board = board_with(office=MOBILE, anna="+32480000002", desk="sip:desk@192.0.2.10")
    board.observe("office", BAD(404))
    board.observe("anna", BAD(503))
    done = board.reload(
        {
            "office": WatchedTarget(MOBILE, HealthPolicy(down_after=3)),
            "anna": WatchedTarget("+32480000099"),
            "bob": WatchedTarget("+32490000003"),
        },
        at(10),
    )
    assert (done.added, done.removed, done.reset) == (("bob",), ("desk",), ("anna",))
    assert board.state("office") is HealthState.UNASSIGNED
    assert board.state("anna") is HealthState.UNKNOWN  # another number: starts over
    assert board.snapshot()["anna"].since == at(10)
    assert set(board.snapshot()) == {"office", "anna", "bob"}


def test_reloaded_thresholds_apply_to_the_kept_state():
    board = board_with(office=MOBILE)
    board.reload({"office": WatchedTarget(MOBILE, HealthPolicy(down_after=1, up_after=2))}, at(1))
    board.observe("office", BAD(404))
    assert board.observe("office", GOOD()) is None
    assert board.observe("office", GOOD()) is not None


def test_evidence_for_a_removed_target_is_dropped():
    board = board_with(office=MOBILE)
    board.reload({}, at(1))
    assert board.observe("office", BAD(404)) is None
    assert board.state("office") is HealthState.UNKNOWN
    assert board.snapshot() == {}


# --- alerts -----------------------------------------------------------------


def change(previous: HealthState, state: HealthState, minute: float = 0) -> HealthChange:
    return HealthChange("office-mobile", MOBILE, previous, state, at(minute), BAD(404))


UP, DOWN, UNASSIGNED, UNKNOWN = (
    HealthState.UP,
    HealthState.DOWN,
    HealthState.UNASSIGNED,
    HealthState.UNKNOWN,
)


def test_an_alert_is_due_after_a_quiet_window():
    alerts = AlertCoalescer(window=60)
    alerts.push(change(UP, UNASSIGNED), now=1000)
    assert alerts.next_deadline() == 1060
    assert alerts.due(1059) == []
    [alert] = alerts.due(1060)
    assert (alert.previous, alert.state) == (UP, UNASSIGNED)
    assert alerts.next_deadline() is None
    assert alerts.due(2000) == []


def test_changes_in_a_window_make_one_alert_with_the_net_change():
    alerts = AlertCoalescer(window=60)
    alerts.push(change(UP, DOWN), now=0)
    alerts.push(change(DOWN, UNASSIGNED), now=30)
    assert alerts.next_deadline() == 90
    assert [(a.previous, a.state) for a in alerts.due(90)] == [(UP, UNASSIGNED)]


def test_flapping_back_within_the_window_sends_nothing():
    alerts = AlertCoalescer(window=60)
    alerts.push(change(UP, DOWN), now=0)
    alerts.push(change(DOWN, UP), now=20)
    assert alerts.due(1000) == []


def test_endless_flapping_is_reported_after_max_delay():
    alerts = AlertCoalescer(window=60, max_delay=300)
    for i in range(11):  # a change every 30 s, ending down
        old, new = (UP, DOWN) if i % 2 == 0 else (DOWN, UP)
        alerts.push(change(old, new), now=i * 30.0)
    assert alerts.next_deadline() == 300  # not 300 + 60: the first change waited long enough
    assert [(a.previous, a.state) for a in alerts.due(300)] == [(UP, DOWN)]


def test_fresh_start_finding_a_target_up_is_not_news():
    alerts = AlertCoalescer(window=60)
    alerts.push(change(UNKNOWN, UP), now=0)
    assert alerts.due(60) == []
    alerts.push(change(UNKNOWN, DOWN), now=100)
    assert [a.state for a in alerts.due(160)] == [DOWN]


def test_targets_are_coalesced_apart_and_forgotten_on_removal():
    alerts = AlertCoalescer(window=60)
    alerts.push(change(UP, DOWN), now=0)
    alerts.push(HealthChange("anna", "+32480000002", UP, DOWN, at(0), None), now=10)
    alerts.forget("office-mobile")
    assert [a.target for a in alerts.due(100)] == ["anna"]


def test_coalescer_refuses_a_max_delay_below_the_window():
    with pytest.raises(ValueError, match="window"):
        AlertCoalescer(window=60, max_delay=30)


def test_alert_text_reads_as_a_sentence():
    text = alert_text(change(UP, UNASSIGNED, minute=102), label="Main line", calls_go_to="anna")
    assert text == (
        "Main line office-mobile (+32470000001) answers UNASSIGNED since 10:42 — calls go to anna"
    )


def test_alert_text_for_recovery_in_the_rules_timezone():
    brussels = timezone(timedelta(hours=1))
    text = alert_text(change(DOWN, UP, minute=102), tz=brussels)
    assert text == "office-mobile (+32470000001) is UP again since 11:42"
    assert alert_text(change(UP, DOWN)).endswith("is DOWN since 09:00")


def test_a_recovery_says_when_the_outage_began():
    health = TargetHealth("office-mobile", WatchedTarget(MOBILE, HealthPolicy(down_after=1)), T0)
    assert health.observe(probe(200, minute=1)).outage_since is None  # unknown -> up
    down = health.observe(probe(503, minute=5))
    assert (down.state, down.outage_since) == (HealthState.DOWN, None)
    assert health.observe(call(404, minute=9)).state is HealthState.UNASSIGNED
    back = health.observe(probe(200, minute=30))
    assert (back.previous, back.state) == (HealthState.UNASSIGNED, HealthState.UP)
    assert back.outage_since == at(5)  # down, then unassigned: one outage
    again = health.observe(probe(503, minute=40))
    assert health.observe(probe(200, minute=41)).outage_since == again.since == at(40)
