"""The health monitor as an admin meets it: its log lines and its alert mails."""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from loguru import logger

from gateway.core.causes import Outcome
from gateway.core.health import Evidence, HealthChange, ProbeResult, Source
from gateway.core.probing import ProbeScheduler
from gateway.core.rules import parse_rules
from gateway.health.monitor import HealthMonitor

if TYPE_CHECKING:
    from collections.abc import Iterator

RULES = parse_rules(textwrap.dedent("""\
    version: 1
    timezone: Europe/Brussels
    targets:
      office-mobile: {number: "+32470000001"}
      anna: {number: "+32480000002"}
    alerts: {email: admin@example.com}
    routes:
      - {name: main, match: {to: "+3225550100"}, steps: [{ring: office-mobile}, {ring: anna}]}
    health:
      office-mobile: {probe: call, down_after: 1, up_after: 1}
    """), "rules.yaml")  # fmt: skip
AT_0942_UTC = datetime(2026, 3, 14, 9, 42, 5, tzinfo=UTC)  # 10:42 in Brussels


@pytest.fixture
def logged() -> Iterator[list[Any]]:
    records: list[Any] = []
    sink = logger.add(lambda message: records.append(message.record), level="DEBUG")
    yield records
    logger.remove(sink)


def monitor(mails: list[str]) -> HealthMonitor:
    async def mail(change: HealthChange, text: str) -> None:
        del change
        mails.append(text)

    watching = HealthMonitor(None, {}, lambda kind, data: None, mail=mail)  # type: ignore[arg-type]
    watching.reload(RULES, 0.0)
    return watching


def probe(outcome: Outcome | ProbeResult, sip_code: int) -> Evidence:
    return Evidence.of(Source.CALL_PROBE, outcome, AT_0942_UTC, sip_code=sip_code)


async def test_a_target_going_down_is_a_warning_and_coming_back_is_news_not_a_warning(
    logged: list[Any],
) -> None:
    watching = monitor([])
    watching.observe("office-mobile", probe(Outcome.UNASSIGNED, 404))
    watching.observe("office-mobile", probe(ProbeResult.PROGRESS, 180))
    levels = [(r["level"].name, r["message"]) for r in logged if "is now" in r["message"]]
    assert [level for level, _ in levels] == ["WARNING", "INFO"], levels
    assert "office-mobile is now up" in levels[1][1]


async def test_the_alert_mail_tells_the_time_in_the_rules_time_zone(logged: list[Any]) -> None:
    mails: list[str] = []
    watching = monitor(mails)
    change = watching.observe("office-mobile", probe(Outcome.UNASSIGNED, 404))
    assert change is not None
    await watching._alert(change)
    assert mails == [  # 09:42 UTC
        "office-mobile (+32470000001) answers UNASSIGNED since 10:42 — calls go to anna"
    ]
    recovered = watching.observe("office-mobile", probe(ProbeResult.PROGRESS, 180))
    assert recovered is not None
    await watching._alert(recovered)
    assert mails[1].startswith("office-mobile (+32470000001) is UP again since 10:42")
    alerts = [r["level"].name for r in logged if r["message"].startswith("alert:")]
    assert alerts == ["WARNING", "INFO"]


class SlowProber:
    """A probe that ends only when the test lets it (a worker that was not up yet)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0

    async def probe(self, kind: str, dial: Any, early_media_timeout: float) -> Evidence:
        del kind, dial, early_media_timeout
        self.started += 1
        await self.release.wait()
        return probe(Outcome.UNASSIGNED, 404)


async def test_the_next_probe_is_one_interval_after_the_last_one_ended() -> None:
    prober = SlowProber()
    watching = HealthMonitor(prober, {}, lambda kind, data: None)
    watching.reload(RULES, asyncio.get_running_loop().time())
    every = 900.0  # a call probe's default interval
    running = asyncio.create_task(watching.probe_once("office-mobile"))
    await asyncio.sleep(0)
    assert prober.started == 1
    loop = asyncio.get_running_loop()
    waited_until = loop.time()
    prober.release.set()
    await running
    next_probe = watching.scheduler.next_deadline()
    assert next_probe is not None
    assert next_probe >= waited_until + 0.9 * every


class _SlowProber:
    """A call probe that rings until the test lets it end (as a real one rings)."""

    def __init__(self) -> None:
        self.ringing = asyncio.Event()
        self.end = asyncio.Event()

    async def probe(self, kind: str, dial: object, early_media_timeout: float) -> Evidence:
        del kind, dial, early_media_timeout
        self.ringing.set()
        await self.end.wait()
        return probe(ProbeResult.PROGRESS, 180)


async def test_an_alert_due_during_a_probe_leaves_on_time() -> None:
    # A short outage that ends while a probe rings must still be told: the
    # alert is due one coalescing window after the change, whatever probes do.
    mailed = asyncio.Event()
    mails: list[str] = []

    async def mail(change: HealthChange, text: str) -> None:
        del change
        mails.append(text)
        mailed.set()

    prober = _SlowProber()
    watching = HealthMonitor(prober, {}, lambda kind, data: None, mail=mail)  # type: ignore[arg-type]
    watching.scheduler = ProbeScheduler(rand=lambda: 0.0)  # the first probe is due at once
    watching.reload(RULES, asyncio.get_running_loop().time())
    watching.coalescer.window = watching.coalescer.max_delay = 0.05
    task = asyncio.create_task(watching.run())
    try:
        await asyncio.wait_for(prober.ringing.wait(), 5)
        watching.observe("office-mobile", probe(Outcome.UNASSIGNED, 404))
        await asyncio.wait_for(mailed.wait(), 5)  # TimeoutError: it waited for the probe
        assert "UNASSIGNED" in mails[0]
        assert not prober.end.is_set()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_alert_names_only_the_targets_rung_after_the_lost_one() -> None:
    # Another route's target is no backup of the office mobile: never "calls go to" it.
    text = textwrap.dedent("""\
        version: 1
        targets:
          office-mobile: {number: "+32470000001"}
          anna: {number: "+32480000002"}
          workshop-mobile: {number: "+32470000003"}
          desk: {number: "+32470000004"}
        routes:
          - {name: main, match: {to: "+3225550100"}, steps: [{ring: office-mobile}, {ring: anna}]}
          - {name: workshop, match: {to: "+3225550101"}, steps: [{ring: workshop-mobile}]}
          - {name: night, match: {to: "+3225550102"}, steps: [{ring_all: [desk, office-mobile]}]}
        health:
          office-mobile: {probe: call, down_after: 1}
        """)  # fmt: skip
    mails: list[str] = []
    watching = monitor(mails)
    watching.reload(parse_rules(text, "rules.yaml"), 0.0)
    change = watching.observe("office-mobile", probe(Outcome.UNASSIGNED, 404))
    assert change is not None
    await watching._alert(change)
    assert mails[0].endswith("calls go to anna, desk"), mails
