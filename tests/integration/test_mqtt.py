"""The MQTT status feed against a real Mosquitto and a real aiomqtt subscriber."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt
import pytest
from mosquitto import Mosquitto

from gateway.config import MqttSettings
from gateway.status.bus import EventBus, StatusEvent
from gateway.status.mqtt import MqttPublisher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PREFIX = "sip-failover/gw1"
WAIT = 10.0
REPO = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def subscriber(
    broker: Mosquitto, *topics: str, client_id: str | None = None, clean: bool = True
) -> AsyncIterator[aiomqtt.Client]:
    client = aiomqtt.Client(
        "127.0.0.1", broker.port, identifier=client_id, clean_session=clean, timeout=5
    )
    async with client:
        for topic in topics:
            await client.subscribe(topic, qos=1)
        yield client


async def collect(
    client: aiomqtt.Client, done: Callable[[list[aiomqtt.Message]], bool]
) -> list[aiomqtt.Message]:
    """Messages until ``done`` says enough (or fail after WAIT seconds)."""
    seen: list[aiomqtt.Message] = []
    async with asyncio.timeout(WAIT):
        async for message in client.messages:
            seen.append(message)
            if done(seen):
                return seen
    return seen


def payloads(messages: list[aiomqtt.Message]) -> dict[str, bytes]:
    return {str(m.topic): m.payload for m in messages if isinstance(m.payload, bytes)}


def has(topic: str, payload: bytes | None = None) -> Callable[[list[aiomqtt.Message]], bool]:
    def check(seen: list[aiomqtt.Message]) -> bool:
        return any(
            str(m.topic) == topic and (payload is None or m.payload == payload) for m in seen
        )

    return check


def event_kinds(messages: list[aiomqtt.Message]) -> list[str]:
    return [
        json.loads(m.payload)["kind"]
        for m in messages
        if str(m.topic) == f"{PREFIX}/events" and isinstance(m.payload, bytes)
    ]


@asynccontextmanager
async def running(publisher: MqttPublisher) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(publisher.run(), name="mqtt.publisher")
    try:
        yield task
    finally:
        task.cancel()
        with_cancel = asyncio.gather(task, return_exceptions=True)
        await asyncio.wait_for(with_cancel, WAIT)


def make_publisher(
    broker: Mosquitto, bus: EventBus, queue_size: int = 1000, on_command=None
) -> MqttPublisher:
    settings = MqttSettings(url=broker.url, client_id="gw1-test", queue_size=queue_size)
    return MqttPublisher(settings, "gw1", bus, on_command, reconnect_cap=0.3, timeout=5)


def seed_state(bus: EventBus) -> None:
    bus.publish(
        "trunk.registration",
        {
            "state": "registered",
            "code": 200,
            "reason": "OK",
            "since": "2026-01-05T08:00:00+00:00",
            "expires": 300,
        },
    )
    bus.publish(
        "target.health",
        {
            "target": "office-mobile",
            "state": "unassigned",
            "since": "2026-01-05T08:01:00+00:00",
            "evidence": "404",
        },
    )
    bus.publish(
        "rules.loaded",
        {
            "file": "rules.yaml",
            "sha256": "ab" * 32,
            "loaded_at": "2026-01-05T08:00:00+00:00",
            "error": None,
        },
    )
    bus.publish("calls.active", {"count": 1})


async def test_start_publishes_online_and_retained_state(broker: Mosquitto) -> None:
    bus = EventBus()
    publisher = make_publisher(broker, bus)
    seed_state(bus)
    async with running(publisher):
        await asyncio.wait_for(publisher.connected.wait(), WAIT)
        async with subscriber(broker, f"{PREFIX}/#") as client:
            seen = await collect(client, lambda s: len(payloads(s)) >= 5)
    got = payloads(seen)
    assert all(m.retain for m in seen)
    assert got[f"{PREFIX}/availability"] == b"online"
    assert json.loads(got[f"{PREFIX}/trunk/registration"])["state"] == "registered"
    health = json.loads(got[f"{PREFIX}/target/office-mobile/health"])
    assert health == {
        "state": "unassigned",
        "since": "2026-01-05T08:01:00+00:00",
        "evidence": "404",
    }
    assert json.loads(got[f"{PREFIX}/rules"])["error"] is None
    assert got[f"{PREFIX}/calls/active"] == b"1"


async def test_events_arrive_in_order_and_commands_reach_the_handler(broker: Mosquitto) -> None:
    bus = EventBus()
    commands: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def on_command(command: str, payload: bytes) -> None:
        await commands.put((command, payload))

    publisher = make_publisher(broker, bus, on_command=on_command)
    async with running(publisher), subscriber(broker, f"{PREFIX}/events") as client:
        await asyncio.wait_for(publisher.connected.wait(), WAIT)
        for n in range(20):
            bus.publish(
                "call.incoming",
                {"call_id": f"c{n}", "caller": "+32", "called": "+32", "route": "main"},
            )
        seen = await collect(client, lambda s: len(s) >= 20)
        await client.publish(f"{PREFIX}/cmd/probe/anna", b"probe", qos=1)
        await client.publish(f"{PREFIX}/cmd/reload", b"reload", qos=1)
        async with asyncio.timeout(WAIT):
            got = [await commands.get(), await commands.get()]
    ids = [StatusEvent.from_json(m.payload).data["call_id"] for m in seen]  # type: ignore[arg-type]
    assert ids == [f"c{n}" for n in range(20)]
    assert got == [("probe/anna", b"probe"), ("reload", b"reload")]


async def test_graceful_stop_publishes_offline(broker: Mosquitto) -> None:
    publisher = make_publisher(broker, EventBus())
    async with running(publisher):
        await asyncio.wait_for(publisher.connected.wait(), WAIT)
    async with subscriber(broker, f"{PREFIX}/availability") as client:
        seen = await collect(client, has(f"{PREFIX}/availability"))
    assert seen[-1].payload == b"offline"
    assert seen[-1].retain


CHILD = textwrap.dedent("""
    import asyncio, sys
    from gateway.config import MqttSettings
    from gateway.status.bus import EventBus
    from gateway.status.mqtt import MqttPublisher

    async def main():
        settings = MqttSettings(url=sys.argv[1], client_id="gw1-child")
        await MqttPublisher(settings, "gw1", EventBus()).run()

    asyncio.run(main())
""")


async def test_killed_publisher_leaves_the_last_will(broker: Mosquitto) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, broker.url, env=env)
    try:
        async with subscriber(broker, f"{PREFIX}/availability") as client:
            await collect(client, has(f"{PREFIX}/availability", b"online"))
            child.send_signal(signal.SIGKILL)
            seen = await collect(client, has(f"{PREFIX}/availability", b"offline"))
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
    assert seen[-1].payload == b"offline"


async def test_broker_restart_republishes_state_and_delivers_buffered_events(
    tmp_path: Path,
) -> None:
    broker = Mosquitto(tmp_path, persistent=True)
    broker.start()
    # A persistent session: the broker keeps what comes while the watcher is away.
    async with subscriber(broker, f"{PREFIX}/events", client_id="watch", clean=False):
        pass
    bus = EventBus()
    publisher = make_publisher(broker, bus, queue_size=10)
    seed_state(bus)
    try:
        async with running(publisher):
            async with subscriber(broker, client_id="watch", clean=False) as client:
                await collect(client, lambda s: len(event_kinds(s)) >= 4)
            broker.stop()
            async with asyncio.timeout(WAIT):
                while publisher.connected.is_set():  # noqa: ASYNC110 - no "lost" event to await
                    await asyncio.sleep(0.02)
            bus.publish("calls.active", {"count": 3})
            for n in range(15):
                bus.publish(
                    "call.incoming",
                    {"call_id": f"c{n}", "caller": "+32", "called": "+32", "route": "main"},
                )
            broker.start()
            async with subscriber(broker, client_id="watch", clean=False) as client:
                seen = await collect(client, lambda s: event_kinds(s).count("call.incoming") >= 10)
            async with subscriber(broker, f"{PREFIX}/calls/active") as client:
                active = await collect(client, has(f"{PREFIX}/calls/active"))
    finally:
        broker.stop()
    events = [StatusEvent.from_json(m.payload) for m in seen]  # type: ignore[arg-type]
    # The buffer holds 10: the 6 oldest (calls.active, c0..c4) were dropped and said so.
    assert [e.data["count"] for e in events if e.kind == "status.dropped"] == [6]
    calls = [e.data["call_id"] for e in events if e.kind == "call.incoming"]
    assert calls == [f"c{n}" for n in range(5, 15)]
    assert active[-1].payload == b"3"


async def test_broker_that_forgot_retained_state_gets_all_of_it_back(broker: Mosquitto) -> None:
    bus = EventBus()
    publisher = make_publisher(broker, bus)
    seed_state(bus)
    async with running(publisher):
        async with subscriber(broker, f"{PREFIX}/#") as client:
            await collect(client, lambda s: len(payloads(s)) >= 5)
        broker.stop()  # not persistent: every retained message is gone
        async with asyncio.timeout(WAIT):
            while publisher.connected.is_set():  # noqa: ASYNC110 - no "lost" event to await
                await asyncio.sleep(0.02)
        broker.start()
        await asyncio.wait_for(publisher.connected.wait(), WAIT)
        async with subscriber(broker, f"{PREFIX}/#") as client:
            seen = await collect(client, lambda s: len(payloads(s)) >= 5)
    assert set(payloads(seen)) == {
        f"{PREFIX}/{topic}"
        for topic in ("availability", "trunk/registration", "target/office-mobile/health",
                      "rules", "calls/active")
    }  # fmt: skip
    assert all(m.retain for m in seen)


async def test_home_assistant_online_republishes_discovery(broker: Mosquitto) -> None:
    bus = EventBus()
    publisher = make_publisher(broker, bus)
    publisher.set_targets(["office-mobile", "anna"])
    configs = "homeassistant/+/+/+/config"
    async with subscriber(broker, configs) as client, running(publisher):
        # 6 gateway entities, 2 per target
        first = await collect(client, lambda s: len(s) >= 10)
        await client.publish("homeassistant/status", b"online", qos=1)
        again = await collect(client, lambda s: len(s) >= 10)
        async with subscriber(broker, configs) as late:
            retained = await collect(late, lambda s: len(s) >= 10)
    assert payloads(again) == payloads(first) == payloads(retained)
    assert all(m.retain for m in retained)
    found = [json.loads(p) for p in payloads(again).values()]
    commands = {c.get("command_topic") for c in found}
    assert f"{PREFIX}/cmd/probe/anna" in commands
    assert f"{PREFIX}/cmd/probe/office-mobile" in commands
    assert f"{PREFIX}/cmd/reload" in commands
    assert f"{PREFIX}/cmd/mode" in commands
    assert {c["availability_topic"] for c in found} == {f"{PREFIX}/availability"}
