"""Stopping the gateway: on SIGTERM it ends within its bound, whatever its peers do.

What systemd sees (``TimeoutStopSec``): exit 0 in seconds, never a hang that
ends in SIGKILL, never an abort; the trunk unregistered and MQTT saying
``offline`` on the way out.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

import aiomqtt
import pytest
from gateway_process import GatewayProcess
from rulesets import one_phone
from sipp import LOOPBACK

from gateway.status.calllog import CallLog

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from conftest import SippFactory
    from mosquitto import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PREFIX = "sip-failover/gw1"
WAIT = 15.0
STOP_WITHIN = 15.0  # what the gateway needs at most with no call up


class Retained:
    """The latest payload per topic under the gateway's prefix, kept up to date."""

    def __init__(self) -> None:
        self.latest: dict[str, bytes] = {}
        self.changed = asyncio.Event()

    async def until(self, suffix: str, part: bytes, within: float = WAIT) -> None:
        """Wait until the latest payload of ``suffix`` contains ``part``."""
        try:
            async with asyncio.timeout(within):
                while part not in self.latest.get(suffix, b""):
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"{suffix} never showed {part!r}: {self.latest}") from None


@asynccontextmanager
async def watching(broker: Mosquitto) -> AsyncIterator[Retained]:
    seen = Retained()

    async def pump(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if isinstance(message.payload, bytes):
                seen.latest[str(message.topic).removeprefix(f"{PREFIX}/")] = message.payload
                seen.changed.set()

    async with aiomqtt.Client("127.0.0.1", broker.port, timeout=5) as client:
        await client.subscribe(f"{PREFIX}/#", qos=1)
        task = asyncio.create_task(pump(client))
        try:
            yield seen
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


def timed_stop(gateway: GatewayProcess) -> float:
    """SIGTERM; the seconds until the gateway exited (it is killed after 15 s)."""
    started = time.monotonic()
    gateway.stop()
    return time.monotonic() - started


async def test_a_registered_gateway_on_mqtt_stops_promptly_and_says_offline(
    broker: Mosquitto, sipp: SippFactory, tmp_path: Path
) -> None:
    # The un-REGISTER's answer is published on MQTT while the feed is being
    # stopped: a stop that arrives with a PUBACK still outstanding must not be
    # lost (that hang is what systemd ended with SIGKILL after 45 s).
    registrar = sipp("registrar", recv_timeout_ms=60000, timeout_s=90).start()
    gateway = GatewayProcess(
        tmp_path / "gateway",
        one_phone("127.0.0.1:9"),
        registrar=registrar.address,
        env={"SIP_FAILOVER_GATEWAY_ID": "gw1", "SIP_FAILOVER_MQTT__URL": broker.url},
    )
    async with watching(broker) as feed:
        await asyncio.to_thread(gateway.start)
        try:
            await feed.until("availability", b"online")
            await feed.until("trunk/registration", b'"registered"')
        finally:
            took = await asyncio.to_thread(timed_stop, gateway)
        await feed.until("availability", b"offline", within=5)
    gateway.assert_clean_exit()
    assert took < STOP_WITHIN, f"stopped in {took:.1f} s\n{gateway.describe()}"
    assert "trunk registration: unregistered" in gateway.log


class SilentHost:
    """A UDP socket on loopback that takes SIP requests in and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.address = f"{LOOPBACK}:{self.sock.getsockname()[1]}"

    def first_request(self, method: str, within: float = WAIT) -> bytes:
        """The first ``method`` request that arrives (fail after ``within`` s)."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                break
            if data.startswith(method.encode()):
                return data
        raise AssertionError(f"no {method} reached the silent host in {within:.0f} s")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def silent_host() -> Iterator[SilentHost]:
    host = SilentHost()
    yield host
    host.close()


def test_sigterm_with_an_options_probe_unanswered_exits_cleanly(
    silent_host: SilentHost, tmp_path: Path
) -> None:
    # pjsip keeps the OPTIONS transaction up to timer F (32 s); tearing the
    # engine down under it used to abort the process (pjsua_acc.c assert).
    rules = (
        one_phone(silent_host.address)
        + "health:\n  phone: {probe: options, every: 1s, down_after: 2}\n"
    )
    with GatewayProcess(tmp_path / "gateway", rules) as gateway:
        silent_host.first_request("OPTIONS")
        took = timed_stop(gateway)
    gateway.assert_clean_exit()
    assert took < STOP_WITHIN, f"stopped in {took:.1f} s\n{gateway.describe()}"


def test_sigterm_while_the_register_is_in_flight_still_unregisters(
    sipp: SippFactory, tmp_path: Path
) -> None:
    # pjsua refuses a second REGISTER while one is unanswered ("Object is
    # busy"): the un-REGISTER must go once that one is answered.
    registrar = sipp(
        "registrar_slow", keys={"answer_ms": 2000}, recv_timeout_ms=8000, timeout_s=30
    ).start()
    with GatewayProcess(
        tmp_path / "gateway", one_phone("127.0.0.1:9"), registrar=registrar.address
    ) as gateway:
        deadline = time.monotonic() + WAIT
        # the challenged REGISTER, then the one with credentials (held 2 s)
        while len(registrar.collect().received("REGISTER")) < 2:
            assert time.monotonic() < deadline, registrar.collect().describe()
            time.sleep(0.05)
        took = timed_stop(gateway)
    gateway.assert_clean_exit()
    assert took < STOP_WITHIN, f"stopped in {took:.1f} s\n{gateway.describe()}"
    expires = [m.header("Expires") for m in registrar.wait().received("REGISTER")]
    assert "0" in expires, f"no un-REGISTER (Expires: {expires})\n{gateway.describe()}"


def test_a_second_sigterm_skips_the_grace_period(sipp: SippFactory, tmp_path: Path) -> None:
    phone = sipp("phone_answer", keys={"answer_ms": 200}).start()
    with GatewayProcess(tmp_path / "gateway", one_phone(phone.address, timeout="10s")) as gateway:
        caller = sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 25000})
        caller.timeout_s = 40
        caller.start()
        deadline = time.monotonic() + WAIT
        while "call.answered" not in gateway.log:
            assert time.monotonic() < deadline, gateway.describe()
            time.sleep(0.05)
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGTERM)  # the call may finish: 30 s of grace
        while "stopping: no new calls; 1 in progress" not in gateway.log:
            assert time.monotonic() < deadline + WAIT, gateway.describe()
            time.sleep(0.05)
        assert gateway.process.poll() is None, "the grace period did not hold the call"
        took = timed_stop(gateway)  # the admin insists
    gateway.assert_clean_exit()
    assert took < 5.0, f"second SIGTERM took {took:.1f} s\n{gateway.describe()}"
    assert caller.wait().received("BYE"), "the caller was not hung up on"
    log = CallLog(gateway.workdir / "state" / "calls.sqlite3", read_only=True)
    try:
        (call,) = log.calls()
    finally:
        log.close()
    assert (call.result, call.duration is not None) == ("answered", True), call  # ended by the stop
