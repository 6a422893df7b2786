"""Composition root: settings, rules, the SIP engine, the switchboard, signals.

One process, one asyncio loop (uvloop), one TaskGroup. A signal only sets a
flag; shutdown then goes in order (uvicorn's ``Server.shutdown``): stop
taking calls, let calls finish within the grace period, hang up the rest,
pump pjsua until every leg is gone, unregister, stop the services, destroy
the endpoint. Every wait on a peer is bounded, so the whole stop takes at most
the grace period plus about 12 s (systemd's ``TimeoutStopSec`` is 45 s). A
second SIGTERM/SIGINT skips the grace period and cuts every other wait to 1 s.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
from datetime import timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from loguru import logger

from gateway.control import Control
from gateway.core.admission import Admission, Capacity
from gateway.core.health import HealthState
from gateway.core.plan import dial_of
from gateway.core.rules import RulesError
from gateway.edge.channel import split_address
from gateway.edge.link import ControlLink, WorkerOrders
from gateway.edge.worker import behind_edge
from gateway.health.inbound_loop import InboundLoop
from gateway.health.probes import Prober
from gateway.rules.keeper import RulesKeeper
from gateway.rules.load import load_rules
from gateway.service import logs, systemd
from gateway.service.refusals import RefusedSources, reason_for
from gateway.service.stopping import cancel_within
from gateway.sip.engine import SipEngine
from gateway.sip.engine_limits import planned_limits
from gateway.sip.idle import MediaPoller, QuietHeap, transactions
from gateway.sip.pump import EnginePump, find_sip_sockets
from gateway.sip.registration import Registration
from gateway.switchboard import Switchboard
from gateway.voicemail.machine import AnsweringMachine
from gateway.voicemail.mailer import Mailer
from gateway.voicemail.spool import Spool

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from gateway.config import Settings
    from gateway.core.health import Evidence
    from gateway.core.rules import Rules
    from gateway.service.logs import LogFormat
    from gateway.sip.limits import EngineLimits
    from gateway.sip.signals import InviteOffer

# While the gateway runs, the engine pump (gateway/sip/pump.py) wakes pjsua on
# SIP traffic. Shutdown polls it every POLL_BUSY until its waits are over.
POLL_BUSY = 0.001
DRAIN_LEGS_S = 5.0  # after hang-up: legs end, a voicemail commits its message
UNREGISTER_S = 4.0  # the un-REGISTER, after any REGISTER in flight, is answered
STOP_SERVICES_S = 3.0  # MQTT says offline, the call log and the mailer stop
FORCED_S = 1.0  # after a second signal: the most any remaining wait may take
EXIT_STUCK = 1  # a service did not end even when cancelled twice


def setup_logging(level: str, log_format: LogFormat = "auto") -> None:
    """The log to stderr: text on a terminal, priorities under systemd, or JSON (logs.py)."""
    logs.configure(level, log_format)


class Gateway:
    """The running gateway: owns the engine and the switchboard."""

    def __init__(self, settings: Settings, rules: Rules, limits: EngineLimits) -> None:
        self.settings = settings
        self.loop = asyncio.get_running_loop()
        self.stop_requested = asyncio.Event()
        self._forced_at: float | None = None  # when a second stop signal came
        self._loop_task: asyncio.Task[None] | None = None
        self.admission = Admission(
            settings.trunk.allowed_sources(),
            Capacity(limits.call_legs, limits.io_handles),
            settings.sip.max_calls_per_source_per_minute,
        )
        self.refusals = RefusedSources()
        self.engine = SipEngine(settings, self._gate, limits)
        self.media_poller = MediaPoller()  # RTP is read while legs are up
        self.registration = Registration(self.engine, self.loop, self.notify, settings.trunk)
        self.keeper = RulesKeeper(settings.rules, rules, self.notify, limits.call_legs)
        self.keeper.on_use.append(self._use_rules)
        self.prober = Prober(self.engine, self.loop, self.admission.capacity)
        self.prober.sit_itu = rules.sit.itu
        # Alone, the gateway runs its own control side; in a pool, a control
        # process runs it for every worker, and this worker forwards to it.
        health: dict[str, HealthState] = {}  # plans read it (core/plan.py)
        self.link: ControlLink | None = None
        self.control: Control | None = None
        self.mailer: Mailer | None = None  # a worker on another machine than its control process
        if settings.edge.control is not None:
            spool, wake_mailer = self._as_worker(settings.edge.control)
        else:
            self.control = Control(settings, self.keeper, self.prober, health)
            spool, wake_mailer = self.control.spool, self.control.mailer.notify
        machine = AnsweringMachine(
            self.engine.media, spool, self.notify, wake_mailer, settings.rules.parent
        )
        self.loop_test = self._loop_test()
        self.switchboard = Switchboard(
            self.engine, rules, self.admission, self.notify, self.loop,
            machine=machine, prober=self.prober, loop_test=self.loop_test,
            on_registration=self.registration.on_signal,
        )  # fmt: skip
        self.switchboard.health = health

    def _loop_test(self) -> InboundLoop | None:
        """The inbound loop test, for a gateway on its own only: in a pool the call
        coming back may reach another worker than the one that placed it."""
        if self.control is None or self.settings.edge.address is not None:
            return None
        loop_test = InboundLoop(self.engine, self.notify, mail=self.control.alert_mail.inbound)
        self.keeper.on_load.append(lambda rules: loop_test.reload(rules, self.loop.time()))
        return loop_test

    def _as_worker(self, control: str) -> tuple[Spool, Callable[[], None]]:
        """A worker of a pool: linked to its control process; the spool and who mails it."""
        settings = self.settings
        self.link = ControlLink(control, _worker_name(settings), WorkerOrders(
            self._follow_health, self.keeper.set_mode, self.keeper.reload, self._probe))
        spool = Spool(settings.state_dir / "voicemail")
        if split_address(control) is None:
            return spool, _mailer_elsewhere  # the control process mails the one spool
        # Over TCP the control process shares no spool with us: each machine
        # mails its own voicemails (still once each).
        self.mailer = Mailer(settings.smtp, spool, self.notify, ZoneInfo(self.rules.timezone),
                             lifetime=timedelta(days=settings.smtp.lifetime_days))  # fmt: skip
        return spool, self.mailer.notify

    @property
    def rules(self) -> Rules:
        return self.keeper.rules

    def _gate(self, offer: InviteOffer, last_resort: bool) -> bool:
        if self.settings.edge.address is not None:
            registry = self.engine.registry
            if not self.admission.capacity.room_in_pool(len(registry.inbound),
                                                        len(registry.outbound),
                                                        last_resort=last_resort):  # fmt: skip
                # Not a refusal of the caller: the edge offers the call to
                # another worker (or, as a last resort, to a voicemail).
                logger.info("INVITE refused: this worker cannot ring (last resort: {})",
                            last_resort)  # fmt: skip
                return False
        admitted = self.switchboard.gate(offer)
        if not admitted:
            self._report_refusal(offer.source)
        return admitted

    def _report_refusal(self, source: str) -> None:
        """At most one line a minute per refused source (refusals.py; fail2ban reads it)."""
        why = reason_for(source, self.admission.sources, self.admission.accepting)
        said = self.refusals.refused(source, why, self.loop.time())
        if said is not None:
            logger.warning(said)

    def notify(self, kind: str, data: Mapping[str, object]) -> None:
        """A status event: logged, and on the bus (MQTT, call log), here or in the pool's."""
        if self.control is not None:
            self.control.notify(kind, data)
            return
        logger.info("event {} {}", kind, json.dumps(dict(data), default=str))
        if self.link is not None:
            self.link.forward(kind, data)

    def _follow_health(self, states: dict[str, str]) -> None:
        """The pool's health of every target: plans skip the dead ones at once."""
        known = {name: HealthState(state) for name, state in states.items()
                 if state in HealthState._value2member_map_}  # fmt: skip
        if known != self.switchboard.health:
            logger.info("health from the pool: {}", json.dumps(states, sort_keys=True))
        self.switchboard.health.clear()
        self.switchboard.health.update(known)

    async def _probe(self, kind: str, target: str, early_media_timeout: float) -> Evidence | None:
        """A probe the pool's control process asked this worker to run."""
        if target not in self.rules.targets:
            return None
        dial = dial_of(target, self.rules.targets[target])
        return await self.prober.probe(kind, dial, early_media_timeout)

    def _start_services(self, tasks: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        if self.control is not None:
            return self.control.start_services(tasks)
        assert self.link is not None
        services = [tasks.create_task(self.link.run(), name="control.link")]
        if self.mailer is not None:
            services.append(tasks.create_task(self.mailer.run(), name="voicemail.mailer"))
        return services

    async def run(self) -> None:
        """Serve calls until a stop is requested, then shut down in order."""
        self.state_dir_ready()
        try:
            async with asyncio.TaskGroup() as tasks:
                services = self._start_services(tasks)
                await asyncio.sleep(0)  # let the bus subscribers subscribe first
                self.keeper.announce()
                self.engine.start()
                self.media_poller.start()
                self.notify("engine.limits", self.engine.limits.as_dict())
                # The I/O queue's handles are known once the engine runs: from
                # here on, every caller, ring and probe counts them.
                limits = self.engine.limits
                capacity = Capacity(limits.call_legs, limits.io_handles)
                self.admission.capacity = self.prober.capacity = capacity
                if self.control is not None:
                    # Probes go through the engine: the monitor starts once it runs.
                    services.append(self.control.start_monitor(tasks))
                if self.loop_test is not None:
                    self._loop_task = tasks.create_task(self.loop_test.run(), name="inbound.loop")
                    services.append(self._loop_task)
                self.registration.start()
                _freeze_startup_objects()
                logger.info("ready listen={} sources={} legs={}", self.engine.listen,
                            ",".join(sorted(self.admission.sources)),
                            self.admission.capacity.legs)  # fmt: skip
                systemd.notify("READY=1")
                await self._pump_until_stopped()
                self.switchboard.later.flush()  # the last calls' events, before their consumers
                await self._stop_services(services)
        finally:
            self.media_poller.stop()
            self.engine.destroy()
            if self.control is not None:
                self.control.close()
            logger.info("stopped")

    def state_dir_ready(self) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)

    def _pump_once(self) -> int:
        """Let pjsua handle what came; a worker then tells the pool its legs in use.

        RTP is read while legs are up: a leg that just came (an INVITE) or left
        (a ring) has it read before its audio can flow (gateway/sip/idle.py).
        """
        handled = self.switchboard.pump()
        legs = self.engine.legs_in_use()
        self.media_poller.follow(legs, self.loop.time())
        if self.link is not None:
            self.link.note_slots(legs, self.admission.capacity.legs)
        return handled

    async def _pump_until_stopped(self) -> None:
        engine = self.engine
        pump = EnginePump(self.loop, self._pump_once,
                          lambda: find_sip_sockets(engine.sip_ports(), engine.trunk_stream_ports()),
                          streams=self.settings.trunk.transport != "udp")  # fmt: skip
        pump.start()
        # The watchdog is fed from the pump's tick: if the pump stops, no call
        # gets through, and systemd should restart the gateway.
        watchdog = systemd.Watchdog(self.loop.time())
        heap = QuietHeap()  # what the calls' transactions freed goes back once they end

        def tick() -> None:
            if pump.driven_by_sockets:  # the SIP sockets, connections included, it found
                engine.sip_handles = max(len(pump.watched()), engine.sip_handles_min)
            watchdog.feed(self.loop.time())
            heap.follow(busy())

        def busy() -> bool:  # pjsip's timers are due soon: T1 is 500 ms (RFC 3261 17.1.1.1)
            in_progress = transactions()  # None: cannot be told, so maybe
            return bool(self.switchboard.active_calls or engine.legs_in_use()
                        or in_progress is None or in_progress)  # fmt: skip

        try:
            await pump.run(self.stop_requested, tick, busy)
        finally:
            pump.close()
        systemd.notify("STOPPING=1")
        await self._shutdown()

    async def _shutdown(self) -> None:
        logger.info("stopping: no new calls; {} in progress", self.switchboard.active_calls)
        if self.control is not None and self.control.monitor_task is not None:
            self.control.monitor_task.cancel()  # no new probe while calls drain
        if self._loop_task is not None:
            self._loop_task.cancel()  # nor a loop test
        self.admission.accepting = False
        await self._pump_while(
            lambda: self.switchboard.active_calls > 0, self.settings.shutdown_grace, grace=True
        )
        self.switchboard.hang_up_everything()
        # A call is over only once its session ended: a voicemail being taken
        # still has to stop its recorder and commit the message to the spool.
        await self._pump_while(
            lambda: self.switchboard.active_calls > 0 or self.engine.legs_in_use() > 0,
            DRAIN_LEGS_S,
        )
        self.registration.stop()
        await self._pump_while(lambda: self.registration.unregistering, UNREGISTER_S)

    async def _pump_while(
        self, condition: Callable[[], bool], limit: float, *, grace: bool = False
    ) -> None:
        """Pump pjsua while ``condition()`` holds, ``limit`` seconds at most.

        After a second stop signal the grace period ends at once and any
        other wait within `FORCED_S`.
        """
        deadline = self.loop.time() + limit
        while condition() and self.loop.time() < deadline:
            if self._forced_at is not None:
                if grace:
                    return
                deadline = min(deadline, self._forced_at + FORCED_S)
            self.switchboard.pump()
            await asyncio.sleep(POLL_BUSY)

    async def _stop_services(self, services: list[asyncio.Task[None]]) -> None:
        """Cancel the services and wait for them, bounded (gateway/service/stopping.py).

        If even a second cancellation does not end one, the gateway exits without it.
        """
        stuck = await cancel_within(services, self._bound(STOP_SERVICES_S), FORCED_S)
        if stuck:
            self._abandon(stuck)

    def _bound(self, limit: float) -> float:
        """``limit``, or what is left of `FORCED_S` after a second stop signal."""
        if self._forced_at is None:
            return limit
        return max(0.0, min(limit, self._forced_at + FORCED_S - self.loop.time()))

    def _abandon(self, names: str) -> None:
        """Exit now: a service would hold the process forever (systemd restarts it)."""
        logger.error("stopping: {} did not end; exiting without them", names)
        self.media_poller.stop()
        self.engine.destroy()
        if self.control is not None:
            self.control.close()
        logger.complete()
        os._exit(EXIT_STUCK)

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: stop in order; a second one skips the grace period."""
        if self.stop_requested.is_set() and self._forced_at is None:
            logger.warning("second stop signal: no grace period, hanging up now")
            self._forced_at = self.loop.time()
        self.stop_requested.set()

    def reload_rules(self) -> None:
        """SIGHUP: load the rules again (gateway/rules/keeper.py)."""
        self.keeper.reload()

    def _use_rules(self, rules: Rules) -> None:
        """New calls plan with ``rules``; calls in progress keep theirs."""
        self.switchboard.rules = rules
        self.prober.sit_itu = rules.sit.itu  # what a probe makes of the ITU SIT


def _freeze_startup_objects() -> None:
    """Keep what start-up built out of the cyclic collector's full passes.

    The modules, settings, rules and pjsua2's wrappers live as long as the
    process; a full collection walks every one of them (about 20 ms here),
    and it comes whenever the calls' garbage sets it off: in the middle of
    some caller's failover. Frozen, they are never walked again (what
    start-up left as garbage is collected first).
    """
    gc.collect()
    gc.freeze()


def _worker_name(settings: Settings) -> str:
    index = settings.edge.worker_index
    return f"worker{index}" if index else settings.sip.listen


def _mailer_elsewhere() -> None:
    """A worker's voicemail is mailed by the pool's control process (one mailer, one spool)."""


async def serve(settings: Settings) -> int:
    """Run the gateway until SIGTERM/SIGINT. Returns the process exit code."""
    if settings.edge.address is not None:
        settings = behind_edge(settings, settings.edge.address)
    limits = planned_limits()  # read from the installed engine, once
    try:
        rules = load_rules(settings.rules, call_legs=limits.call_legs)
    except RulesError as error:
        for problem in error.problems:
            logger.error("{}", problem)
        return 2
    gateway = Gateway(settings, rules, limits)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gateway.request_stop)
    loop.add_signal_handler(signal.SIGHUP, gateway.reload_rules)
    await gateway.run()
    return 0
