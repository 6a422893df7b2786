"""The status feed end to end: the gateway as a process, SIPp peers, a real Mosquitto.

What a Home Assistant user or an admin sees: retained state and events on the
broker, the Last Will, a broker outage that no call notices, discovery on
demand, ``sip-failover status`` and the call-back list of ``sip-failover calls``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import signal
import time
import wave
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt
import pytest
from gateway_process import GatewayProcess, sip_failover
from mosquitto import Mosquitto, free_port

from gateway.sip.engine_limits import planned_limits
from gateway.status.calllog import CallLog

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from conftest import SippFactory
    from sipp import Sipp

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PREFIX = "sip-failover/gw1"
CALLED = "+3225550100"
WAIT = 15.0
QUIET_S = 0.5  # how long "nothing else came" is watched for
OUTAGE_S = 30.0
FAILOVER_CALL = ["call.incoming", "call.failover", "call.answered", "call.ended"]
REPO = Path(__file__).resolve().parents[2]


def _schema_checker() -> Any:
    """The unit tests' JSON-schema checker (jsonschema is not a dependency)."""
    path = REPO / "tests" / "unit" / "test_status_schemas.py"
    spec = importlib.util.spec_from_file_location("status_schema_checker", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCHEMAS = _schema_checker()


# -- the broker side ----------------------------------------------------------------


class Feed:
    """Every message an aiomqtt subscriber got, gathered in the background."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.seen: list[aiomqtt.Message] = []
        self._changed = asyncio.Event()

    async def pump(self) -> None:
        async for message in self.client.messages:
            self.seen.append(message)
            self._changed.set()

    async def until(self, check: Callable[[Feed], bool], within: float = WAIT) -> None:
        """Wait until ``check(self)`` holds; fail after ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                while not check(self):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            topics = sorted({str(m.topic) for m in self.seen})
            raise AssertionError(f"not seen in {within:.0f} s; topics seen: {topics}") from None

    async def unchanged_for(self, window: float) -> list[aiomqtt.Message]:
        """Watch ``window`` seconds for more messages; those that came (none: quiet)."""
        before = len(self.seen)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(window):
                while len(self.seen) == before:
                    self._changed.clear()
                    await self._changed.wait()
        return self.seen[before:]

    def values(self, suffix: str) -> list[bytes]:
        topic = f"{PREFIX}/{suffix}"
        return [m.payload for m in self.seen
                if str(m.topic) == topic and isinstance(m.payload, bytes)]  # fmt: skip

    def latest(self, suffix: str) -> bytes | None:
        values = self.values(suffix)
        return values[-1] if values else None

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(payload) for payload in self.values("events")]

    def call(self, caller: str) -> list[dict[str, Any]]:
        """The events of the (first) call from ``caller``."""
        events = self.events()
        ids = [e["data"]["call_id"] for e in events
               if e["kind"] == "call.incoming" and e["data"]["caller"] == caller]  # fmt: skip
        return [e for e in events if ids and e["data"].get("call_id") == ids[0]]


def ended(caller: str) -> Callable[[Feed], bool]:
    return lambda feed: any(e["kind"] == "call.ended" for e in feed.call(caller))


@asynccontextmanager
async def watching(
    broker: Mosquitto, *topics: str, client_id: str | None = None, clean: bool = True
) -> AsyncIterator[Feed]:
    client = aiomqtt.Client(
        "127.0.0.1", broker.port, identifier=client_id, clean_session=clean, timeout=5
    )
    async with client:
        for topic in topics:
            await client.subscribe(topic, qos=1)
        feed = Feed(client)
        task = asyncio.create_task(feed.pump())
        try:
            yield feed
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    folder = tmp_path / "broker"
    folder.mkdir()
    with Mosquitto(folder, persistent=True) as running:
        yield running


# -- the gateway side ---------------------------------------------------------------


def gateway_for(workdir: Path, rules: str, broker: Mosquitto | None) -> GatewayProcess:
    """The gateway as gw1; mail goes to a closed port (voicemail is retried, never sent)."""
    env = {
        "SIP_FAILOVER_GATEWAY_ID": "gw1",
        "SIP_FAILOVER_SMTP__HOST": "127.0.0.1",
        "SIP_FAILOVER_SMTP__PORT": str(free_port()),
    }
    if broker is not None:
        env["SIP_FAILOVER_MQTT__URL"] = broker.url
    return GatewayProcess(workdir, rules, env=env)


def failover_rules(main: Sipp, backup: Sipp) -> str:
    return (
        "version: 1\ntargets:\n"
        f'  main: {{uri: "sip:main@{main.address}"}}\n'
        f'  backup: {{uri: "sip:backup@{backup.address}"}}\n'
        "routes:\n  - name: main-line\n"
        f'    match: {{to: "{CALLED}"}}\n    steps:\n'
        "      - ring: main\n        timeout: 3s\n        failover_on: [unassigned]\n"
        "      - ring: backup\n        timeout: 5s\n"
    )


async def status_file_says(
    gateway: GatewayProcess, check: Callable[[dict[str, Any]], bool]
) -> None:
    """Wait (bounded) until the gateway's status file satisfies ``check``."""
    path = gateway.workdir / "state" / "status.json"
    async with asyncio.timeout(WAIT):
        while True:
            with suppress(FileNotFoundError, ValueError):
                if check(json.loads(path.read_text(encoding="utf-8"))):
                    return
            await asyncio.sleep(0.1)


async def place(sipp: SippFactory, gateway: GatewayProcess, scenario: str, **keys: object) -> None:
    caller = sipp(scenario, remote=gateway.address, keys=keys)
    (await asyncio.to_thread(caller.start().wait)).assert_success()


def assert_schemas(feed: Feed) -> None:
    """Every retained value and event seen matches its schema in docs/schemas/."""
    schemas = {"trunk/registration": "trunk-registration", "rules": "rules",
               "last_failover": "last-failover", "mode": "mode", "engine": "engine"}  # fmt: skip
    for message in feed.seen:
        suffix = str(message.topic).removeprefix(f"{PREFIX}/")
        assert isinstance(message.payload, bytes)
        text = message.payload.decode()
        if suffix == "events":
            problems = SCHEMAS.event_errors(json.loads(text))
        elif suffix in {"availability", "calls/active"}:
            problems = SCHEMAS.errors(text, SCHEMAS.schema(suffix.replace("/", "-")))
        elif suffix.startswith("target/") and suffix.endswith("/health"):
            problems = SCHEMAS.errors(json.loads(text), SCHEMAS.schema("target-health"))
        else:
            problems = SCHEMAS.errors(json.loads(text), SCHEMAS.schema(schemas[suffix]))
        assert problems == [], f"{message.topic}: {text}"


# -- the tests ---------------------------------------------------------------------


async def test_start_state_and_a_failover_call_on_the_feed(
    broker: Mosquitto, sipp: SippFactory, tmp_path: Path
) -> None:
    main = sipp("phone_reject_reason", keys={"code": 404, "cause": 1}).start()
    backup = sipp("phone_answer", keys={"answer_ms": 200}).start()
    gateway = gateway_for(tmp_path / "gateway", failover_rules(main, backup), broker)
    async with watching(broker, f"{PREFIX}/#") as feed:
        await asyncio.to_thread(gateway.start)
        try:
            await feed.until(lambda f: f.latest("availability") == b"online"
                             and bool(f.values("trunk/registration"))
                             and bool(f.values("rules"))
                             and bool(f.values("engine")))  # fmt: skip
            rules = json.loads(feed.values("rules")[-1])
            engine = json.loads(feed.values("engine")[-1])
            assert rules["sha256"] == hashlib.sha256(gateway.rules_path.read_bytes()).hexdigest()
            assert rules["error"] is None
            await place(sipp, gateway, "caller_answered", cli="+32470111111", hold_ms=500)
            await feed.until(
                lambda f: ended("+32470111111")(f) and f.latest("calls/active") == b"0"
            )
            await status_file_says(gateway, lambda s: s["last_failover"] is not None
                                   and s["calls_active"] == 0)  # fmt: skip
            shown = sip_failover(gateway, "status")
        finally:
            await asyncio.to_thread(gateway.stop)
        await feed.until(lambda f: f.latest("availability") == b"offline")
    gateway.assert_clean_exit()

    call = [e for e in feed.call("+32470111111") if e["kind"] in FAILOVER_CALL]
    assert [e["kind"] for e in call] == FAILOVER_CALL
    failover = call[1]["data"]
    assert (failover["outcome"], failover["sip_code"], failover["q850"]) == ("unassigned", 404, 1)
    assert (call[2]["data"]["target"], call[3]["data"]["result"]) == ("backup", "answered")
    active = feed.values("calls/active")
    assert active.index(b"1") < len(active) - 1, f"calls/active went {active}"
    assert_schemas(feed)

    assert shown.returncode == 0, shown.stderr
    assert rules["sha256"] in shown.stdout
    assert "availability   online (MQTT connected)" in shown.stdout
    assert "active calls   0" in shown.stdout
    # The engine's limits as read from the pjsua2 this gateway runs on (4 with the wheel).
    assert engine["call_slots"] == planned_limits().call_slots
    assert engine["call_legs"] == engine["call_slots"] - 1
    slots = f"SIP engine     {engine['call_slots']} call slots ({engine['call_legs']} for calls)"
    assert slots in shown.stdout
    assert "main -> backup (unassigned, SIP 404, Q.850 1)" in shown.stdout
    assert {"main", "backup"} <= {line.split()[0] for line in shown.stdout.splitlines()}
    stopped = sip_failover(gateway, "status")
    assert (stopped.returncode, stopped.stdout) == (1, "")
    assert "not running (stopped at" in stopped.stderr


async def test_home_assistant_online_makes_the_gateway_republish_discovery(
    broker: Mosquitto, sipp: SippFactory, tmp_path: Path
) -> None:
    main, backup = sipp("phone_answer"), sipp("phone_answer")  # never started: names only
    gateway = gateway_for(tmp_path / "gateway", failover_rules(main, backup), broker)
    with gateway:
        await status_file_says(gateway, lambda s: s["mqtt"] == "connected")
        async with watching(broker, "homeassistant/+/+/+/config") as configs:
            # 6 gateway entities, 2 per target: retained, so a late subscriber has them.
            await configs.until(lambda f: len(f.seen) >= 10)
            # Anything else would come now, before HA speaks: watch a while.
            extra = await configs.unchanged_for(QUIET_S)
            assert not extra, f"unasked within {QUIET_S} s: {[str(m.topic) for m in extra]}"
            await configs.client.publish("homeassistant/status", b"online", qos=1)
            await configs.until(lambda f: len(f.seen) >= 20)
    gateway.assert_clean_exit()
    first, again = configs.seen[:10], configs.seen[10:]
    assert all(m.retain for m in first)
    assert not any(m.retain for m in again), "no fresh publish after HA said online"
    assert {str(m.topic): m.payload for m in again} == {str(m.topic): m.payload for m in first}


async def test_the_mode_is_switched_from_the_home_assistant_select(
    broker: Mosquitto, sipp: SippFactory, tmp_path: Path
) -> None:
    main, backup = sipp("phone_answer"), sipp("phone_answer")  # never started: names only
    gateway = gateway_for(tmp_path / "gateway", failover_rules(main, backup), broker)
    select = "homeassistant/select/sip_failover_gw1/mode/config"
    with gateway:
        # Connected means cmd/# is subscribed: the gateway subscribes before it says so.
        await status_file_says(gateway, lambda s: s["mqtt"] == "connected")
        async with watching(broker, select, f"{PREFIX}/mode") as feed:
            await feed.until(lambda f: f.latest("mode") is not None
                             and any(str(m.topic) == select for m in f.seen))  # fmt: skip
            config = json.loads(next(m.payload for m in feed.seen if str(m.topic) == select))
            assert config["state_topic"] == f"{PREFIX}/mode"
            assert json.loads(feed.latest("mode") or b"")["source"] == "file"
            # What Home Assistant does when "force-backup" is chosen on the dashboard.
            await feed.client.publish(config["command_topic"], b"force-backup", qos=1)
            await feed.until(lambda f: json.loads(f.latest("mode") or b"")["source"] == "mqtt")
        async with watching(broker, f"{PREFIX}/mode") as late:
            await late.until(lambda f: bool(f.seen))
        await status_file_says(gateway, lambda s: (s["mode"] or {}).get("source") == "mqtt")
        shown = sip_failover(gateway, "status", "--json")
        text = sip_failover(gateway, "status")
    gateway.assert_clean_exit()
    retained = json.loads(late.seen[0].payload)  # type: ignore[arg-type]
    assert late.seen[0].retain
    assert SCHEMAS.errors(retained, SCHEMAS.schema("mode")) == []
    assert (retained["mode"], retained["source"]) == ("force-backup", "mqtt")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["mode"] == retained
    assert f"mode           force-backup (set over MQTT since {retained['since']})" in text.stdout


async def test_killed_gateway_leaves_its_last_will(
    broker: Mosquitto, sipp: SippFactory, tmp_path: Path
) -> None:
    main, backup = sipp("phone_answer"), sipp("phone_answer")
    gateway = gateway_for(tmp_path / "gateway", failover_rules(main, backup), broker)
    async with watching(broker, f"{PREFIX}/availability") as feed:
        with gateway:
            await feed.until(lambda f: f.latest("availability") == b"online")
            assert sip_failover(gateway, "status").returncode == 0
            assert gateway.process is not None
            gateway.process.send_signal(signal.SIGKILL)
            await feed.until(lambda f: f.latest("availability") == b"offline")
    async with watching(broker, f"{PREFIX}/availability") as late:
        await late.until(lambda f: bool(f.seen))
    assert (late.seen[0].payload, late.seen[0].retain) == (b"offline", True)
    shown = sip_failover(gateway, "status")
    assert shown.returncode == 1
    assert "not running" in shown.stderr
    assert "is gone" in shown.stderr


async def test_broker_outage_leaves_calls_alone_and_the_feed_catches_up(
    broker: Mosquitto, sipp: SippFactory, tmp_path: Path
) -> None:
    main = sipp("phone_reject_reason", keys={"code": 404, "cause": 1}, calls=2, timeout_s=60)
    backup = sipp("phone_answer", keys={"answer_ms": 200}, calls=2, timeout_s=60)
    gateway = gateway_for(
        tmp_path / "gateway", failover_rules(main.start(), backup.start()), broker
    )
    # A persistent session: the broker keeps for "watch" what comes while it is away.
    async with watching(broker, f"{PREFIX}/#", client_id="watch", clean=False):
        pass
    with gateway:
        async with watching(broker, client_id="watch", clean=False) as feed:
            await feed.until(lambda f: f.latest("availability") == b"online")
            talking = sipp("caller_answered", remote=gateway.address,
                           keys={"cli": "+32470000001", "hold_ms": 3000}).start()  # fmt: skip
            await feed.until(lambda f: any(e["kind"] == "call.answered"
                                           for e in f.call("+32470000001")))  # fmt: skip
        await asyncio.to_thread(broker.stop)
        outage = time.monotonic()
        (await asyncio.to_thread(talking.wait)).assert_success()
        await place(sipp, gateway, "caller_answered", cli="+32470000002", hold_ms=500)
        await status_file_says(gateway, lambda s: s["mqtt"] == "disconnected"
                               and s["last_failover"] is not None
                               and s["calls_active"] == 0)  # fmt: skip
        await asyncio.sleep(OUTAGE_S - (time.monotonic() - outage))
        await asyncio.to_thread(broker.start)
        async with watching(broker, client_id="watch", clean=False) as feed:
            await feed.until(ended("+32470000002"), within=WAIT + 10)
        async with watching(broker, f"{PREFIX}/#") as retained:
            await retained.until(lambda f: f.latest("availability") == b"online"
                                 and bool(f.values("last_failover"))
                                 and f.latest("calls/active") == b"0")  # fmt: skip
    gateway.assert_clean_exit()
    main.wait().assert_success(calls=2)
    backup.wait().assert_success(calls=2)
    during = feed.call("+32470000002")
    assert [e["kind"] for e in during if e["kind"] in FAILOVER_CALL] == FAILOVER_CALL
    ended_ids = {e["data"]["call_id"] for e in feed.events() if e["kind"] == "call.ended"}
    assert len(ended_ids) == 2, "the call that ended during the outage was not delivered"
    last = json.loads(retained.values("last_failover")[-1])
    assert last["call_id"] == during[0]["data"]["call_id"]


def greeting(path: Path, seconds: float = 0.3) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * int(8000 * seconds))


def callback_rules(desk: Sipp, far: Sipp) -> str:
    return (
        "version: 1\ntargets:\n"
        f'  desk: {{uri: "sip:desk@{desk.address}"}}\n'
        f'  far: {{uri: "sip:far@{far.address}"}}\n'
        "voicemail:\n  office: {greeting: greeting.wav, email: nobody@example.invalid,"
        " min_seconds: 0.5}\n"
        "routes:\n"
        '  - {name: desk, match: {to: "+3225550101"}, steps: [{ring: desk, timeout: 5s}]}\n'
        '  - {name: messages, match: {to: "+3225550102"}, steps: [{voicemail: office}]}\n'
        '  - {name: far, match: {to: "+3225550103"}, steps: [{ring: far, timeout: 20s}]}\n'
    )


async def test_calls_missed_lists_whom_to_call_back(sipp: SippFactory, tmp_path: Path) -> None:
    desk = sipp("phone_answer", keys={"answer_ms": 200}, timeout_s=60).start()
    far = sipp("phone_ring_forever", calls=3, timeout_s=60).start()
    gateway = gateway_for(tmp_path / "gateway", callback_rules(desk, far), None)
    (tmp_path / "gateway").mkdir()
    greeting(tmp_path / "gateway" / "greeting.wav")
    anna, bert, carl = "+32470000011", "+32470000022", "+32470000033"
    with gateway:
        await place(sipp, gateway, "caller_cancels", cli=anna, dial="+3225550103", ring_ms=300)
        await place(sipp, gateway, "caller_answered", cli=bert, dial="+3225550102", hold_ms=2500)
        await place(sipp, gateway, "caller_cancels", cli=carl, dial="+3225550103", ring_ms=300)
        await place(sipp, gateway, "caller_answered", cli=anna, dial="+3225550101", hold_ms=300)
        await place(sipp, gateway, "caller_cancels", cli=carl, dial="+3225550103", ring_ms=300)
        await logged(gateway, calls=5)
        missed = sip_failover(gateway, "calls", "--missed")
        table = sip_failover(gateway, "calls", "--since", "24h")
        missed_json = sip_failover(gateway, "calls", "--missed", "--json")
        calls_json = sip_failover(gateway, "calls", "--json")
    gateway.assert_clean_exit()
    assert missed.returncode == 0, missed.stderr
    rows = [line.split() for line in missed.stdout.splitlines()[1:]]
    assert [(row[0], row[1]) for row in rows] == [(carl, "2"), (bert, "1")], missed.stdout
    assert rows[0][-1] == "abandoned"
    assert rows[1][-2] == "voicemail", "the message's id is not listed"
    assert table.returncode == 0, table.stderr
    assert len(table.stdout.splitlines()) == 1 + 5
    owed = [json.loads(line) for line in missed_json.stdout.splitlines()]
    assert [(m["caller"], m["attempts"]) for m in owed] == [(carl, 2), (bert, 1)], owed
    logged_calls = [json.loads(line) for line in calls_json.stdout.splitlines()]
    assert [c["caller"] for c in logged_calls] == [carl, anna, carl, bert, anna]
    assert all(c["steps"] for c in logged_calls), "a call without its steps"


async def logged(gateway: GatewayProcess, calls: int) -> None:
    """Wait (bounded) until the call log holds ``calls`` ended calls."""
    path = gateway.workdir / "state" / "calls.sqlite3"
    async with asyncio.timeout(WAIT):
        while True:
            log = CallLog(path, read_only=True)
            try:
                done = [r for r in log.calls() if r.result is not None]
            finally:
                log.close()
            if len(done) >= calls:
                return
            await asyncio.sleep(0.1)
