"""Keeps the trunk registered: reports every change, retries with backoff.

pjsua refreshes a live registration by itself before it expires; when a
REGISTER fails (a 503, a timeout, wrong credentials), pjsua's own fixed
retry is off and this module retries with capped, jittered backoff, so a
registrar in trouble is not hammered and a fleet does not retry in step.

At shutdown the un-REGISTER always goes out, whatever state the registration
is in: pjsua refuses it while a REGISTER (first, refresh or retry) is still
unanswered (``PJSIP_EBUSY``), so it is then sent as soon as that one's answer,
good or bad, comes in. `unregistering` tells the shutdown what to wait for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from loguru import logger

from gateway.core.backoff import backoff_delay

if TYPE_CHECKING:
    import asyncio

    from gateway.config import TrunkSettings
    from gateway.sip.engine import SipEngine
    from gateway.sip.signals import RegistrationSignal
    from gateway.status.bus import StatusSink


class Registration:
    """The trunk registration's state and retry timer."""

    def __init__(
        self,
        engine: SipEngine,
        loop: asyncio.AbstractEventLoop,
        notify: StatusSink,
        trunk: TrunkSettings,
    ) -> None:
        self.engine = engine
        self.loop = loop
        self.notify = notify
        self.enabled = trunk.register_enabled
        self.retry_first = trunk.retry_first
        self.retry_max = trunk.retry_max
        self.state = "unregistered" if self.enabled else "disabled"
        self.attempt = 0
        self.stopping = False
        self._unregister_pending = False  # the unREGISTER waits for a REGISTER in flight
        self._unregister_sent = False  # and then for its own answer
        self._retry: asyncio.TimerHandle | None = None
        self.since = datetime.now(UTC)

    def start(self) -> None:
        if not self.enabled:
            self._publish("disabled", 0, "registration turned off", 0)

    @property
    def unregistering(self) -> bool:
        """True from `stop` until the un-REGISTER has been sent and answered."""
        return self._unregister_pending or self._unregister_sent

    def on_signal(self, sig: RegistrationSignal) -> None:
        """pjsua reported the outcome of a REGISTER (after any 401 challenge)."""
        if self._unregister_pending:
            # The REGISTER in flight at shutdown is answered, accepted or not:
            # pjsua takes the un-REGISTER now.
            self._unregister()
        elif self._unregister_sent:
            # pjsua allows one REGISTER at a time: this answers the un-REGISTER.
            self._unregister_sent = False
        if sig.active and 200 <= sig.code < 300:
            self.attempt = 0
            self._publish("registered", sig.code, sig.reason, sig.expires)
            return
        if self.stopping:
            self._publish("unregistered", sig.code, sig.reason, 0)
            return
        delay = backoff_delay(self.attempt, self.retry_first, self.retry_max)
        self.attempt += 1
        logger.warning(
            "trunk registration failed: {} {}; retry {} in {:.1f} s",
            sig.code,
            sig.reason,
            self.attempt,
            delay,
        )
        self._publish("failed", sig.code, sig.reason, 0)
        if self._retry is not None:
            self._retry.cancel()
        self._retry = self.loop.call_later(delay, self._again)

    def _again(self) -> None:
        self._retry = None
        if not self.stopping:
            self.engine.set_registration(True)

    def stop(self) -> None:
        """Shutdown: no more retries; send the unREGISTER (now or after the one in flight)."""
        self.stopping = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self.enabled:
            self._unregister()

    def _unregister(self) -> None:
        sent = self.engine.set_registration(False)
        self._unregister_pending = sent == "busy"
        self._unregister_sent = sent == "sent"

    def _publish(self, state: str, code: int, reason: str, expires: int) -> None:
        changed = state != self.state
        self.state = state
        if changed:
            self.since = datetime.now(UTC)
        if changed or state == "failed":
            logger.info("trunk registration: {} ({} {})", state, code, reason)
        self.notify(
            "trunk.registration",
            {
                "state": state,
                "code": code,
                "reason": reason,
                "since": self.since.isoformat(timespec="seconds"),
                "expires": expires,
            },
        )
