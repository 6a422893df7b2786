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
import hashlib
import json
import os
import signal
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from loguru import logger

from gateway.core.admission import Admission, Capacity
from gateway.core.rules import MODES, Rules, RulesError
from gateway.edge.worker import behind_edge, pool_admits
from gateway.health.alert_mail import AlertMail
from gateway.health.monitor import HealthMonitor
from gateway.health.probes import Prober
from gateway.rules.load import load_rules
from gateway.rules.watch import watch_rules
from gateway.service import logs, systemd
from gateway.service.refusals import RefusedSources, reason_for
from gateway.sip.engine import SipEngine
from gateway.sip.engine_limits import planned_limits
from gateway.sip.pump import EnginePump, find_sip_sockets
from gateway.sip.registration import Registration
from gateway.status.bus import EventBus
from gateway.status.calllog import CallLog
from gateway.status.mqtt import MqttPublisher
from gateway.status.statusfile import STATUS_FILE, StatusFile
from gateway.switchboard import Switchboard
from gateway.voicemail.machine import AnsweringMachine
from gateway.voicemail.mailer import Mailer
from gateway.voicemail.spool import Spool

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from gateway.config import Settings
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
        self.rules = rules
        self._in_force = (_digest(settings.rules), _now_iso())  # sha256 and time of the rules used
        self.loop = asyncio.get_running_loop()
        self.stop_requested = asyncio.Event()
        self._forced_at: float | None = None  # when a second stop signal came
        self.admission = Admission(
            settings.trunk.allowed_sources(),
            Capacity(limits.call_legs),
            settings.sip.max_calls_per_source_per_minute,
        )
        self.refusals = RefusedSources()
        self.engine = SipEngine(settings, self._gate, limits)
        self.registration = Registration(self.engine, self.loop, self.notify, settings.trunk)
        self.bus = EventBus()
        self.spool = Spool(settings.state_dir / "voicemail")
        self.mailer = Mailer(settings.smtp, self.spool, self.notify, ZoneInfo(rules.timezone),
                             lifetime=timedelta(days=settings.smtp.lifetime_days))  # fmt: skip
        machine = AnsweringMachine(
            self.engine.media, self.spool, self.notify, self.mailer.notify, settings.rules.parent
        )
        self.prober = Prober(self.engine, self.loop, self.admission.capacity)
        self.switchboard = Switchboard(
            self.engine, rules, self.admission, self.notify, self.loop,
            machine=machine, prober=self.prober, on_registration=self.registration.on_signal,
        )  # fmt: skip
        self.calllog = CallLog(settings.state_dir / "calls.sqlite3")
        self.alert_mail = AlertMail(self.spool, self.mailer.notify, self.calllog,
                                    lambda: self.rules, settings.state_dir)  # fmt: skip
        self.monitor = HealthMonitor(
            self.prober, self.switchboard.health, self.notify, mail=self.alert_mail.alert
        )
        self._monitor_task: asyncio.Task[None] | None = None
        self.publisher = (
            MqttPublisher(settings.mqtt, settings.gateway_id, self.bus, self._command)
            if settings.mqtt.url
            else None
        )
        self.statusfile = StatusFile(settings.state_dir / STATUS_FILE, self.bus,
                                     settings.gateway_id, targets=lambda: self.rules.targets,
                                     mqtt=self._mqtt_link if self.publisher else None)  # fmt: skip

    def _mqtt_link(self) -> str:
        connected = self.publisher is not None and self.publisher.connected.is_set()
        return "connected" if connected else "disconnected"

    def _gate(self, offer: InviteOffer, last_resort: bool) -> bool:
        if self.settings.edge.address is not None:
            registry = self.engine.registry
            legs = self.admission.capacity.legs
            if not pool_admits(len(registry.inbound), len(registry.outbound), legs,
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
        """A status event: logged, and on the bus (MQTT, call log)."""
        logger.info("event {} {}", kind, json.dumps(dict(data), default=str))
        self.bus.publish(kind, data)
        self.monitor.on_event(kind, data)

    async def run(self) -> None:
        """Serve calls until a stop is requested, then shut down in order."""
        self.state_dir_ready()
        try:
            async with asyncio.TaskGroup() as tasks:
                services = [
                    tasks.create_task(self.mailer.run(), name="voicemail.mailer"),
                    tasks.create_task(self.calllog.run(self.bus), name="calllog"),
                    tasks.create_task(self.statusfile.run(), name="statusfile"),
                    tasks.create_task(self.alert_mail.run_digest(), name="alerts.digest"),
                ]
                if self.publisher is not None:
                    services.append(tasks.create_task(self.publisher.run(), name="mqtt.publisher"))
                watch = watch_rules(self.settings.rules, self.reload_rules)
                services.append(tasks.create_task(watch, name="rules.watch"))
                await asyncio.sleep(0)  # let the bus subscribers subscribe first
                self._rules_loaded(self.rules, None)
                mode, source = self.rules.active_mode
                self.notify("rules.mode", {"mode": mode, "source": source})
                self.engine.start()
                self.notify("engine.limits", self.engine.limits.as_dict())
                # Probes go through the engine: the monitor starts once it runs.
                self._monitor_task = tasks.create_task(self.monitor.run(), name="health.monitor")
                services.append(self._monitor_task)
                self.registration.start()
                logger.info("ready listen={} sources={} legs={}", self.engine.listen,
                            ",".join(sorted(self.admission.sources)),
                            self.admission.capacity.legs)  # fmt: skip
                systemd.notify("READY=1")
                await self._pump_until_stopped()
                await self._stop_services(services)
        finally:
            self.engine.destroy()
            self.calllog.close()
            logger.info("stopped")

    def state_dir_ready(self) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)

    async def _command(self, command: str, payload: bytes) -> None:
        """A command from MQTT (``<prefix>/cmd/...``): reload, mode, probe/<target>."""
        if command == "reload":
            self.reload_rules()
        elif command == "mode":
            text = payload.decode("utf-8", "replace").strip().lower()
            if text and text not in MODES:
                logger.warning("mode {!r} ignored (expected {} or empty)", text, ", ".join(MODES))
                return
            self._use_rules(self.rules.with_mode_override(text or None))
        elif command.startswith("probe/") and command[6:] in self.rules.targets:
            await self.monitor.probe_once(command[6:])
        else:
            logger.warning("unknown command {}", command)

    def _rules_loaded(self, rules: Rules | None, error: str | None) -> None:
        """Publish which rules are in force (after a refused reload: still the old ones)."""
        self.notify("rules.loaded", {"file": str(self.settings.rules),
                                     "sha256": self._in_force[0], "loaded_at": self._in_force[1],
                                     "error": error})  # fmt: skip
        if rules is not None:
            self.monitor.reload(rules, self.loop.time())
        if rules is not None and self.publisher is not None:
            self.publisher.set_targets(rules.targets)

    async def _pump_until_stopped(self) -> None:
        engine = self.engine
        pump = EnginePump(self.loop, self.switchboard.pump,
                          lambda: find_sip_sockets(engine.sip_ports(), engine.trunk_stream_ports()),
                          streams=self.settings.trunk.transport != "udp")  # fmt: skip
        pump.start()
        # The watchdog is fed from the pump's tick: if the pump stops, no call
        # gets through, and systemd should restart the gateway.
        watchdog = systemd.watchdog_interval()
        fed = self.loop.time()

        def tick() -> None:
            nonlocal fed
            if watchdog is not None and self.loop.time() - fed >= watchdog:
                systemd.notify("WATCHDOG=1")
                fed = self.loop.time()

        def busy() -> bool:
            return bool(self.switchboard.active_calls or engine.legs_in_use())

        try:
            await pump.run(self.stop_requested, tick, busy)
        finally:
            pump.close()
        systemd.notify("STOPPING=1")
        await self._shutdown()

    async def _shutdown(self) -> None:
        logger.info("stopping: no new calls; {} in progress", self.switchboard.active_calls)
        if self._monitor_task is not None:
            self._monitor_task.cancel()  # no new probe while calls drain
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

    async def _pump_while(self, condition: Any, limit: float, *, grace: bool = False) -> None:
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
        """Cancel the services and wait for them, bounded.

        A service that is still running after `STOP_SERVICES_S` let a
        cancellation pass (a library swallowed it): it is cancelled once more,
        and if even that does not end it, the gateway exits without it.
        """
        if not services:
            return
        for service in services:
            service.cancel()
        _, pending = await asyncio.wait(services, timeout=self._bound(STOP_SERVICES_S))
        if not pending:
            return
        names = ", ".join(sorted(task.get_name() for task in pending))
        logger.warning("stopping: {} still running; cancelling again", names)
        for service in pending:
            service.cancel()
        _, pending = await asyncio.wait(pending, timeout=FORCED_S)
        if pending:
            self._abandon(names)

    def _bound(self, limit: float) -> float:
        """``limit``, or what is left of `FORCED_S` after a second stop signal."""
        if self._forced_at is None:
            return limit
        return max(0.0, min(limit, self._forced_at + FORCED_S - self.loop.time()))

    def _abandon(self, names: str) -> None:
        """Exit now: a service would hold the process forever (systemd restarts it)."""
        logger.error("stopping: {} did not end; exiting without them", names)
        self.engine.destroy()
        self.calllog.close()
        logger.complete()
        os._exit(EXIT_STUCK)

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: stop in order; a second one skips the grace period."""
        if self.stop_requested.is_set() and self._forced_at is None:
            logger.warning("second stop signal: no grace period, hanging up now")
            self._forced_at = self.loop.time()
        self.stop_requested.set()

    def reload_rules(self) -> None:
        """SIGHUP, ``cmd/reload``, or the file changed: load the rules again.

        The new file is checked whole before it replaces the running rules in one
        assignment; calls in progress keep the rules they started on. A broken
        file changes nothing: its problems are logged and published. A mode set
        over MQTT stays in force across the reload.
        """
        digest = _digest(self.settings.rules)
        try:
            rules = load_rules(self.settings.rules, call_legs=self.admission.capacity.legs)
        except RulesError as error:
            for problem in error.problems:
                logger.error("rules not reloaded: {}", problem)
            self._rules_loaded(None, "\n".join(str(p) for p in error.problems))
            return
        self._in_force = (digest, _now_iso())
        self._use_rules(rules.with_mode_override(self.rules.mode_override))
        logger.info("rules reloaded from {}", self.settings.rules)
        self._rules_loaded(rules, None)

    def _use_rules(self, rules: Rules) -> None:
        """Swap in ``rules`` for new calls (calls in progress keep theirs); report the mode."""
        before = self.rules.active_mode
        self.rules = rules
        self.switchboard.rules = rules
        mode, source = rules.active_mode
        if (mode, source) != before:
            logger.info("mode {} (set by {})", mode, source)
            self.notify("rules.mode", {"mode": mode, "source": source})


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
