"""The pool (Kamailio edge + workers) measured: memory, calls per second, the edge's delay.

    .venv/bin/python benchmarks/pool.py [--workers 3] [--calls 200] [--delay-calls 100]

Uses the end-to-end test harness: a SIPp trunk (registrar, and a proxy that
challenges every INVITE, answers the main line 404 with Q.850 cause 1 and
echoes every other call), and ``sip-failover run --workers N``.

- memory: PSS (``/proc/<pid>/smaps_rollup``) of each worker, of the edge
  (Kamailio and all its children) and of the supervisor, idle; a single
  gateway's for comparison;
- calls per second: bounded SIPp runs (``-r R -m CALLS``, each call held
  50 ms), R raised until a run has a failed call; the highest R with none;
- the edge's delay: the main line marked dead by a probe, calls one after
  another; tcpdump on ``lo`` timestamps the caller's INVITE reaching the
  pool (or a single gateway) and the INVITE to the backup leaving for the
  trunk; p50/p99 of the difference, pool against single gateway.

Results go to benchmarks/results/pool.json (and are printed). Needs root
(tcpdump, SIPp's raw sockets) and Kamailio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
sys.path.insert(0, str(HERE))

from edge_pool import BACKUP, TRUNK_KEYS, failover_rules, start_pool  # noqa: E402
from gateway_process import GatewayProcess  # noqa: E402
from measures import percentile, read_pcap  # noqa: E402
from rulesets import CALLED  # noqa: E402
from sipp import Sipp  # noqa: E402

RESULTS = HERE / "results" / "pool.json"
DEAD_MAIN = "health:\n  main: {probe: call, every: 30s, down_after: 1, up_after: 1}\n"
BUSY_TRUNK = {"SIP_FAILOVER_SIP__MAX_CALLS_PER_SOURCE_PER_MINUTE": "100000"}
RATES = (4, 8, 12, 16, 20, 25, 30, 40)


class Trunk:
    """The trunk's registrar and proxy, unbounded (stopped at the end)."""

    def __init__(self, work: Path) -> None:
        self.registrar = Sipp("registrar", work, keys=TRUNK_KEYS, recv_timeout_ms=600_000,
                              calls=None, timeout_s=3600).start()  # fmt: skip
        self.proxy = Sipp("trunk_operator_auth", work, keys=TRUNK_KEYS, rtp_echo=True,
                          calls=None, timeout_s=3600).start()  # fmt: skip

    def stop(self) -> None:
        self.registrar.stop()
        self.proxy.stop()


def pss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return int(re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)[1]) / 1024  # type: ignore[index]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process under it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def pool_memory(pool: GatewayProcess) -> dict[str, object]:
    assert pool.process is not None
    workers = [int(pid) for pid in re.findall(r"worker\d+ started: pid (\d+)", pool.log)]
    edge = int(re.findall(r"kamailio pid (\d+)", pool.log)[-1])
    return {
        "worker_pss_mb": [round(pss_mb(pid), 1) for pid in workers],
        "edge_pss_mb": round(sum(pss_mb(pid) for pid in descendants(edge)), 1),
        "edge_processes": len(descendants(edge)),
        "supervisor_pss_mb": round(pss_mb(pool.process.pid), 1),
    }


def wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def call_rate(work: Path, address: str, calls: int) -> dict[str, object]:
    """The highest rate of RATES with every call of a ``calls`` run successful."""
    runs, best = [], 0
    for rate in RATES:
        caller = Sipp("caller_answered", work, remote=address, calls=calls,
                      keys={"hold_ms": 50}, timeout_s=calls / rate + 60,
                      extra=("-r", str(rate)))  # fmt: skip
        result = caller.start().wait()
        runs.append({"rate": rate, "successful": result.successful, "failed": result.failed})
        if result.failed or result.successful != calls:
            break
        best = rate
        time.sleep(2.0)  # calls of this run end, workers idle again
    return {"calls_per_run": calls, "runs": runs, "sustained_calls_per_second": best}


def edge_delay(work: Path, address: str, port: int, proxy_port: int,
               calls: int) -> dict[str, float]:  # fmt: skip
    """Caller's INVITE reaching ``port`` -> the INVITE to the backup leaving for the trunk."""
    pcap = work / f"delay-{port}.pcap"
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-U", "-s", "0", "-w", str(pcap),
                             f"udp port {port} or udp port {proxy_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1.0)
    try:
        caller = Sipp("caller_answered", work, remote=address, calls=calls,
                      keys={"hold_ms": 50}, timeout_s=calls + 60, extra=("-l", "1", "-r", "10"))
        result = caller.start().wait()
        time.sleep(0.5)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(10)
    ms = [1000 * d for d in delays(read_pcap(pcap), port, proxy_port)]
    return {"calls": calls, "successful": result.successful, "measured": len(ms),
            "p50_ms": round(statistics.median(ms), 3), "p99_ms": round(percentile(ms, 99), 3),
            "min_ms": round(min(ms), 3), "max_ms": round(max(ms), 3)}  # fmt: skip


def delays(packets: list[tuple[float, int, int, bytes]], port: int, proxy: int) -> list[float]:
    """Calls one after another: each caller INVITE to ``port``, then the first backup INVITE.

    A caller's INVITE is to the called number: a worker's leg to the edge
    (to the backup's number) goes to the same port and is not one.
    """
    out, pending, seen = [], None, set()
    backup = f"INVITE sip:{BACKUP}@".encode()
    caller = f"INVITE sip:{CALLED}@".encode()
    for stamp, _sport, dport, payload in packets:
        if dport == port and payload.startswith(caller):
            call_id = re.search(rb"Call-ID: (\S+)", payload)
            if call_id and call_id[1] not in seen:  # not a retransmission
                seen.add(call_id[1])
                pending = stamp
        elif dport == proxy and payload.startswith(backup) and pending is not None:
            out.append(stamp - pending)
            pending = None
    return out


def dead_main(gateway: GatewayProcess) -> None:
    if not wait_for(lambda: "target main is now unassigned" in gateway.log, 20):
        raise SystemExit(f"the main line was never marked dead\n{gateway.describe()}")


def single_gateway(work: Path, trunk: Trunk, delay_calls: int) -> dict[str, object]:
    gateway = GatewayProcess(work / "single", failover_rules(health=DEAD_MAIN),
                             proxy=trunk.proxy.address, registrar=trunk.registrar.address,
                             username=TRUNK_KEYS["user"], password=TRUNK_KEYS["password"],
                             env=BUSY_TRUNK).start()  # fmt: skip
    try:
        dead_main(gateway)
        time.sleep(3.0)
        assert gateway.process is not None
        memory = round(pss_mb(gateway.process.pid), 1)
        delay = edge_delay(work, gateway.address, gateway.port, trunk.proxy.port, delay_calls)
    finally:
        code = gateway.stop()
    return {"pss_mb": memory, "caller_to_backup_invite": delay, "exit": code}


def pool_run(work: Path, trunk: Trunk, workers: int, calls: int,
             delay_calls: int) -> dict[str, object]:  # fmt: skip
    from edge_pool import Trunk as PoolTrunk  # noqa: PLC0415

    pool = start_pool(work / "pool", PoolTrunk(trunk.registrar, trunk.proxy),
                      failover_rules(health=DEAD_MAIN), workers=workers)  # fmt: skip
    try:
        dead_main(pool)
        time.sleep(3.0)
        memory = pool_memory(pool)
        delay = edge_delay(work, pool.address, pool.port, trunk.proxy.port, delay_calls)
        rate = call_rate(work, pool.address, calls)
    finally:
        code = pool.stop()
    return {"workers": workers, **memory, "caller_to_backup_invite": delay, "rate": rate,
            "exit": code}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--delay-calls", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sip-failover-pool-bench-"))
    trunk = Trunk(work)
    try:
        single = single_gateway(work, trunk, args.delay_calls)
        pool = pool_run(work, trunk, args.workers, args.calls, args.delay_calls)
    finally:
        trunk.stop()
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.python_version()}",
        "load_average_at_end": os.getloadavg(),
        "pool": pool, "single_gateway": single,
    }  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
