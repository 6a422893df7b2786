"""Detection time: the operator starts answering "unassigned" -> the health topic says so.

A gateway of its own (its probes must not share the engine with the
failover bursts) call-probes one target and publishes its health to a real
Mosquitto (``tests/integration/mosquitto.py``); a subscriber stamps each
``target/main/health`` message as it arrives. For each sample:

1. the target answers as a live phone does (SIPp ``phone_ring_forever``:
   180, then the probe's CANCEL) until the health topic says ``up``;
2. a moment later (the probe's CANCEL has been answered) that SIPp stops
   and one answering 404 + ``Reason: Q.850;cause=1`` (``phone_reject_reason``)
   takes the same port: the moment it listens is the start;
3. the end is the next health message reaching the subscriber; the
   ``overhead`` is the part of it after the operator's 404 left (SIPp's
   message log stamps it): the probe's answer, the hysteresis and MQTT.

A probe sent in the moment between the two peers finds nobody (``down``,
not ``unassigned``): such a sample is counted in ``lost`` and left out.

The default call probe (every 15 min, ``down_after: 2``) cannot be sampled
in a run of minutes: its figure is computed from the schedule (first probe
after the start within one interval, then ``down_after - 1`` more, each
interval drawn within +-10 %) plus the measured overhead (p50).
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from gateway_process import GatewayProcess
from measures import stats
from mosquitto import Mosquitto
from sipp import Sipp, free_udp_port

from gateway.core.probing import ProbeSchedule
from gateway.core.rules_values import CALL_PROBE_EVERY_S, HealthWatch

GATEWAY_ID = "bench"
TOPIC = f"sip-failover/{GATEWAY_ID}/target/main/health"
SETTLE_S = 0.3  # after ``up``: the probe's CANCEL, 200 and 487 are over
FASTEST = {"every": 1.0, "down_after": 1}  # the least hysteresis the rules take, probes 1 s apart


def rules(port: int, every: float, down_after: int) -> str:
    return f"""version: 1
targets:
  main: {{uri: "sip:main@127.0.0.1:{port}"}}
routes:
  - name: main-line
    match: {{to: "+3225550300"}}
    steps: [{{ring: main, timeout: 5s}}]
health:
  main: {{probe: call, every: {every}s, down_after: {down_after}}}
"""


class HealthFeed:
    """A subscriber to the target's health topic: (arrival, state) of each message."""

    def __init__(self, port: int) -> None:
        self._seen: list[tuple[float, str]] = []
        self.wall: dict[float, float] = {}  # arrival (monotonic) -> time.time() then
        self._changed = threading.Condition()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-detection")
        self._client.on_message = self._on_message
        self._client.on_connect = lambda client, *_: client.subscribe(TOPIC, qos=1)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        stamp, self.wall[stamp] = time.monotonic(), time.time()
        state = json.loads(message.payload)["state"]
        with self._changed:
            self._seen.append((stamp, state))
            self._changed.notify_all()

    def next_after(self, since: float, timeout: float) -> tuple[float, str] | None:
        """The first message that arrived after ``since`` (monotonic), waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                later = [seen for seen in self._seen if seen[0] > since]
                if later:
                    return later[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def _peer(scenario: str, work: Path, port: int, keys: dict[str, int] | None = None) -> Sipp:
    return Sipp(scenario, work, port=port, calls=None, keys=keys or {}, timeout_s=3600).start()


def measure(work: Path, samples: int, every: float, down_after: int) -> dict[str, Any]:
    """Detection times (ms) of ``samples`` outages, at ``every`` seconds and ``down_after``."""
    work.mkdir(parents=True, exist_ok=True)
    port, broker = free_udp_port(), Mosquitto(work)
    broker.start()
    env = {"SIP_FAILOVER_MQTT__URL": broker.url, "SIP_FAILOVER_GATEWAY_ID": GATEWAY_ID}
    gateway = GatewayProcess(work / "gateway", rules(port, every, down_after), env=env)
    feed = HealthFeed(broker.port)
    wait_s = every * 1.1 * (down_after + 1) + 10
    detected: list[float] = []
    overhead: list[float] = []
    lost = 0
    try:
        gateway.start()
        for _ in range(samples):
            since = time.monotonic()
            phone = _peer("phone_ring_forever", work, port)
            try:
                _wait_for(feed, "up", since, wait_s)
                time.sleep(SETTLE_S)
            finally:
                phone.stop()
            operator = _peer("phone_reject_reason", work, port, {"code": 404, "cause": 1})
            start = time.monotonic()
            try:
                seen = feed.next_after(start, wait_s)
            finally:
                operator.stop()
            if seen is None:
                raise RuntimeError(f"no health change in {wait_s} s\n{gateway.describe()}")
            if seen[1] != "unassigned":
                lost += 1
                continue
            detected.append(seen[0] - start)
            answered = _first_sent(operator, "SIP/2.0 404")
            if answered is not None:
                overhead.append(feed.wall[seen[0]] - answered)
    finally:
        feed.close()
        gateway.stop()
        broker.stop()
    return {**stats(detected), "lost": lost, "every_s": every, "down_after": down_after,
            "overhead": stats(overhead)}  # fmt: skip


_TRACE_ENTRY = re.compile(r"^-+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n"
                          r"UDP message sent[^\n]*\n\n(.*)$", re.MULTILINE)  # fmt: skip


def _first_sent(peer: Sipp, start_line: str) -> float | None:
    """When SIPp first sent a message starting ``start_line`` (its trace: local time)."""
    trace = Path(f"{peer.workdir}/{peer.scenario}-{peer.port}.messages.log").read_text()
    for when, first in _TRACE_ENTRY.findall(trace):
        if first.startswith(start_line):
            return datetime.strptime(when, "%Y-%m-%d %H:%M:%S.%f").astimezone().timestamp()
    return None


def _wait_for(feed: HealthFeed, state: str, since: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (seen := feed.next_after(since, max(0.0, deadline - time.monotonic()))) is not None:
        if seen[1] == state:
            return
        since = seen[0]
    raise RuntimeError(f"the health topic never said {state} within {timeout} s")


def computed_default(fastest: dict[str, Any]) -> dict[str, Any]:
    """The default call probe's detection, from its schedule and the measured overhead.

    After the start, the next probe comes within one interval (0.9 to 1.1
    ``every``), ``down_after - 1`` more follow, and the last answer takes
    the measured overhead to reach MQTT.
    """
    watch = HealthWatch(probe="call")
    every = watch.interval or CALL_PROBE_EVERY_S
    jitter = ProbeSchedule(every=every).jitter
    overhead_s = fastest["overhead"].get("p50", 0.0) / 1000
    shortest = (watch.down_after - 1) * every * (1 - jitter) + overhead_s
    longest = watch.down_after * every * (1 + jitter) + overhead_s
    typical = (watch.down_after - 0.5) * every + overhead_s
    return {"computed": True, "every_s": every, "down_after": watch.down_after,
            "min_s": round(shortest, 1), "typical_s": round(typical, 1),
            "max_s": round(longest, 1), "overhead_ms": round(overhead_s * 1000, 1)}  # fmt: skip
