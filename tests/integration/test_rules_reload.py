"""Rules edited while the gateway runs: hot reload, a broken file, the mode over MQTT."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import aiomqtt
import pytest
from gateway_process import GatewayProcess

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import SippFactory
    from mosquitto import Mosquitto
    from sipp import Sipp

pytestmark = pytest.mark.integration
CALLED = "+3225550100"
WAIT_S = 15.0


def rules_ringing(main: Sipp, backup: Sipp | None = None) -> str:
    """One route: ring ``main`` (marked main), then ``backup`` if given."""
    text = f'version: 1\ntargets:\n  main: {{uri: "sip:main@{main.address}", main: true}}\n'
    if backup is not None:
        text += f'  backup: {{uri: "sip:backup@{backup.address}"}}\n'
    text += f'routes:\n  - name: line\n    match: {{to: "{CALLED}"}}\n    steps:\n'
    text += "      - ring: main\n        timeout: 5s\n"
    if backup is not None:
        text += "      - ring: backup\n        timeout: 5s\n"
    return text


def save_like_an_editor(path: Path, text: str) -> None:
    """Write a new file and rename it over the old one (vim, VS Code)."""
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def wait_for(condition: Callable[[], bool], what: str, gateway: GatewayProcess) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {WAIT_S:.0f} s\n{gateway.describe()}")
        time.sleep(0.05)


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def count(gateway: GatewayProcess, text: str) -> int:
    return gateway.log.count(text)


@pytest.fixture
def gateway_dir(tmp_path: Path) -> Path:
    return tmp_path / "gateway"


def test_reload_keeps_calls_on_their_rules_and_a_broken_file_changes_nothing(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    old = sipp("phone_answer", keys={"answer_ms": 200}).start()
    new = sipp("phone_answer", calls=2, keys={"answer_ms": 200}).start()
    with GatewayProcess(gateway_dir, rules_ringing(old)) as gateway:
        first = sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 4000}).start()
        wait_for(lambda: "audio bridged" in gateway.log, "answered first call", gateway)

        save_like_an_editor(gateway.rules_path, rules_ringing(new))
        wait_for(lambda: "rules reloaded" in gateway.log, "reload", gateway)
        first.wait().assert_success()
        assert old.wait().received("BYE"), "the call in progress did not end normally"

        sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 300}).start().wait()
        broken = rules_ringing(old).replace("timeout: 5s", "timeout: 5x", 1)
        save_like_an_editor(gateway.rules_path, broken)
        wait_for(lambda: "rules not reloaded" in gateway.log, "rejection", gateway)
        sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 300}).start().wait()
        new.wait().assert_success(calls=2)

        rejected = [line for line in gateway.log.splitlines() if "rules not reloaded" in line]
        assert (
            f"{gateway.rules_path}:9: routes[0].steps[0].timeout: invalid duration" in rejected[0]
        )
        published = [line for line in gateway.log.splitlines() if "event rules.loaded" in line]
        assert '"error": null' in published[0]
        assert '"error": null' in published[1], "the valid file was not reported as loaded"
        assert "invalid duration '5x'" in published[2], "the broken file was not published"
        assert count(gateway, "rules reloaded") == 1, "the broken file replaced the rules"
    gateway.assert_clean_exit()


def test_a_reload_naming_a_missing_greeting_or_a_box_without_address_is_refused(
    gateway_dir: Path,
) -> None:
    rules = (
        'version: 1\ntargets:\n  desk: {uri: "sip:desk@127.0.0.1:9"}\n'
        "voicemail:\n  main: {email: office@example.com}\n"
        "routes:\n  - name: line\n"
        f'    match: {{to: "{CALLED}"}}\n    steps: [{{ring: desk}}, {{voicemail: main}}]\n'
    )
    missing = rules.replace("{email:", "{greeting: greetings/main.wav, email:")
    with GatewayProcess(gateway_dir, rules) as gateway:
        save_like_an_editor(gateway.rules_path, missing)
        wait_for(lambda: "rules not reloaded" in gateway.log, "rejection", gateway)
        assert (
            f"{gateway.rules_path}:5: voicemail.main.greeting: "
            "greeting file 'greetings/main.wav' not found"
        ) in gateway.log
        nobody = f"{gateway.rules_path}:5: voicemail.main.email: a voicemail box needs"
        save_like_an_editor(gateway.rules_path, rules.replace("{email: office@example.com}", "{}"))
        wait_for(lambda: nobody in gateway.log, "rejection of a box without address", gateway)
        assert count(gateway, "rules reloaded") == 0, "a broken file was loaded"
    gateway.assert_clean_exit()


async def send(broker: Mosquitto, topic: str, payload: str) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.publish(topic, payload, qos=1)


def test_mqtt_mode_force_backup_skips_the_main_line_until_switched_back(
    sipp: SippFactory, gateway_dir: Path, broker: Mosquitto
) -> None:
    main = sipp("phone_answer", keys={"answer_ms": 200}).start()
    backup = sipp("phone_answer", keys={"answer_ms": 200}).start()
    env = {"SIP_FAILOVER_MQTT__URL": broker.url, "SIP_FAILOVER_GATEWAY_ID": "gw"}
    with GatewayProcess(gateway_dir, rules_ringing(main, backup), env=env) as gateway:
        wait_for(lambda: "MQTT connected" in gateway.log, "MQTT connection", gateway)
        switched = "mode force-backup (set by mqtt)"
        for _ in range(20):  # the subscription to cmd/# follows the connection: resend
            asyncio.run(send(broker, "sip-failover/gw/cmd/mode", "force-backup"))
            if wait_until(lambda: switched in gateway.log, 0.5):
                break
        wait_for(lambda: switched in gateway.log, "mode switch", gateway)
        sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 300}).start().wait()
        backup.wait().assert_success()
        assert not main.collect().received(), "the main line was rung in force-backup"

        asyncio.run(send(broker, "sip-failover/gw/cmd/mode", ""))
        wait_for(lambda: "mode normal (set by file)" in gateway.log, "mode cleared", gateway)
        sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 300}).start().wait()
        main.wait().assert_success()
        events = [line for line in gateway.log.splitlines() if "event rules.mode" in line]
        assert [json.loads(line.split("event rules.mode ", 1)[1]) for line in events] == [
            {"mode": "normal", "source": "file"},  # at start
            {"mode": "force-backup", "source": "mqtt"},
            {"mode": "normal", "source": "file"},
        ]
    gateway.assert_clean_exit()
