"""The pool on one machine: Kamailio as the edge, gateway workers behind it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import signal
import socket
import time
from datetime import datetime
from typing import TYPE_CHECKING

import aiomqtt
import netns
import pytest
from edge_pool import (
    BACKUP,
    MAIN,
    TRUNK_KEYS,
    failover_rules,
    needs_kamailio,
    start_pool,
    start_trunk,
)
from gateway_process import sip_failover
from mosquitto import Mosquitto
from rulesets import CALLED
from sipp import DEFAULT_KEYS, LOOPBACK, RtpSink

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import SippFactory
    from mailserver import MailServer

# alone: Kamailio and three workers, callers at once, a flood: the heaviest load in the suite.
pytestmark = [pytest.mark.integration, pytest.mark.alone]
VOICED_PACKETS = 3  # the first seconds of the recording are mostly pauses


def test_six_callers_at_once_each_reach_a_backup_through_the_edge(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    needs_kamailio()
    callers = 6
    trunk = start_trunk(sipp, legs=2 * callers)
    pool = start_pool(gateway_dir, trunk, failover_rules(), workers=6,
                      env={"SIP_FAILOVER_TRUNK__ASSERT_IDENTITY": "true"})  # fmt: skip
    try:
        caller = sipp("caller_answered", remote=pool.address, calls=callers,
                      keys={"hold_ms": 4000}, extra=["-r", "20", "-l", str(callers)])  # fmt: skip
        with RtpSink(caller.rx_port) as sink:
            called = caller.start().wait()
            sink.drain()
        called.assert_success(callers)
        legs = trunk.proxy.wait()
    finally:
        trunk.stop()
        code = pool.stop()
    assert code == 0, pool.describe()
    # Speech came back from six far ends: every
    # caller was bridged both ways, the backup echoing what the caller said.
    voiced = sink.voiced_by_sender()
    assert sum(1 for n in voiced.values() if n >= VOICED_PACKETS) == callers, (
        f"voiced packets by sender: {voiced}\n{pool.describe()}"
    )
    # The trunk saw every leg from the edge, with the trunk's credentials.
    invites = legs.received("INVITE")
    edge_via = f"SIP/2.0/UDP {pool.address}"
    assert all((m.header("Via") or "").startswith(edge_via) for m in invites), legs.describe()
    authorised = [m for m in invites if m.header("Authorization")]
    numbers = sorted(m.first_line.split()[1].split("@")[0] for m in authorised)
    assert numbers == sorted([f"sip:{MAIN}"] * callers + [f"sip:{BACKUP}"] * callers)
    # Whoever answers sees who is calling: the caller-ID headers a single
    # gateway sends (phone_checks_caller's expectations) pass the edge unchanged.
    for invite in authorised:
        for header, key in (("From", "from_re"), ("P-Asserted-Identity", "pai_re"),
                            ("Diversion", "redirect_re")):  # fmt: skip
            assert re.search(DEFAULT_KEYS[key], invite.header(header) or "", re.MULTILINE), (
                f"{header} rewritten on the way out\n{invite.text}"
            )
    registered = trunk.registrar.collect().sent(status=200)
    assert registered, f"the edge never registered\n{trunk.registrar.collect().describe()}"
    assert "trunk registration: registered" in pool.log
    assert TRUNK_KEYS["password"] not in pool.log, "the trunk password reached the log"


def _pid_of(log: str, worker: str) -> int:
    """The pid of ``worker``'s latest start, from the supervisor's log."""
    started = re.findall(rf"{worker} started: pid (\d+)", log)
    assert started, f"{worker} never started\n{log[-3000:]}"
    return int(started[-1])


def _wait_for(condition: Callable[[], bool], seconds: float) -> float:
    """Poll ``condition`` for at most ``seconds``; return how long it took (inf: never)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if condition():
            return time.monotonic() - start
        time.sleep(0.05)
    return math.inf


def test_a_killed_worker_is_restarted_and_callers_reach_the_others(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    needs_kamailio()
    trunk = start_trunk(sipp, legs=2 * 3)
    pool = start_pool(gateway_dir, trunk, failover_rules(), workers=4)
    try:
        talking = sipp("caller_answered", remote=pool.address, keys={"hold_ms": 6000}).start()
        busy = _wait_for(lambda: "event call.answered" in pool.log, 10)
        assert busy < math.inf, pool.describe()
        carrier = re.findall(r"(worker\d)\| [^\n]*event call.answered", pool.log)[0]
        victim = next(w for w in ("worker1", "worker2", "worker3", "worker4") if w != carrier)
        os.kill(_pid_of(pool.log, victim), signal.SIGKILL)
        killed_at = time.monotonic()
        # Placed while the victim is down: two workers are free, and both callers
        # reach a backup, whichever worker the edge tried first.
        gap = sipp("caller_answered", remote=pool.address, calls=2, keys={"hold_ms": 1000},
                   extra=["-r", "10", "-l", "2"]).start()  # fmt: skip
        restarted = _wait_for(lambda: len(re.findall(f"{victim} started", pool.log)) == 2, 5)
        gap.wait().assert_success(2)
        talking.wait().assert_success()
    finally:
        trunk.stop()
        code = pool.stop()
    assert restarted < math.inf, f"{victim} not restarted within 5 s\n{pool.describe()}"
    assert time.monotonic() - killed_at > restarted
    assert code == 0, pool.describe()


FLOOD_SOURCE = "127.0.0.2"  # not the trunk; only inside a namespace of the test's own
FLOOD_CALLER = "+32499999999"


def _flood(target: tuple[str, int], per_second: int, seconds: float) -> int:
    """INVITEs from FLOOD_SOURCE at ``per_second`` for ``seconds``; returns how many."""
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((FLOOD_SOURCE, 0))
        port = sock.getsockname()[1]
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            while sent < elapsed * per_second:
                sock.sendto(_invite(target, port, sent), target)
                sent += 1
            time.sleep(0.005)
    return sent


def _invite(target: tuple[str, int], port: int, n: int) -> bytes:
    host = f"{target[0]}:{target[1]}"
    return (
        f"INVITE sip:{CALLED}@{host} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {FLOOD_SOURCE}:{port};branch=z9hG4bKflood{n}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{FLOOD_CALLER}@{FLOOD_SOURCE}>;tag=flood{n}\r\n"
        f"To: <sip:{CALLED}@{host}>\r\n"
        f"Call-ID: flood-{n}@{FLOOD_SOURCE}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:{FLOOD_CALLER}@{FLOOD_SOURCE}:{port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_a_flood_from_a_stranger_never_reaches_a_worker(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    needs_kamailio()
    if not netns.available():
        pytest.skip("needs root and iproute2 (a network namespace for the flood's address)")
    calls = 30
    with netns.isolated_network():
        trunk = start_trunk(sipp, legs=2 * calls)
        pool = start_pool(gateway_dir, trunk, failover_rules(), workers=2)
        try:
            legit = sipp("caller_answered", remote=pool.address, calls=calls,
                         keys={"hold_ms": 300}, extra=["-r", "1"], timeout_s=60)  # fmt: skip
            legit.start()
            flooded = _flood((LOOPBACK, pool.port), per_second=200, seconds=30)
            legit.wait().assert_success(calls)
        finally:
            trunk.stop()
            code = pool.stop()
    assert flooded >= 5900
    assert code == 0, pool.describe()
    worker_lines = [line for line in pool.log.splitlines() if line.startswith("worker")]
    assert not [line for line in worker_lines if FLOOD_CALLER in line or FLOOD_SOURCE in line]
    assert len([line for line in worker_lines if "event call.incoming" in line]) == calls
    assert "restarting" not in pool.log, pool.describe()


_LOG_TIME = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)"
HEARD_DEAD = r'health from the pool: \{[^\n]*"main": "unassigned"'  # a worker's log line


def _at(log: str, pattern: str) -> list[datetime]:
    """When each line of ``log`` matching ``pattern`` (after its time stamp) was written."""
    return [datetime.fromisoformat(t) for t in re.findall(rf"{_LOG_TIME} \w+\s+{pattern}", log)]


def _first_heard(log: str) -> dict[str, datetime]:
    """When each worker first logged that main is dead."""
    first: dict[str, datetime] = {}
    for worker, at in re.findall(rf"(worker\d)\| {_LOG_TIME} \w+\s+{HEARD_DEAD}", log):
        first.setdefault(worker, datetime.fromisoformat(at))
    return first


def test_the_pool_probes_once_per_interval_and_every_worker_skips_a_dead_main_line(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    needs_kamailio()
    every, workers = 2.0, 3
    health = "health:\n  main: {probe: call, every: 2s, down_after: 1, up_after: 1}\n"
    trunk = start_trunk(sipp, legs=200)
    pool = start_pool(gateway_dir, trunk, failover_rules(health=health), workers=workers)
    try:
        dead = _wait_for(lambda: "target main is now unassigned" in pool.log, 15)
        assert dead < math.inf, pool.describe()
        told = _wait_for(lambda: len(_first_heard(pool.log)) == workers, 5)
        # One caller per worker at once: each worker takes one (a second would
        # leave it no leg to ring), and each goes straight to the backup.
        callers = sipp("caller_answered", remote=pool.address, calls=workers,
                       keys={"hold_ms": 1500}, extra=["-r", "20", "-l", str(workers)])  # fmt: skip
        callers.start().wait().assert_success(workers)
    finally:
        trunk.stop()
        code = pool.stop()
    assert code == 0, pool.describe()
    assert told < math.inf, f"not every worker heard main is dead\n{pool.describe()}"
    # Every worker had main's death within 1 s of the control process finding it.
    found = _at(pool.log, "target main is now unassigned")[0]
    heard = _first_heard(pool.log)
    assert all((at - found).total_seconds() < 1.0 for at in heard.values()), (found, heard)
    # The operator saw the probes of one gateway: one per interval, not one per worker.
    invites = [m for m in trunk.proxy.collect().received("INVITE") if m.header("Authorization")]
    to_main = [m for m in invites if m.first_line.split()[1].startswith(f"sip:{MAIN}@")]
    # A probe's result, once it ran (a worker with no leg free passes it on).
    probes = _at(pool.log, r"probe of main: ")
    assert len(to_main) == len(probes), "a caller rang the dead main line"
    # n probes one interval (less 10% jitter) apart span at least (n - 1) intervals.
    span = (probes[-1] - probes[0]).total_seconds()
    assert len(probes) <= span / (0.9 * every) + 1, (probes, pool.describe())
    # Each worker took one caller, who rang only the backup.
    for n in range(1, workers + 1):
        legs = re.findall(rf"worker{n}\| [^\n]*event call\.leg (\{{[^\n]*)", pool.log)
        assert legs, f"worker{n} took no caller\n{pool.describe()}"
        assert all('"target": "backup"' in leg for leg in legs), legs


def test_twelve_callers_on_three_workers_are_bridged_or_take_a_voicemail_or_get_503(
    sipp: SippFactory, gateway_dir: Path, mail: MailServer, tmp_path: Path
) -> None:
    needs_kamailio()
    mail.start()
    broker = Mosquitto(tmp_path)
    broker.start()
    workers, crowd = 3, 12
    numbers = [f"+3247110{n:04d}" for n in range(crowd)]
    inf = gateway_dir / "callers.csv"
    inf.parent.mkdir(parents=True, exist_ok=True)
    inf.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in numbers))
    trunk = start_trunk(sipp, legs=200)
    feed = {"SIP_FAILOVER_MQTT__URL": broker.url, "SIP_FAILOVER_GATEWAY_ID": "pool"}
    pool = start_pool(gateway_dir, trunk, failover_rules(voicemail=True), workers=workers,
                      env={**mail.env(), **feed})  # fmt: skip
    status = gateway_dir / "state" / "status.json"
    try:
        callers = sipp("caller_either", remote=pool.address, calls=crowd, keys={"hold_ms": 4000},
                       extra=["-r", "100", "-l", str(crowd), "-inf", str(inf)]).start()  # fmt: skip
        # While they talk: 3 bridged callers hold 2 legs each, 3 voicemails 1.
        full = _wait_for(lambda: (json.loads(status.read_text()).get("slots") or {})
                         .get("in_use") == 9, 4)  # fmt: skip
        shown = sip_failover(pool, "status")
        callers.wait().assert_success(crowd)
        mailed = _wait_for(lambda: len(mail.inbox.accepted) >= workers, 20)
        retained = asyncio.run(_retained(broker))
    finally:
        trunk.stop()
        code = pool.stop()
        broker.stop()
    assert code == 0, pool.describe()
    assert full < math.inf, f"{json.loads(status.read_text()).get('slots')}\n{pool.describe()}"
    assert "call legs      9 in use, 0 free (worker1 3/3, worker2 3/3, worker3 3/3)" in shown.stdout
    # One call log for the pool: every caller, with how the call ended.
    calls = [json.loads(line) for line in sip_failover(pool, "calls", "--json").stdout.splitlines()]
    results = sorted(c["result"] for c in calls)
    assert results == ["answered"] * 3 + ["refused"] * 6 + ["voicemail"] * 3, pool.describe()
    refused = [c for c in calls if c["result"] == "refused"]
    assert all(c["called"] == CALLED and c["sip_code"] == 503 for c in refused), refused
    # The call-back list: exactly the callers who spoke to nobody.
    owed = [json.loads(line) for line in
            sip_failover(pool, "calls", "--missed", "--json").stdout.splitlines()]  # fmt: skip
    spoke = {c["caller"] for c in calls if c["result"] == "answered"}
    assert sorted(m["caller"] for m in owed) == sorted(set(numbers) - spoke)
    # Each voicemail mailed once, by the control process.
    assert mailed < math.inf, pool.describe()
    assert len(mail.inbox.accepted) == 3
    # One MQTT device for the pool, with each worker's call legs.
    assert retained["sip-failover/pool/availability"] == "online"
    assert retained["sip-failover/pool/calls/active"] == "0"
    slots = json.loads(retained["sip-failover/pool/slots"])
    assert slots["workers"] == {f"worker{n}": {"in_use": 0, "free": 3} for n in (1, 2, 3)}
    devices = {json.dumps(json.loads(payload)["device"]["identifiers"])
               for topic, payload in retained.items() if topic.startswith("homeassistant/")}
    assert len(devices) == 1, devices


async def _retained(broker: Mosquitto, quiet: float = 0.5, most: float = 5.0) -> dict[str, str]:
    """The retained messages of the pool and of its discovery, read until none came for
    ``quiet`` seconds (``most`` at the most)."""
    found: dict[str, str] = {}
    async with aiomqtt.Client("127.0.0.1", broker.port, timeout=5) as client:
        await client.subscribe("sip-failover/pool/#")
        await client.subscribe("homeassistant/#")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(most):
                while True:
                    message = await asyncio.wait_for(anext(aiter(client.messages)), quiet)
                    found[str(message.topic)] = bytes(message.payload).decode()  # type: ignore[arg-type]
    return found


def test_a_busy_trunk_is_not_banned_as_a_flood(sipp: SippFactory, gateway_dir: Path) -> None:
    needs_kamailio()
    # Each call is 3 requests from the trunk (INVITE, ACK, BYE): 4 calls a
    # second is 24 requests in 2 s, above this edge's flood threshold of 10.
    calls = 16
    trunk = start_trunk(sipp, legs=2 * calls)
    pool = start_pool(gateway_dir, trunk, failover_rules(), workers=2,
                      env={"SIP_FAILOVER_EDGE__PIKE_PER_2S": "10"})  # fmt: skip
    try:
        busy = sipp("caller_answered", remote=pool.address, calls=calls, keys={"hold_ms": 100},
                    extra=["-r", "4", "-l", "2"], timeout_s=40).start()  # fmt: skip
        result = busy.wait()
    finally:
        trunk.stop()
        code = pool.stop()
    result.assert_success(calls)
    assert "BLOCKing ip" not in pool.log, pool.describe()
    assert code == 0, pool.describe()
