"""The gateway and Kamailio, side by side, doing the same serial failover.

    .venv/bin/python benchmarks/side_by_side.py [--calls 1000] [--rounds 2]

Both run at once against the same SIPp peers on loopback: a main line that
answers every INVITE 404 + Q.850 cause 1 and a backup phone that answers 200.
The traffic alternates between them, one burst at a time, calls placed one
after the other (``-l 1``). Each burst has its own tcpdump capture on ``lo``
(port filter), read by the same Python code for both systems:

- failover: the main line's 404 reaching the system -> its INVITE to the backup;
- known_outage: a number whose main line is known dead (the gateway learnt
  it from the first call; Kamailio is configured to skip it): the caller's
  INVITE in -> the INVITE to the backup, and -> the 180 to the caller;
- idle CPU and memory (PSS from /proc/PID/smaps_rollup, summed over
  Kamailio's processes), fresh and after the calls; CPU under load;
- leak_percent: the gateway's PSS after ``--leak-calls`` calls against after
  300 (idle, settled);
- call_rates: the gateway alone, ``--ramp-calls`` serial failover calls at
  each of RAMP_RATES calls/s: the callers' final answers, whether it was
  clean (all answered), and whether the gateway still answered afterwards;
- detection_fastest: a gateway of its own call-probing a target every 1 s
  with ``down_after: 1``: the operator starts answering 404 -> the target's
  health topic says ``unassigned`` on a real Mosquitto, ``--detect-samples``
  times (benchmarks/detection.py); detection_default: the same for the
  default call probe (every 15 min, ``down_after: 2``), computed from its
  schedule and the measured overhead (minutes per sample: not run).

Writes benchmarks/results/<date>.json, <date>.md and <date>.png (matplotlib:
``pip install --group bench``). Needs root (tcpdump), sipp and kamailio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
sys.path.insert(0, str(HERE))

from detection import FASTEST, computed_default  # noqa: E402
from detection import measure as measure_detection  # noqa: E402
from gateway_process import GatewayProcess  # noqa: E402
from kamailio import Kamailio  # noqa: E402
from measures import (  # noqa: E402
    caller_finals,
    failover_delays,
    invite_rate,
    outage_delays,
    read_pcap,
    rtp_payload_types,
    stats,
    tree_cpu_seconds,
    tree_pss_mb,
)
from report import write_report  # noqa: E402
from sipp import Sipp, free_media_port, free_udp_port, port_listening  # noqa: E402

RESULTS = HERE / "results"
FAILOVER_NUMBER = "+3225550100"
OUTAGE_NUMBER = "+3225550200"
# Calls per second asked of SIPp (-l 1 keeps one call at a time). Past about
# 15/s the sockets each leg holds for 500 ms after it ends fill pjsua's 64
# handles, and the gateway refuses callers (480 at the gate, 503 + Retry-After)
# rather than abort (docs/limits.md, "Socket handles"); the rate ramp shows it.
RATE = 10
LEAK_BASE = 300  # the leak check: memory after --leak-calls calls against after this many
RAMP_RATES = (10, 15, 20, 25, 30)  # calls/s of the rate ramp, one call at a time


def rules(main: int, backup: int, dead: int) -> str:
    return f"""version: 1
targets:
  main: {{uri: "sip:main@127.0.0.1:{main}"}}
  dead: {{uri: "sip:dead@127.0.0.1:{dead}"}}
  backup: {{uri: "sip:backup@127.0.0.1:{backup}"}}
routes:
  - name: main-line
    match: {{to: "{FAILOVER_NUMBER}"}}
    steps:
      - ring: main
        timeout: 5s
      - ring: backup
        timeout: 5s
  - name: outage-line
    match: {{to: "{OUTAGE_NUMBER}"}}
    steps:
      - ring: dead
        timeout: 5s
      - ring: backup
        timeout: 5s
health:  # only a probed target is skipped; nothing answers on its port
  dead: {{probe: options, every: 1h, down_after: 1}}
"""


class Bench:
    """The peers, the two systems, and the bursts of calls between them."""

    def __init__(self, work: Path, total_calls: int) -> None:
        self.work = work
        self.main_port, self.backup_port = free_udp_port(), free_udp_port()
        self.dead_port = free_udp_port()  # the known outage: nothing listens there
        budget = total_calls * 3 + 100
        timeout = total_calls + 600
        self.main = Sipp("phone_reject_reason", work, port=self.main_port, calls=budget,
                         keys={"code": 404, "cause": 1}, timeout_s=timeout).start()  # fmt: skip
        self.backup = Sipp("phone_answer", work, port=self.backup_port, calls=budget,
                           keys={"answer_ms": 0}, timeout_s=timeout, rtp_echo=True).start()  # fmt: skip
        busy_trunk = {"SIP_FAILOVER_SIP__MAX_CALLS_PER_SOURCE_PER_MINUTE": "100000"}
        self.gateway = GatewayProcess(work / "gateway", rules(self.main_port, self.backup_port,
                                                             self.dead_port),
                                      env=busy_trunk)  # fmt: skip
        self.kamailio = Kamailio(work, free_udp_port(), self.main_port, self.backup_port,
                                 OUTAGE_NUMBER)  # fmt: skip
        try:
            self.kamailio.start(port_listening)
            self.gateway.start()
        except BaseException:
            self.stop()
            raise
        self.calls = {"gateway": 0, "kamailio": 0}
        self.failed = {"gateway": 0, "kamailio": 0}
        self._bursts = 0
        self.caller_media = range(0)

    def system(self, name: str) -> tuple[int, int]:
        """(SIP port, pid) of a system."""
        if name == "gateway":
            assert self.gateway.process is not None
            return self.gateway.port, self.gateway.process.pid
        return self.kamailio.port, self.kamailio.pid

    def burst(self, name: str, number: str, calls: int, rate: int = RATE,
              scenario: str = "caller_answered") -> tuple[list[Any], int, float]:  # fmt: skip
        """Place ``calls`` calls to ``number`` through a system, captured.

        Returns:
            The capture's packets, the caller's SIP port, and the system's CPU
            seconds per wall second during the burst.
        """
        port, pid = self.system(name)
        self._bursts += 1
        caller_port, caller_media = free_udp_port(), free_media_port()
        pcap = self.work / f"burst-{self._bursts}-{name}.pcap"
        sip_ports = (port, self.main_port, self.backup_port, self.dead_port, caller_port)
        ports = " or ".join(f"udp port {p}" for p in sip_ports)
        # RTP of the first calls only (the caller's own media ports): the codecs.
        self.caller_media = range(caller_media, caller_media + 6)
        media = self.backup.media_port
        ports += f" or udp portrange {caller_media}-{caller_media + 5}"
        ports += f" or udp portrange {media}-{media + 3}"
        dump = subprocess.Popen(["tcpdump", "-i", "lo", "-n", "-U", "-s", "0", "-B", "8192",
                                 "-w", str(pcap), ports],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(1.0)
        cpu0, t0 = tree_cpu_seconds(pid), time.monotonic()
        try:
            caller = Sipp(scenario, self.work, port=caller_port, media_port=caller_media,
                          remote=f"127.0.0.1:{port}", calls=calls,
                          keys={"hold_ms": 20, "dial": number},
                          timeout_s=calls + 120, extra=("-l", "1", "-r", str(rate)))  # fmt: skip
            result = caller.start().wait()
        finally:
            load = (tree_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
            time.sleep(0.3)
            dump.send_signal(signal.SIGINT)
            dump.wait(10)
        self.calls[name] += calls
        self.failed[name] += calls - result.successful
        return read_pcap(pcap), caller_port, load

    def idle(self, seconds: float) -> dict[str, dict[str, float]]:
        """Idle CPU (% of a core) and PSS of both systems over the same window."""
        pids = {name: self.system(name)[1] for name in ("gateway", "kamailio")}
        before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
        start = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - start
        return {name: {"cpu_percent": round(100 * (tree_cpu_seconds(pid) - before[name])
                                            / elapsed, 3),
                       "pss_mb": tree_pss_mb(pid)}
                for name, pid in pids.items()}  # fmt: skip

    def stop(self) -> int:
        code = self.gateway.stop() if self.gateway.process is not None else -1
        self.kamailio.stop()
        self.main.stop()
        self.backup.stop()
        return code


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="sip-failover-side-by-side-"))
    bench = Bench(work, LEAK_BASE + args.leak_calls + 2 * args.calls
                  + len(RAMP_RATES) * args.ramp_calls)
    out: dict[str, Any] = {"gateway": {}, "kamailio": {}}
    delays: dict[str, dict[str, list[float]]] = {s: {"failover": [], "known_outage": [],
                                                     "known_outage_ringing": []}
                                                 for s in out}  # fmt: skip
    load: dict[str, list[float]] = {s: [] for s in out}
    try:
        time.sleep(3)  # both settle after start
        fresh = bench.idle(args.idle)
        # The leak check's base: the gateway after exactly LEAK_BASE calls, settled
        # as after the last calls (pjsip's transactions over, fast tick ended).
        bench.burst("gateway", FAILOVER_NUMBER, LEAK_BASE)
        time.sleep(args.settle)
        after_300 = bench.idle(args.idle / 2)["gateway"]["pss_mb"]
        per_burst = args.calls // args.rounds
        for round_no in range(args.rounds):
            for name in ("gateway", "kamailio"):
                port = bench.system(name)[0]
                packets, caller, cpu = bench.burst(name, FAILOVER_NUMBER, per_burst)
                delays[name]["failover"] += failover_delays(packets, port, bench.main_port,
                                                            bench.backup_port)  # fmt: skip
                load[name].append(cpu)
                if round_no == 0 and name == "gateway":
                    anyone, backup = range(65536), bench.backup.media_port
                    out[name]["rtp_payload_types"] = {
                        "caller_to_gateway": rtp_payload_types(packets, bench.caller_media, anyone),
                        "gateway_to_backup": rtp_payload_types(
                            packets, range(bench.caller_media.start), range(backup, backup + 4)),
                    }
        for name in ("gateway", "kamailio"):
            port = bench.system(name)[0]
            packets, caller, _ = bench.burst(name, OUTAGE_NUMBER, args.outage_calls)
            to_backup, to_ringing = outage_delays(packets, port, caller, bench.backup_port,
                                                  bench.dead_port)  # fmt: skip
            delays[name]["known_outage"] += to_backup
            delays[name]["known_outage_ringing"] += to_ringing
        remaining = args.leak_calls - bench.calls["gateway"]
        while remaining > 0:
            chunk = min(remaining, 1000)
            bench.burst("gateway", FAILOVER_NUMBER, chunk)
            remaining -= chunk
        time.sleep(args.settle)
        after = bench.idle(args.idle)
        out["gateway"]["call_rates"] = rate_ramp(bench, args.ramp_calls)
    finally:
        exit_code = bench.stop()
    # Alone on the machine: its probes and MQTT do not share the bursts' time.
    fastest = measure_detection(work / "detection", args.detect_samples, **FASTEST)
    out["gateway"]["detection_fastest"] = fastest
    out["gateway"]["detection_default"] = computed_default(fastest)
    for name in out:
        out[name]["failover"] = stats(delays[name]["failover"])
        out[name]["known_outage"] = stats(delays[name]["known_outage"])
        out[name]["known_outage_ringing"] = stats(delays[name]["known_outage_ringing"])
        out[name]["idle_cpu_percent"] = fresh[name]["cpu_percent"]
        out[name]["idle_cpu_percent_after_calls"] = after[name]["cpu_percent"]
        out[name]["idle_pss_mb"] = fresh[name]["pss_mb"]
        out[name]["idle_pss_mb_after_calls"] = after[name]["pss_mb"]
        out[name]["loaded_cpu_percent"] = round(100 * max(load[name]), 1)
        out[name]["calls"] = bench.calls[name]
        out[name]["calls_failed"] = bench.failed[name]
    out["gateway"]["pss_mb_after_300_calls"] = after_300
    out["gateway"]["pss_mb_after_calls"] = after["gateway"]["pss_mb"]
    out["gateway"]["leak_percent"] = round(100 * (after["gateway"]["pss_mb"] - after_300)
                                           / after_300, 2)  # fmt: skip
    out["gateway"]["exit_code"] = exit_code
    out["_delays_ms"] = {name: {k: [round(v * 1000, 4) for v in values]
                                for k, values in series.items()}
                         for name, series in delays.items()}  # fmt: skip
    return out


def rate_ramp(bench: Bench, calls: int) -> list[dict[str, Any]]:
    """Serial failover calls at rising rates through the gateway: what each caller got.

    Past the engine's socket budget the gateway refuses (480 at its gate, 503
    with Retry-After); the ramp stops at the first rate it did not survive.
    """
    port = bench.system("gateway")[0]
    counted = dict(bench.calls), dict(bench.failed)  # the ramp's own calls are not counted
    ramp: list[dict[str, Any]] = []
    for rate in RAMP_RATES:
        packets, caller, _ = bench.burst("gateway", FAILOVER_NUMBER, calls, rate,
                                         "caller_answered_or_refused")  # fmt: skip
        finals = caller_finals(packets, port, caller)
        alive = bench.gateway.is_alive(timeout=5.0)
        ramp.append({"rate": rate, "sent_per_s": round(invite_rate(packets, caller, port), 1),
                     "finals": {str(k): v for k, v in sorted(finals.items())},
                     "clean": set(finals) == {200}, "alive": alive})  # fmt: skip
        if not alive:
            break
    bench.calls, bench.failed = counted
    return ramp


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, Python "
                   f"{platform.python_version()}, {platform.platform()}",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "kamailio": subprocess.run(["kamailio", "-v"], capture_output=True, text=True,
                                   check=False).stdout.splitlines()[0],
        "command": " ".join(["benchmarks/side_by_side.py", *sys.argv[1:]]),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="failover calls per system")
    parser.add_argument("--rounds", type=int, default=2, help="alternations per system")
    parser.add_argument("--outage-calls", type=int, default=300)
    parser.add_argument("--leak-calls", type=int, default=3000, help="the gateway's calls in all")
    parser.add_argument("--idle", type=float, default=20.0, help="idle window, seconds")
    settle = ("seconds after calls before an idle reading: pjsip's last transactions end"
              " (timer B/F: 32 s), and the pump's fast tick with them")  # fmt: skip
    parser.add_argument("--settle", type=float, default=35.0, help=settle)
    parser.add_argument("--ramp-calls", type=int, default=150, help="calls at each ramp rate")
    parser.add_argument("--detect-samples", type=int, default=10, help="outages to detect")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = run(args)
    results["run"] = machine(load_before)
    stem = args.out / datetime.now(UTC).strftime("%Y-%m-%d")
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(results, stem)
    print(Path(f"{stem}.md").read_text())
    return 0 if results["gateway"]["exit_code"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
