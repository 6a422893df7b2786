"""What a gateway runs that needs no SIP engine: the control side.

The event bus with its consumers (MQTT publisher and Home Assistant
discovery, call log, status file), the voicemail spool's mailer, the alert
mails and the daily digest, and the health monitor (hysteresis, probe
schedule, passive evidence from real calls). A single gateway composes it
with its engine in one process (gateway/app.py); a pool runs it once, in the
supervisor (gateway/edge/control.py), for all its workers. Probes go through
whatever ``ProbeRunner`` it is given: the gateway's own engine, or a worker.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from loguru import logger

from gateway.health.alert_mail import AlertMail
from gateway.health.monitor import HealthMonitor
from gateway.rules.watch import watch_rules
from gateway.status.bus import EventBus
from gateway.status.calllog import CallLog
from gateway.status.statusfile import STATUS_FILE, StatusFile
from gateway.voicemail.mailer import Mailer
from gateway.voicemail.spool import Spool

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from gateway.config import Settings
    from gateway.core.health import HealthState
    from gateway.core.rules import Rules
    from gateway.health.monitor import ProbeRunner
    from gateway.rules.keeper import RulesKeeper
    from gateway.status.bus import StatusSink
    from gateway.status.mqtt import MqttPublisher


class Control:
    """The services of one gateway (or one pool), without its SIP engine.

    Args:
        settings: the gateway's settings (state folder, MQTT, SMTP).
        keeper: the rules in force; a reload or a mode from MQTT goes there.
        prober: runs a probe when the health monitor asks for one.
        health: target states, shared with whoever plans calls.
    """

    def __init__(self, settings: Settings, keeper: RulesKeeper, prober: ProbeRunner,
                 health: dict[str, HealthState]) -> None:  # fmt: skip
        self.settings = settings
        self.keeper = keeper
        self.bus = EventBus()
        self.listeners: list[StatusSink] = []
        self.spool = Spool(settings.state_dir / "voicemail")
        self.mailer = Mailer(settings.smtp, self.spool, self.notify,
                             ZoneInfo(keeper.rules.timezone),
                             lifetime=timedelta(days=settings.smtp.lifetime_days))  # fmt: skip
        self.calllog = CallLog(settings.state_dir / "calls.sqlite3")
        self.alert_mail = AlertMail(self.spool, self.mailer.notify, self.calllog,
                                    lambda: self.keeper.rules, settings.state_dir)  # fmt: skip
        self.monitor = HealthMonitor(prober, health, self.notify, mail=self.alert_mail.alert)
        self.monitor_task: asyncio.Task[None] | None = None
        self.publisher = self._publisher()
        self.statusfile = StatusFile(settings.state_dir / STATUS_FILE, self.bus,
                                     settings.gateway_id, targets=lambda: self.keeper.rules.targets,
                                     mqtt=self._mqtt_link if self.publisher else None)  # fmt: skip
        keeper.on_load.append(self._rules_loaded)

    def _publisher(self) -> MqttPublisher | None:
        """The MQTT publisher, when a broker is set: only then are aiomqtt and paho
        loaded (1.7 MB of an idle gateway's memory), at start, before any event."""
        if not self.settings.mqtt.url:
            return None
        from gateway.status.mqtt import MqttPublisher  # noqa: PLC0415 - with a broker only

        settings = self.settings
        return MqttPublisher(settings.mqtt, settings.gateway_id, self.bus, self.command)

    def _mqtt_link(self) -> str:
        connected = self.publisher is not None and self.publisher.connected.is_set()
        return "connected" if connected else "disconnected"

    def notify(self, kind: str, data: Mapping[str, object]) -> None:
        """A status event of this process: logged, then published."""
        logger.info("event {} {}", kind, json.dumps(dict(data), default=str))
        self.publish(kind, data)

    def publish(self, kind: str, data: Mapping[str, object], at: datetime | None = None) -> None:
        """A status event (ours, or a worker's): on the bus (MQTT, call log), to the monitor."""
        self.bus.publish(kind, data, at)
        self.monitor.on_event(kind, data)
        if kind == "voicemail.recorded":
            self.mailer.notify()  # a worker committed it to the one spool
        for listener in self.listeners:
            listener(kind, data)

    def start_services(self, tasks: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Start the consumers and the mailer; the monitor starts with `start_monitor`."""
        services = [
            tasks.create_task(self.mailer.run(), name="voicemail.mailer"),
            tasks.create_task(self.calllog.run(self.bus), name="calllog"),
            tasks.create_task(self.statusfile.run(), name="statusfile"),
            tasks.create_task(self.alert_mail.run_digest(), name="alerts.digest"),
        ]
        if self.publisher is not None:
            services.append(tasks.create_task(self.publisher.run(), name="mqtt.publisher"))
        watch = watch_rules(self.settings.rules, self.keeper.reload)
        services.append(tasks.create_task(watch, name="rules.watch"))
        return services

    def start_monitor(self, tasks: asyncio.TaskGroup) -> asyncio.Task[None]:
        """Probes and alerts, once probes can run."""
        self.monitor_task = tasks.create_task(self.monitor.run(), name="health.monitor")
        return self.monitor_task

    async def command(self, command: str, payload: bytes) -> None:
        """A command from MQTT (``<prefix>/cmd/...``): reload, mode, probe/<target>."""
        if command == "reload":
            self.keeper.reload()
        elif command == "mode":
            self.keeper.set_mode(payload.decode("utf-8", "replace").strip().lower() or None)
        elif command.startswith("probe/") and command[6:] in self.keeper.rules.targets:
            await self.monitor.probe_once(command[6:])
        else:
            logger.warning("unknown command {}", command)

    def _rules_loaded(self, rules: Rules) -> None:
        self.monitor.reload(rules, asyncio.get_running_loop().time())
        if self.publisher is not None:
            self.publisher.set_targets(rules.targets)

    def close(self) -> None:
        self.calllog.close()

