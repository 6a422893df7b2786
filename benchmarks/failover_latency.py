"""Failover latency on the wire, and the gateway's idle footprint.

    .venv/bin/python benchmarks/failover_latency.py [--calls 200]

Runs the gateway as a process with SIPp peers on loopback (the end-to-end
test harness), the main line answering every INVITE with 404 + Q.850 cause 1
and the backup answering 200, and places ``--calls`` calls one after the
other. tcpdump on ``lo`` timestamps every packet in the kernel; for each call
the latency is the time from the 404 reaching the gateway's port to the
INVITE to the backup leaving it. Then the gateway idles for ``--idle``
seconds and its RSS and CPU use are read from /proc.

Results go to benchmarks/results/failover_latency.json (and are printed).
Needs root for tcpdump (Debian's tcpdump package).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

from gateway_process import GatewayProcess  # noqa: E402
from measures import failover_delays, percentile, read_pcap  # noqa: E402
from sipp import Sipp, free_udp_port  # noqa: E402

RESULTS = HERE / "results" / "failover_latency.json"


def rules(main_port: int, backup_port: int) -> str:
    return f"""version: 1
targets:
  main: {{uri: "sip:main@127.0.0.1:{main_port}"}}
  backup: {{uri: "sip:backup@127.0.0.1:{backup_port}"}}
routes:
  - name: main-line
    match: {{to: "+3225550100"}}
    steps:
      - ring: main
        timeout: 5s
      - ring: backup
        timeout: 5s
"""


def idle_footprint(pid: int, seconds: float) -> dict[str, float]:
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    before, start = cpu(), time.monotonic()
    time.sleep(seconds)
    used, elapsed = cpu() - before, time.monotonic() - start
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return {
        "idle_cpu_percent": round(100 * used / elapsed, 2),
        "idle_rss_mb": round(rss_kb / 1024, 1),
        "idle_seconds": round(elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--idle", type=float, default=30.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sip-failover-bench-"))
    main_port, backup_port = free_udp_port(), free_udp_port()
    main = Sipp("phone_reject_reason", work, port=main_port, calls=args.calls,
                keys={"code": 404, "cause": 1}, timeout_s=args.calls * 2 + 60).start()  # fmt: skip
    backup = Sipp("phone_answer", work, port=backup_port, calls=args.calls,
                  keys={"answer_ms": 0}, timeout_s=args.calls * 2 + 60).start()  # fmt: skip
    # The per-source admission limit (120 INVITEs a minute by default) would
    # refuse most of a 200-call run: a trunk that busy needs it raised.
    busy_trunk = {"SIP_FAILOVER_SIP__MAX_CALLS_PER_SOURCE_PER_MINUTE": str(args.calls * 10)}
    gateway = GatewayProcess(work, rules(main_port, backup_port), env=busy_trunk).start()
    pcap = work / "lo.pcap"
    ports = f"udp port {main_port} or udp port {backup_port}"
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-U", "-s", "0", "-w", str(pcap), ports],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1.0)
    try:
        caller = Sipp("caller_answered", work, remote=gateway.address, calls=args.calls,
                      keys={"hold_ms": 50}, timeout_s=args.calls * 2 + 60,
                      extra=("-l", "1", "-r", "20"))  # fmt: skip
        started = time.monotonic()
        result = caller.start().wait()
        wall = time.monotonic() - started
        time.sleep(0.5)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(10)
    footprint = idle_footprint(gateway.process.pid, args.idle) if gateway.process else {}
    code = gateway.stop()
    main.stop()
    backup.stop()
    found = failover_delays(read_pcap(pcap), gateway.port, main_port, backup_port)
    ms = [value * 1000 for value in found]
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.python_version()}",
        "calls": args.calls, "calls_successful": result.successful, "failovers_measured": len(ms),
        "failover_404_to_invite_ms": {
            "p50": round(statistics.median(ms), 3), "p99": round(percentile(ms, 99), 3),
            "min": round(min(ms), 3), "max": round(max(ms), 3),
        } if ms else None,
        "calls_per_second": round(result.successful / wall, 2),
        **footprint, "gateway_exit": code,
    }  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if ms and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
