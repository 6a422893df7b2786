"""The engine's limits are read from the installed pjsua2, and everything plans with them.

The PyPI wheel has 4 call slots; a pjsua2 built with deploy/build-pjsua2.sh has 32.
These tests give the planners an engine of 8 slots (7 legs for calls, one kept
free for the gate) and check what an admin would notice: wider ``ring_all``
steps pass ``check``, a third caller is admitted while two calls are bridged,
and the limits are published.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import types
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from test_status_schemas import errors, schema

from gateway.core.admission import Admission, Capacity, EngineLoad, Screening
from gateway.core.intake import CallAdmitted, CallRefused, verdict
from gateway.core.plan import plan_call
from gateway.core.rules import RulesError
from gateway.health.probes import Prober
from gateway.rules.load import load_rules
from gateway.sip.engine_limits import planned_limits
from gateway.sip.limits import WHEEL, EngineLimits
from gateway.status.state import StatusState
from gateway.status.statusfile import format_status

if TYPE_CHECKING:
    from pathlib import Path

EIGHT = EngineLimits(call_slots=8, io_queue="epoll", tls="OpenSSL 3.0.19 27 Jan 2026",
                     tls_ciphers=60)  # fmt: skip
TRUNK = "192.0.2.1"
RING_FIVE = """version: 1
targets:
  a: {uri: "sip:a@192.0.2.11"}
  b: {uri: "sip:b@192.0.2.12"}
  c: {uri: "sip:c@192.0.2.13"}
  d: {uri: "sip:d@192.0.2.14"}
  e: {uri: "sip:e@192.0.2.15"}
routes:
  - name: main
    match: {to: "+3225550100"}
    steps: [{ring_all: [a, b, c, d, e]}]
"""


@pytest.fixture
def ring_five(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RING_FIVE, encoding="utf-8")
    return path


@pytest.fixture
def eight_slot_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed pjsua2 whose PJSUA_MAX_CALLS is 8 (UaConfig defaults maxCalls to it)."""
    fake = types.ModuleType("pjsua2")
    fake.UaConfig = lambda: types.SimpleNamespace(maxCalls=8)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pjsua2", fake)


def test_eight_slots_give_seven_legs_for_calls() -> None:
    assert EIGHT.call_legs == 7
    assert WHEEL.call_legs == 3


def test_a_ring_all_of_five_passes_with_eight_slots_not_with_the_wheels_four(
    ring_five: Path,
) -> None:
    rules = load_rules(ring_five, call_legs=EIGHT.call_legs)
    assert rules.routes[0].steps[0].names == ("a", "b", "c", "d", "e")
    with pytest.raises(RulesError, match="can ring at most 2 at once"):
        load_rules(ring_five, call_legs=WHEEL.call_legs)


def test_check_plans_with_the_installed_engine_not_a_constant(
    ring_five: Path, eight_slot_engine: None
) -> None:
    assert planned_limits().call_slots == 8
    assert load_rules(ring_five).routes[0].steps[0].names == ("a", "b", "c", "d", "e")


def test_a_third_caller_is_admitted_while_two_calls_are_bridged(ring_five: Path) -> None:
    bridged_twice = 4  # two callers, each bridged to one phone
    eight = Admission(frozenset({TRUNK}), Capacity(EIGHT.call_legs))
    assert eight.screen(TRUNK, "third", EngineLoad(bridged_twice), now=0.0) is Screening.ADMIT
    assert eight.screen(TRUNK, "full", EngineLoad(EIGHT.call_legs), now=1.0) is Screening.FULL
    wheel = Admission(frozenset({TRUNK}), Capacity(WHEEL.call_legs))
    assert wheel.screen(TRUNK, "third", EngineLoad(bridged_twice), now=0.0) is Screening.FULL
    # Once its own leg exists, the third caller still has legs to ring with.
    rules = load_rules(ring_five, call_legs=EIGHT.call_legs)
    plan = plan_call(rules, "+3225550100", "+32470111111", datetime.now(UTC), {})
    third = EngineLoad(bridged_twice + 1)
    assert isinstance(verdict(plan, third, 0.0, Capacity(EIGHT.call_legs)), CallAdmitted)
    refused = verdict(plan, EngineLoad(WHEEL.call_legs), 0.0, Capacity(WHEEL.call_legs))
    assert isinstance(refused, CallRefused)
    assert refused.sip_code == 503


@pytest.mark.parametrize(
    ("limits", "in_use", "can"),
    [(EIGHT, 4, True), (EIGHT, 5, False), (WHEEL, 0, True), (WHEEL, 1, False)],
)
def test_a_call_probe_runs_while_it_leaves_room_for_a_call(
    limits: EngineLimits, in_use: int, can: bool
) -> None:
    engine = types.SimpleNamespace(load=lambda _now: EngineLoad(in_use))
    capacity = Capacity(limits.call_legs)
    prober = Prober(engine, asyncio.new_event_loop(), capacity)  # type: ignore[arg-type]
    try:
        assert prober.can_call() is can
    finally:
        prober.loop.close()


def test_the_limits_are_a_retained_topic_and_a_status_line() -> None:
    state = StatusState()
    event = types.SimpleNamespace(kind="engine.limits", at=datetime.now(UTC),
                                  data=EIGHT.as_dict())  # fmt: skip
    assert state.apply(event) == {"engine"}  # type: ignore[arg-type]
    payload = json.loads(state.retained()["engine"])
    assert payload["call_slots"] == 8
    assert payload["call_legs"] == 7
    assert errors(payload, schema("engine")) == []
    document = {"gateway_id": "gw", "pid": 1, "started_at": "t", "availability": "online",
                "mqtt": "off", "trunk_registration": None, "rules": None, "mode": None,
                "calls_active": 0, "last_failover": None, "targets": {},
                "engine": payload}  # fmt: skip
    line = next(x for x in format_status(document).splitlines() if x.startswith("SIP engine"))
    assert line == ("SIP engine     8 call slots (7 for calls), epoll I/O queue,"
                    " TLS OpenSSL 3.0.19 27 Jan 2026")  # fmt: skip


READ_BACK = """
import json, pjsua2
from gateway.sip.engine_limits import planned_limits, running_limits
planned = planned_limits()
ep = pjsua2.Endpoint()
ep.libCreate()
cfg = pjsua2.EpConfig()
cfg.uaConfig.threadCnt = 0
cfg.uaConfig.mainThreadOnly = True
cfg.uaConfig.maxCalls = 10000
cfg.logConfig.level = 0
cfg.logConfig.consoleLevel = 0
ep.libInit(cfg)
kept = running_limits(ep)
ep.libDestroy()
print(json.dumps({"planned": planned.call_slots, **kept.as_dict()}))
"""


def test_what_pjsua_keeps_is_what_the_gateway_plans_with() -> None:
    pytest.importorskip("pjsua2")
    # One endpoint per process: the engine is read in a process of its own.
    out = subprocess.run([sys.executable, "-c", READ_BACK], capture_output=True, text=True,
                         check=True, timeout=60).stdout  # fmt: skip
    kept = json.loads(out.splitlines()[-1])
    assert kept["call_slots"] == kept["planned"]  # asked for 10000, kept PJSUA_MAX_CALLS
    assert kept["io_queue"] in {"select", "epoll"}
    assert kept["tls_ciphers"] > 0
