"""Probes: ask the network about a target without a customer on the line.

- ``options``: an OPTIONS to the target's SIP server (pjsua's
  ``Account.sendRequest``). Every final answer means the server is there; it
  says nothing about the number itself.
- ``call``: an INVITE to the number, CANCELled the moment it rings (180) or
  progresses (183 without SDP), so the phone barely rings. A 183 *with* SDP
  may be an operator's "this number is not assigned" announcement, with the
  404 coming only after it: the probe listens for up to
  ``early_media_timeout`` before it takes the 183 as "it rings". If it hears
  Special Information Tones meanwhile (gateway/sip/tap.py), the number is
  what the tones' code says at once: for the ITU SIT, which carries no
  cause, what the rules' ``sit.itu`` says (``unassigned`` by default).

Both give ``gateway.core.health.Evidence``; the health board judges it.
A call probe's leg moves along the same leg table as a call's
(``LEG_TABLE`` in gateway/core/session.py): it is given up once it rang
(``rang`` and not ``EARLY``), or when its early-media bound runs out. A
call probe takes a call leg, so it runs only when the core's ``Capacity``
leaves room for a customer's call meanwhile (docs/limits.md).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from loguru import logger

from gateway.core.causes import Outcome
from gateway.core.events import LegAnswered, LegEnded, LegFailed, LegProgress
from gateway.core.health import Evidence, ProbeResult, Source
from gateway.core.rules_values import EARLY_MEDIA_TIMEOUT_S
from gateway.core.session import LEG_TABLE
from gateway.core.step import LegRecord, LegState, provisional_cue
from gateway.sip.signals import SitSignal

if TYPE_CHECKING:
    from gateway.core.admission import Capacity
    from gateway.core.plan import Dial
    from gateway.sip.engine import SipEngine
    from gateway.sip.signals import LegSignal, OptionsSignal


@dataclass
class _ProbeLeg:
    future: asyncio.Future[Evidence]
    leg: LegRecord
    sit_itu: Outcome = Outcome.UNASSIGNED
    timer: asyncio.TimerHandle | None = field(default=None)


class Prober:
    """Runs probes through the SIP engine; results come back as Evidence."""

    def __init__(
        self, engine: SipEngine, loop: asyncio.AbstractEventLoop, capacity: Capacity
    ) -> None:
        self.engine = engine
        self.loop = loop
        self.capacity = capacity
        self.sit_itu = Outcome.UNASSIGNED  # what an ITU SIT means: the rules' sit.itu
        self._legs: dict[str, _ProbeLeg] = {}
        self._ids = itertools.count(1)
        self._options_lock = asyncio.Lock()  # answers carry no token: one at a time
        self._options: asyncio.Future[tuple[int, str]] | None = None

    # -- signals from the engine (through the switchboard) ----------------------

    def owns(self, leg: str) -> bool:
        return leg in self._legs

    def on_leg(self, sig: LegSignal | SitSignal) -> None:
        probe = self._legs.get(sig.leg)
        if probe is None:
            return
        if isinstance(sig, SitSignal):
            self._heard_sit(probe, sig)
            return
        event = sig.event
        if isinstance(event, LegFailed | LegEnded):
            del self._legs[sig.leg]
        if probe.future.done():
            if isinstance(event, LegAnswered):
                # A 200 crossed our CANCEL (RFC 3261 9.1): the phone was picked
                # up after all. A probe never keeps a call: BYE at once.
                self.engine.stop_leg(sig.leg)
            return
        if isinstance(event, LegProgress):
            self._progress(sig.leg, probe, event)
        elif isinstance(event, LegAnswered):
            # Someone picked up: hang up at once; the number is certainly alive.
            self.engine.stop_leg(sig.leg)
            self._resolve(probe, Outcome.ANSWERED, 200)
        elif isinstance(event, LegFailed):
            self._resolve(probe, event.outcome, event.sip_code, event.q850)

    def _progress(self, leg: str, probe: _ProbeLeg, event: LegProgress) -> None:
        record = probe.leg
        record.heard(event.status)
        cue = provisional_cue(event.status, early_media=event.early_media)
        record.enter(LEG_TABLE[(record.state, cue)], self.loop.time())
        if record.state is LegState.EARLY:
            # Maybe an operator's "not in service" with the 404 after it: listen.
            if probe.timer is None and record.early_deadline is not None:
                probe.timer = self.loop.call_at(record.early_deadline,
                                                self._announcement_over, leg, probe)  # fmt: skip
        elif record.rang:
            self.engine.stop_leg(leg)
            self._resolve(probe, ProbeResult.PROGRESS, event.status)

    def _heard_sit(self, probe: _ProbeLeg, sig: SitSignal) -> None:
        if probe.future.done():
            return
        from gateway.core.sit import outcome_of  # noqa: PLC0415 - loaded with the first tap

        logger.info("call probe {}: {}", sig.leg, sig.tone.describe())
        self.engine.stop_leg(sig.leg)
        self._resolve(probe, outcome_of(sig.tone.code, probe.sit_itu), None)

    def _announcement_over(self, leg: str, probe: _ProbeLeg) -> None:
        if not probe.future.done():
            self.engine.stop_leg(leg)
            self._resolve(probe, ProbeResult.PROGRESS, 183)

    def _resolve(self, probe: _ProbeLeg, outcome: Outcome | ProbeResult, sip_code: int | None,
                 q850: int | None = None) -> None:  # fmt: skip
        if probe.timer is not None:
            probe.timer.cancel()
        probe.future.set_result(
            Evidence.of(
                Source.CALL_PROBE,
                outcome,
                datetime.now(UTC),
                sip_code=sip_code,
                q850=q850,
                rang=probe.leg.rang,
            )
        )

    def on_options(self, sig: OptionsSignal) -> None:
        if self._options is not None and not self._options.done():
            self._options.set_result((sig.code, sig.reason))

    # -- probes ---------------------------------------------------------------------

    def can_call(self) -> bool:
        """True when a call probe would leave room for a customer's call."""
        now = self.loop.time()
        return self.capacity.room_for_probe(self.engine.load(now), now)

    async def call(
        self, target: Dial, *, wait_s: float = 20.0,
        early_media_timeout: float = EARLY_MEDIA_TIMEOUT_S,
        sit_itu: Outcome | None = None,
    ) -> Evidence | None:  # fmt: skip
        """INVITE the target and CANCEL it as soon as it rings.

        Args:
            target: what to dial.
            wait_s: how long to wait for any answer at all.
            early_media_timeout: how long a 183 with audio is listened to.
            sit_itu: the outcome of an ITU SIT heard meanwhile; None: ``self.sit_itu``,
                the rules' ``sit.itu`` (the composition root keeps it current).

        Returns:
            The evidence, or None when no leg could be spared right now.
        """
        if not self.can_call():
            return None
        leg = f"probe-{next(self._ids)}"
        now = self.loop.time()
        record = LegRecord(leg, target, step=0, started_at=now, deadline=now + wait_s,
                           early_media_timeout=early_media_timeout)  # fmt: skip
        probe = _ProbeLeg(self.loop.create_future(), record, sit_itu or self.sit_itu)
        self._legs[leg] = probe
        logger.info("call probe {} to {} ({})", leg, target.name, target.label)
        self.engine.ring(leg, target)
        try:
            return await asyncio.wait_for(asyncio.shield(probe.future), wait_s)
        except TimeoutError:
            # Nothing at all came back: CANCEL (pjsua sends it once a
            # provisional arrives, or timer B ends the INVITE).
            self.engine.stop_leg(leg)
            return Evidence.of(Source.CALL_PROBE, ProbeResult.TIMEOUT, datetime.now(UTC))

    async def probe(self, kind: str, dial: Dial, early_media_timeout: float) -> Evidence | None:
        """A probe as the health monitor asks for it (``kind``: options or call)."""
        if kind == "options":
            return await self.options(self.engine.dial_uri(dial))
        return await self.call(dial, early_media_timeout=early_media_timeout)

    async def options(self, uri: str, wait_s: float = 10.0) -> Evidence:
        """Send OPTIONS to ``uri``; pjsua's timer F (32 s) is bounded by ``wait_s``."""
        evidence, _reason = await self.options_answer(uri, wait_s)
        return evidence

    async def options_answer(self, uri: str, wait_s: float = 10.0) -> tuple[Evidence, str]:
        """Like ``options``, with the reason phrase of the answer ("" for none)."""
        async with self._options_lock:
            self._options = self.loop.create_future()
            at = datetime.now(UTC)
            if not self.engine.send_options(uri):
                return Evidence.of(Source.OPTIONS_PROBE, ProbeResult.TIMEOUT, at), ""
            try:
                code, reason = await asyncio.wait_for(self._options, wait_s)
            except TimeoutError:
                now = datetime.now(UTC)
                return Evidence.of(Source.OPTIONS_PROBE, ProbeResult.TIMEOUT, now), ""
            finally:
                self._options = None
        # pjsip reports its own timer F expiry as 408 (no answer came at all).
        result = ProbeResult.TIMEOUT if code == 408 else ProbeResult.RESPONDED
        evidence = Evidence.of(Source.OPTIONS_PROBE, result, datetime.now(UTC), sip_code=code)
        return evidence, reason
