"""MQTT publisher: the status feed on a broker, with Home Assistant discovery.

Two bus subscriptions feed it. ``mqtt.state`` is folded into `StatusState` at
all times, connected or not, so retained values stay current through a broker
outage and are republished in full on every (re)connect. ``mqtt.events`` is
drained onto the ``events`` topic only while connected: during an outage it
buffers up to ``queue_size`` events, the oldest dropped first; the drop count
is published as a ``status.dropped`` event (and logged) once connected again.

``availability`` is retained and is also the Last Will, so a crash or a lost
link shows ``offline``; a graceful stop publishes ``offline`` itself, because a
clean DISCONNECT discards the Will (MQTT 3.1.1 section 3.14.4).

The publisher stops when its task is cancelled, and a stop must never be lost.
aiomqtt awaits every PUBACK, SUBACK and CONNACK with ``asyncio.wait_for``,
which on Python 3.11 returns normally when its task is cancelled in the same
loop iteration as the awaited answer arrives (CPython gh-86296, fixed in 3.12);
leaving the client can also turn a ``CancelledError`` into an ``MqttError``.
So `run` notes the stop where it is sure to see it, and every loop below
checks that note after each aiomqtt await (`_stop_if_asked`). (The task's own
``cancelling()`` count cannot serve: on 3.11 a ``TaskGroup`` whose child fails
while it waits to exit leaves its parent's count raised.)
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import aiomqtt
from loguru import logger

from gateway.status.bus import StatusEvent
from gateway.status.discovery import DISCOVERY_PREFIX, Discovery
from gateway.status.state import StatusState, health_topic

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from gateway.config import MqttSettings
    from gateway.status.bus import EventBus

STATE_QUEUE_MIN = 1000


RECONNECT_CAP = 10.0


def backoff_delay(attempt: int, cap: float) -> float:
    """Jittered, capped delay before reconnect ``attempt`` (1-based), as aiomqtt does.

    The cap bounds the window the jitter is drawn from ("full jitter"), so
    long outages still spread retries instead of piling them all on the cap.
    """
    return random.uniform(0, min(cap, 1.5 ** min(10, attempt)))  # noqa: S311 - jitter, not crypto


class MqttPublisher:
    """Publishes the event bus to an MQTT broker until cancelled."""

    def __init__(  # noqa: PLR0913 - keyword-only knobs with defaults
        self,
        settings: MqttSettings,
        gateway_id: str,
        bus: EventBus,
        on_command: Callable[[str, bytes], Awaitable[None]] | None = None,
        *,
        discovery_prefix: str = DISCOVERY_PREFIX,
        reconnect_cap: float = RECONNECT_CAP,
        timeout: float = 10.0,
    ) -> None:
        """Prepare the publisher; it subscribes to the bus at once.

        Args:
            settings: Broker URL, prefix, client id, TLS CA, queue size.
            gateway_id: This gateway's name (default prefix and client id).
            bus: Where status events come from.
            on_command: Called with (``reload`` | ``probe/<target>`` | ``mode`` ...,
                payload) for each message on ``<prefix>/cmd/#``; should return quickly.
            discovery_prefix: Home Assistant's discovery prefix.
            reconnect_cap: Longest wait between reconnect attempts, seconds.
            timeout: Seconds to wait for the broker on connect and each publish.

        Raises:
            ValueError: No broker URL is configured.
        """
        if not settings.url:
            raise ValueError("no MQTT broker URL configured")
        self.settings = settings
        self.prefix = (settings.prefix or f"sip-failover/{gateway_id}").rstrip("/")
        self.client_id = settings.client_id or f"sip-failover-{gateway_id}"
        self.state = StatusState()
        self.connected = asyncio.Event()
        self._discovery = Discovery(self.prefix, gateway_id, discovery_prefix)
        self._on_command = on_command
        self._reconnect_cap = reconnect_cap
        self._timeout = timeout
        queue = settings.queue_size
        self._state_sub = bus.subscribe("mqtt.state", max(queue, STATE_QUEUE_MIN))
        self._events_sub = bus.subscribe("mqtt.events", queue)
        self._dirty: set[str] = set()
        self._cleared: list[str] = []
        self._discovery_due = True
        self._wake = asyncio.Event()
        self._inflight: StatusEvent | None = None
        self._stopping = False

    def set_targets(self, names: Iterable[str]) -> None:
        """Declare the rules' targets (call after each successful rules load).

        New targets get discovery entities; removed ones have their entities and
        retained health cleared.
        """
        for gone in self.state.set_targets(names):
            self._cleared += [f"{self.prefix}/{health_topic(gone)}"]
            self._cleared += self._discovery.removal(gone)
        self._discovery_due = True
        self._wake.set()

    async def run(self) -> None:
        """Fold state and keep a broker connection until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._fold(), name="mqtt.state")
                group.create_task(self._connection(), name="mqtt.connection")
                await self._until_stopped()
        finally:
            self._state_sub.close()
            self._events_sub.close()

    async def _until_stopped(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            # This task's own cancellation always arrives here, whatever
            # aiomqtt does with the one the TaskGroup passes on below.
            self._stopping = True

    def _stop_if_asked(self) -> None:
        """Raise ``CancelledError`` if the publisher is stopping (see the module doc)."""
        if self._stopping:
            raise asyncio.CancelledError

    async def _fold(self) -> None:
        async for event in self._state_sub:
            before = self.state.targets
            self._dirty |= self.state.apply(event)
            if self.state.targets != before:
                self._discovery_due = True
            if self._dirty or self._discovery_due:
                self._wake.set()
            if lost := self._state_sub.take_dropped():
                logger.warning("MQTT: {} events lost before folding; state may lag", lost)

    async def _connection(self) -> None:
        attempt = 0
        while True:
            if await self._session():
                attempt = 0
            self._stop_if_asked()
            attempt += 1
            delay = backoff_delay(attempt, self._reconnect_cap)
            logger.info("MQTT reconnect in {:.1f} s (attempt {})", delay, attempt)
            await asyncio.sleep(delay)

    async def _session(self) -> bool:
        """One connection, until it fails. Returns whether it got connected."""
        client = self._client()
        got_connected = False
        try:
            async with client:
                got_connected = True
                await self._serve(client)
        except* aiomqtt.MqttError as failure:
            logger.warning("MQTT broker lost or unreachable: {}", failure.exceptions[0])
        finally:
            self.connected.clear()
        return got_connected

    async def _serve(self, client: aiomqtt.Client) -> None:
        try:
            self._stop_if_asked()  # the CONNACK may have crossed a stop
            await self._start(client)
            self.connected.set()
            logger.info("MQTT connected as {}, publishing under {}", self.client_id, self.prefix)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._publish_state(client), name="mqtt.retained")
                group.create_task(self._publish_events(client), name="mqtt.events")
                group.create_task(self._receive(client), name="mqtt.commands")
        except asyncio.CancelledError:
            await self._say_offline(client)
            raise

    def _client(self) -> aiomqtt.Client:
        url = urlsplit(self.settings.url or "")
        tls = None
        if url.scheme == "mqtts":
            ca = str(self.settings.tls_ca) if self.settings.tls_ca else None
            tls = aiomqtt.TLSParameters(ca_certs=ca)
        return aiomqtt.Client(
            url.hostname or "localhost",
            url.port or (8883 if tls else 1883),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            identifier=self.client_id,
            will=aiomqtt.Will(self._topic("availability"), "offline", qos=1, retain=True),
            tls_params=tls,
            timeout=self._timeout,
        )

    def _topic(self, suffix: str) -> str:
        return f"{self.prefix}/{suffix}"

    async def _start(self, client: aiomqtt.Client) -> None:
        """Announce, subscribe, then republish everything retained."""
        await self._publish(client, self._topic("availability"), "online", retain=True)
        await client.subscribe(self._topic("cmd/#"), qos=1)
        self._stop_if_asked()
        await client.subscribe(f"{self._discovery.discovery_prefix}/status", qos=1)
        self._stop_if_asked()
        self._discovery_due = True
        self._dirty = set(self.state.retained())
        await self._flush_retained(client)

    async def _publish_state(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush_retained(client)

    async def _flush_retained(self, client: aiomqtt.Client) -> None:
        cleared, self._cleared = self._cleared, []
        for topic in cleared:
            await self._publish(client, topic, b"", retain=True)
        if self._discovery_due:
            self._discovery_due = False
            for topic, payload in self._discovery.messages(self.state.targets).items():
                await self._publish(client, topic, payload, retain=True)
        retained = self.state.retained()
        dirty, self._dirty = self._dirty, set()
        for suffix in sorted(dirty & retained.keys()):
            await self._publish(client, self._topic(suffix), retained[suffix], retain=True)

    async def _publish_events(self, client: aiomqtt.Client) -> None:
        # An event whose PUBACK never came is sent again after reconnect
        # (at least once, like QoS 1 itself).
        while True:
            if self._inflight is None:
                self._inflight = self._drop_report() or await self._events_sub.get()
            await self._publish(client, self._topic("events"), self._inflight.to_json())
            self._inflight = None

    async def _publish(
        self, client: aiomqtt.Client, topic: str, payload: str | bytes, *, retain: bool = False
    ) -> None:
        """Publish at QoS 1 and wait for the PUBACK, without losing a stop meanwhile."""
        await client.publish(topic, payload, qos=1, retain=retain)
        self._stop_if_asked()

    def _drop_report(self) -> StatusEvent | None:
        """A ``status.dropped`` event if events were lost since the last report."""
        dropped = self._events_sub.take_dropped()
        if not dropped:
            return None
        logger.warning("MQTT: {} status events dropped (buffer full)", dropped)
        data = {"count": dropped, "total": self._events_sub.dropped}
        return StatusEvent("status.dropped", datetime.now(UTC), data)

    async def _receive(self, client: aiomqtt.Client) -> None:
        status_topic = f"{self._discovery.discovery_prefix}/status"
        command_prefix = self._topic("cmd/")
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic == status_topic and payload.strip() == b"online":
                logger.info("Home Assistant is online: republishing discovery")
                self._discovery_due = True
                self._wake.set()
            elif topic.startswith(command_prefix) and not message.retain:
                # A retained command would replay on every reconnect: ignore it.
                await self._command(topic.removeprefix(command_prefix), payload)

    async def _command(self, command: str, payload: bytes) -> None:
        if self._on_command is None:
            logger.info("MQTT command {} ignored: no handler", command)
            return
        try:
            await self._on_command(command, payload)
        except Exception:  # noqa: BLE001 - a bad command must not cut the feed
            logger.exception("MQTT command {} failed", command)

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        try:
            await client.publish(
                self._topic("availability"), "offline", qos=1, retain=True, timeout=2.0
            )
        except aiomqtt.MqttError as error:
            logger.warning("MQTT: could not publish offline on stop: {}", error)
