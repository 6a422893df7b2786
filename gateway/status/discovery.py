"""Home Assistant MQTT discovery: one device per gateway, its entities.

Each entity's config is published retained at
``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` and points at the
gateway's own retained state topics (JSON read with ``value_template``), so Home
Assistant shows current values as soon as it subscribes. Every entity shares the
device's ``availability`` topic. Pure: builds topics and payloads only.

Targets come from `StatusState.targets`: the names the composition root declares
with ``MqttPublisher.set_targets`` after each rules load, plus any target a
``target.health`` event names.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.core.rules_values import MODES

if TYPE_CHECKING:
    from collections.abc import Iterable

    from gateway.json_types import JsonObject

from gateway.status.state import (
    CALLS_ACTIVE,
    LAST_FAILOVER,
    MODE,
    RULES,
    TRUNK_REGISTRATION,
    health_topic,
    topic_name,
)

DISCOVERY_PREFIX = "homeassistant"
ORIGIN: JsonObject = {"name": "sip-failover", "sw_version": "0.1.0"}
HEALTH_STATES = ("up", "unassigned", "down", "unknown")
_NOT_SLUG = re.compile(r"[^a-z0-9_]+")


@dataclass(frozen=True, slots=True)
class Entity:
    """One Home Assistant entity of the gateway's device."""

    component: str
    object_id: str
    config: JsonObject


def slug(text: str) -> str:
    """A name as HA object ids want it; a short hash keeps distinct names apart."""
    cleaned = _NOT_SLUG.sub("_", text.lower()).strip("_")
    if cleaned == text:
        return cleaned
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{cleaned}_{digest}" if cleaned else digest


@dataclass(frozen=True, slots=True)
class Discovery:
    """Discovery configs of one gateway.

    Attributes:
        prefix: The gateway's topic prefix (``sip-failover/<gateway_id>``).
        gateway_id: The gateway's name.
        discovery_prefix: Home Assistant's discovery prefix.
    """

    prefix: str
    gateway_id: str
    discovery_prefix: str = DISCOVERY_PREFIX

    @property
    def node_id(self) -> str:
        return f"sip_failover_{slug(self.gateway_id)}"

    def topic(self, entity: Entity) -> str:
        """Where an entity's config is published."""
        return (
            f"{self.discovery_prefix}/{entity.component}/{self.node_id}/{entity.object_id}/config"
        )

    def messages(self, targets: Iterable[str]) -> dict[str, str]:
        """Every config topic with its JSON payload, for these targets."""
        entities = [*self.gateway_entities()]
        for target in targets:
            entities.extend(self.target_entities(target))
        return {self.topic(e): json.dumps(self._full(e), separators=(",", ":")) for e in entities}

    def removal(self, target: str) -> list[str]:
        """Config topics to clear (empty retained payload) when a target is gone."""
        return [self.topic(entity) for entity in self.target_entities(target)]

    def gateway_entities(self) -> list[Entity]:
        """Trunk, calls, last failover, rules, the reload button and the mode."""
        p = self.prefix
        return [
            Entity(
                "binary_sensor",
                "trunk_registration",
                {
                    "name": "Trunk registered",
                    "device_class": "connectivity",
                    "state_topic": f"{p}/{TRUNK_REGISTRATION}",
                    "value_template": "{{ 'ON' if value_json.state == 'registered' else 'OFF' }}",
                    "json_attributes_topic": f"{p}/{TRUNK_REGISTRATION}",
                },
            ),
            Entity(
                "sensor",
                "calls_active",
                {
                    "name": "Active calls",
                    "state_topic": f"{p}/{CALLS_ACTIVE}",
                    "state_class": "measurement",
                    "unit_of_measurement": "calls",
                    "icon": "mdi:phone-in-talk",
                },
            ),
            Entity(
                "sensor",
                "last_failover",
                {
                    "name": "Last failover",
                    "device_class": "timestamp",
                    "state_topic": f"{p}/{LAST_FAILOVER}",
                    "value_template": "{{ value_json.at }}",
                    "json_attributes_topic": f"{p}/{LAST_FAILOVER}",
                },
            ),
            Entity(
                "binary_sensor",
                "rules_problem",
                {
                    "name": "Rules invalid",
                    "device_class": "problem",
                    "state_topic": f"{p}/{RULES}",
                    "value_template": "{{ 'ON' if value_json.error else 'OFF' }}",
                    "json_attributes_topic": f"{p}/{RULES}",
                    "entity_category": "diagnostic",
                },
            ),
            Entity(
                "button",
                "reload_rules",
                {
                    "name": "Reload rules",
                    "command_topic": f"{p}/cmd/reload",
                    "payload_press": "reload",
                    "entity_category": "config",
                },
            ),
            Entity(
                "select",
                "mode",
                {
                    # HA publishes the chosen option, which is what cmd/mode takes.
                    "name": "Mode",
                    "command_topic": f"{p}/cmd/mode",
                    "state_topic": f"{p}/{MODE}",
                    "value_template": "{{ value_json.mode }}",
                    "json_attributes_topic": f"{p}/{MODE}",
                    "options": list(MODES),
                    "icon": "mdi:phone-forward",
                    "entity_category": "config",
                },
            ),
        ]

    def target_entities(self, target: str) -> list[Entity]:
        """A target's health (enum sensor) and its probe button."""
        p, key = self.prefix, slug(target)
        return [
            Entity(
                "sensor",
                f"target_{key}_health",
                {
                    "name": f"{target} health",
                    "device_class": "enum",
                    "options": list(HEALTH_STATES),
                    "state_topic": f"{p}/{health_topic(target)}",
                    "value_template": "{{ value_json.state }}",
                    "json_attributes_topic": f"{p}/{health_topic(target)}",
                },
            ),
            Entity(
                "button",
                f"target_{key}_probe",
                {
                    "name": f"Probe {target}",
                    "command_topic": f"{p}/cmd/probe/{topic_name(target)}",
                    "payload_press": "probe",
                    "entity_category": "diagnostic",
                },
            ),
        ]

    def _full(self, entity: Entity) -> JsonObject:
        unique = f"{self.node_id}_{entity.object_id}"
        return {
            **entity.config,
            "unique_id": unique,
            "default_entity_id": f"{entity.component}.{unique}",
            "availability_topic": f"{self.prefix}/availability",
            "payload_available": "online",
            "payload_not_available": "offline",
            "qos": 1,
            "device": {
                "identifiers": [self.node_id],
                "name": f"sip-failover {self.gateway_id}",
                "manufacturer": "sip-failover",
                "model": "SIP failover gateway",
                "sw_version": ORIGIN["sw_version"],
            },
            "origin": ORIGIN,
        }
