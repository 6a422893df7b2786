"""In-process event bus: the call path publishes, status consumers subscribe.

The call path must never wait on a consumer, and a consumer must never break
the call path. So ``publish`` is synchronous, never blocks and never raises;
each subscriber has its own bounded buffer. When a buffer is full its *oldest*
event is dropped (a status feed wants the newest news) and the drop is counted
on that subscription, where its consumer can report it.

All of it runs on the one asyncio loop: ``publish`` is called from the loop's
thread (adapters turn foreign-thread callbacks into loop events first).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Self, TypeAlias

from loguru import logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.json_types import JsonValue

StatusSink: TypeAlias = "Callable[[str, Mapping[str, object]], None]"
"""``notify(kind, data)``: how the parts of the gateway hand an event to the bus."""


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """Something that happened, stamped with when it happened.

    Attributes:
        kind: Event name from the contract, e.g. ``call.failover``.
        at: When it happened, timezone-aware UTC.
        data: The event's fields (JSON values only).
    """

    kind: str
    at: datetime
    data: Mapping[str, JsonValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, JsonValue]:
        """The event as the JSON object published on the ``events`` topic."""
        return {"kind": self.kind, "at": self.at.isoformat(), "data": dict(self.data)}

    def to_json(self) -> str:
        """The event as one compact JSON document."""
        return json.dumps(self.to_dict(), separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> StatusEvent:
        """Parse what `to_json` wrote.

        Raises:
            ValueError: Not an event document.
        """
        raw = json.loads(text)
        if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
            raise ValueError("not a status event")  # noqa: TRY004 - bad input, not a bad call
        at = datetime.fromisoformat(str(raw["at"])).astimezone(UTC)
        return cls(kind=str(raw["kind"]), at=at, data=raw["data"])


class Subscription:
    """One consumer's bounded buffer of events; iterate it with ``async for``."""

    def __init__(self, bus: EventBus, name: str, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.name = name
        self.maxsize = maxsize
        self.dropped = 0
        self._unreported = 0
        self._bus = bus
        self._events: deque[StatusEvent] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._events)

    def put(self, event: StatusEvent) -> None:
        """Buffer an event, dropping the oldest one if the buffer is full."""
        if self._closed:
            return
        if len(self._events) >= self.maxsize:
            self._events.popleft()
            self.dropped += 1
            self._unreported += 1
        self._events.append(event)
        self._ready.set()

    def get_nowait(self) -> StatusEvent | None:
        """The oldest buffered event, or None if there is none."""
        if not self._events:
            self._ready.clear()
            return None
        return self._events.popleft()

    async def get(self) -> StatusEvent:
        """Wait for the next event.

        Raises:
            StopAsyncIteration: The subscription is closed and drained.
        """
        while not self._events:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._events.popleft()

    def take_dropped(self) -> int:
        """Drops since the last call: what a consumer has not reported yet."""
        count, self._unreported = self._unreported, 0
        return count

    def close(self) -> None:
        """Stop receiving; iteration ends once the buffer is drained."""
        self._closed = True
        self._bus.unsubscribe(self)
        self._ready.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> StatusEvent:
        return await self.get()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of status events to bounded, independent subscriptions."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def subscribe(self, name: str, maxsize: int) -> Subscription:
        """Start receiving every event published from now on.

        Args:
            name: Who consumes it, for log lines (``mqtt.events``, ``calllog``).
            maxsize: Events buffered before the oldest is dropped.

        Returns:
            The subscription; ``close()`` it (or use it as a context manager).
        """
        subscription = Subscription(self, name, maxsize)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscription (idempotent)."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, kind: str, data: Mapping[str, object], at: datetime | None = None) -> None:
        """Hand an event to every subscriber. Never blocks, never raises.

        Args:
            kind: Event name, e.g. ``call.leg``.
            data: JSON-serialisable fields of the event (the core's ``Notify``
                data as it is; a value JSON cannot hold is published as text).
            at: When it happened (aware); now if omitted.
        """
        try:
            fields = {name: _json_value(value) for name, value in data.items()}
            event = StatusEvent(kind, _utc(at), fields)
            for subscription in tuple(self._subscriptions):
                subscription.put(event)
        except Exception:  # noqa: BLE001 - see below
            # The call path must survive a status bug: log it, carry on.
            logger.exception("status event {} dropped", kind)


def _json_value(value: object) -> JsonValue:
    """``value`` as JSON holds it: a tuple as a list, a key as text, the rest as its text.

    Every subscriber then sees what the ``events`` topic shows (``to_json``).
    """
    if value is None or isinstance(value, str | int | float):  # bool is an int
        return value
    if isinstance(value, Mapping):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    return str(value)


def _utc(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if at.tzinfo is None:
        raise ValueError("event time must be timezone-aware")
    return at.astimezone(UTC)
