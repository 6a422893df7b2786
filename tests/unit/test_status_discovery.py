"""Home Assistant discovery payloads, checked against HA's documented keys.

Allowed and required keys per component are taken from the Home Assistant
MQTT integration docs (binary_sensor.mqtt, sensor.mqtt, button.mqtt, select.mqtt, and the
MQTT discovery page for ``device`` and ``origin``). A key HA does not know is
silently dropped by HA, so a typo would only show up as a broken entity.
"""

from __future__ import annotations

import json

import pytest

from gateway.status.discovery import Discovery, slug

COMMON = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "default_entity_id", "device", "enabled_by_default", "encoding", "entity_category",
    "entity_picture", "icon", "json_attributes_template", "json_attributes_topic", "name",
    "object_id", "origin", "payload_available", "payload_not_available", "platform", "qos",
    "unique_id",
}  # fmt: skip
ALLOWED = {
    "binary_sensor": COMMON | {
        "device_class", "expire_after", "force_update", "off_delay", "payload_off",
        "payload_on", "state_topic", "value_template"},
    "sensor": COMMON | {
        "device_class", "expire_after", "force_update", "last_reset_value_template",
        "options", "state_class", "state_topic", "suggested_display_precision",
        "unit_of_measurement", "value_template"},
    "button": COMMON | {
        "command_template", "command_topic", "device_class", "payload_press", "retain"},
    "select": COMMON | {
        "command_template", "command_topic", "optimistic", "options", "retain", "state_topic",
        "value_template"},
}  # fmt: skip
REQUIRED = {
    "binary_sensor": {"state_topic"},
    "sensor": {"state_topic"},
    "button": {"command_topic"},
    "select": {"command_topic", "options"},
}
DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
    "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
DEVICE_CLASSES = {
    "binary_sensor": {"connectivity", "problem"},
    "sensor": {"enum", "timestamp"},
}
PREFIX = "sip-failover/gw1"


def messages() -> dict[str, dict]:
    found = Discovery(PREFIX, "gw1").messages(["office-mobile", "Anna B"])
    return {topic: json.loads(payload) for topic, payload in found.items()}


def test_every_config_uses_only_documented_keys_and_has_the_required_ones() -> None:
    for topic, config in messages().items():
        prefix, component, node_id, _object_id, last = topic.split("/")
        assert (prefix, node_id, last) == ("homeassistant", "sip_failover_gw1", "config")
        assert set(config) <= ALLOWED[component], topic
        assert REQUIRED[component] <= set(config), topic
        assert set(config["device"]) <= DEVICE_KEYS
        assert set(config["origin"]) <= ORIGIN_KEYS
        assert config.get("entity_category", "config") in ENTITY_CATEGORIES
        if "device_class" in config:
            assert config["device_class"] in DEVICE_CLASSES[component], topic


def test_every_entity_is_unique_available_and_on_one_device() -> None:
    configs = list(messages().values())
    assert len(configs) == 10
    unique = {c["unique_id"] for c in configs}
    assert len(unique) == len(configs)
    for config in configs:
        assert config["availability_topic"] == f"{PREFIX}/availability"
        domain, _, entity = config["default_entity_id"].partition(".")
        assert domain in ALLOWED
        assert entity == config["unique_id"]
        assert config["device"]["identifiers"] == ["sip_failover_gw1"]
        assert config["device"]["name"] == "sip-failover gw1"


def test_state_topics_point_at_the_gateways_retained_topics() -> None:
    by_id = {c["unique_id"].removeprefix("sip_failover_gw1_"): c for c in messages().values()}
    assert by_id["trunk_registration"]["state_topic"] == f"{PREFIX}/trunk/registration"
    assert by_id["calls_active"]["state_topic"] == f"{PREFIX}/calls/active"
    assert by_id["rules_problem"]["state_topic"] == f"{PREFIX}/rules"
    assert by_id["last_failover"]["state_topic"] == f"{PREFIX}/last_failover"
    health = by_id[f"target_{slug('office-mobile')}_health"]
    assert health["state_topic"] == f"{PREFIX}/target/office-mobile/health"
    assert health["options"] == ["up", "unassigned", "down", "unknown"]
    assert by_id["reload_rules"]["command_topic"] == f"{PREFIX}/cmd/reload"
    mode = by_id["mode"]
    assert (mode["command_topic"], mode["state_topic"]) == (f"{PREFIX}/cmd/mode", f"{PREFIX}/mode")
    assert mode["options"] == ["normal", "force-backup", "closed"]
    assert mode["value_template"] == "{{ value_json.mode }}"
    assert by_id[f"target_{slug('Anna B')}_probe"]["command_topic"] == (
        f"{PREFIX}/cmd/probe/Anna_B"
    )


@pytest.mark.parametrize(("name", "expected"), [("anna", "anna"), ("office_1", "office_1")])
def test_plain_names_keep_their_slug(name: str, expected: str) -> None:
    assert slug(name) == expected


def test_names_that_differ_keep_distinct_slugs() -> None:
    assert slug("a-b") != slug("a_b")
    assert slug("a-b").startswith("a_b_")


def test_removal_lists_a_targets_config_topics() -> None:
    discovery = Discovery(PREFIX, "gw1")
    topics = discovery.removal("anna")
    assert topics == [
        "homeassistant/sensor/sip_failover_gw1/target_anna_health/config",
        "homeassistant/button/sip_failover_gw1/target_anna_probe/config",
    ]
