"""The gateway's memory, fresh and after calls, and what it is made of.

    .venv/bin/python benchmarks/memory.py [--calls 300] [--batches 1] [--settle 5] [--env K=V]
                                          [--cpu-window 60]

Starts the gateway on loopback with one route (a 404 main line, then a backup
phone that answers), reads its PSS from /proc/PID/smaps_rollup when idle and
fresh, places ``--calls`` calls one after another (10/s, 20 ms each, answered
by the backup), and reads it again once idle. Prints PSS, USS (unshared), the
anonymous memory and heap (its own, whatever else runs beside it), and the
largest mappings (anonymous memory, the heap, each shared library), so that a
change can be measured before and after. ``--env`` passes settings or
variables to the gateway (``MALLOC_ARENA_MAX=2``). ``--cpu-window`` also reads
the gateway's CPU time over that many idle seconds after each reading (% of one
core, from /proc/PID/stat). A reading less than 32 s after the last call (the
default ``--settle 5``) still counts the calls' SIP transactions, which pjsip
keeps until timer J or D; ``--settle 35`` reads the gateway once they are over
and the heap has been given back. Needs sipp.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))
sys.path.insert(0, str(HERE))

from gateway_process import GatewayProcess  # noqa: E402
from measures import tree_cpu_seconds  # noqa: E402
from side_by_side import FAILOVER_NUMBER, RATE, rules  # noqa: E402
from sipp import Sipp, free_udp_port  # noqa: E402

_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$")


def pss_by_mapping(pid: int) -> dict[str, float]:
    """PSS of each mapping of a process (same file summed), MB."""
    found: dict[str, float] = {}
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        match = _MAPPING.match(line)
        if match:
            name = Path(match.group(1)).name if match.group(1) else "[anon]"
        elif line.startswith("Pss:"):
            found[name] = found.get(name, 0.0) + int(line.split()[1]) / 1024
    return found


def uss_mb(pid: int) -> float:
    """Memory no other process shares at the moment (Private_Clean + Private_Dirty), MB.

    A library's pages count here only while no other process maps them: another
    gateway or Python started beside it moves USS too (by about 2 MB, measured).
    """
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    return sum(int(line.split()[1]) for line in rollup if line.startswith("Private_")) / 1024


def report(label: str, pid: int, top: int) -> float:
    parts = pss_by_mapping(pid)
    total = sum(parts.values())
    largest = sorted(parts.items(), key=lambda item: -item[1])[:top]
    # Anonymous memory and the heap are the process's own whatever else runs:
    # the figure to compare before and after a change on a shared machine.
    own = sum(parts.get(name, 0.0) for name in ("[anon]", "[heap]", "[stack]"))
    print(f"{label}: PSS {total:.1f} MB, USS {uss_mb(pid):.1f} MB, "
          f"anonymous + heap {own:.1f} MB")  # fmt: skip
    for name, mb in largest:
        print(f"    {mb:5.1f}  {name}")
    return total


def idle_cpu(pid: int, seconds: float) -> None:
    """Print the CPU the process used over ``seconds`` of idling, % of one core."""
    if seconds <= 0:
        return
    before, start = tree_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    used = tree_cpu_seconds(pid) - before
    print(f"    idle CPU {100 * used / elapsed:.3f} % of a core ({used:.2f} s in {elapsed:.0f} s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--batches", type=int, default=1, help="batches of --calls, each read")
    parser.add_argument("--settle", type=float, default=5.0, help="idle seconds before a reading")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cpu-window", type=float, default=0.0, help="idle CPU window, s")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    env.setdefault("SIP_FAILOVER_SIP__MAX_CALLS_PER_SOURCE_PER_MINUTE", "100000")
    with tempfile.TemporaryDirectory(prefix="gw-memory-") as tmp:
        work = Path(tmp)
        budget = args.calls * args.batches * 2 + 10
        main_line = Sipp("phone_reject_reason", work, calls=budget, timeout_s=budget // 5 + 120,
                         keys={"code": 404, "cause": 1}).start()  # fmt: skip
        backup = Sipp("phone_answer", work, calls=budget, timeout_s=budget // 5 + 120,
                      keys={"answer_ms": 0}, rtp_echo=True).start()  # fmt: skip
        text = rules(main_line.port, backup.port, free_udp_port())
        with GatewayProcess(work / "gateway", text, env=env) as gateway:
            assert gateway.process is not None
            pid = gateway.process.pid
            time.sleep(args.settle)
            fresh = report("fresh, idle", pid, args.top)
            idle_cpu(pid, args.cpu_window)
            for batch in range(1, args.batches + 1 if args.calls else 1):
                Sipp("caller_answered", work, remote=gateway.address, calls=args.calls,
                     keys={"hold_ms": 20, "dial": FAILOVER_NUMBER}, timeout_s=args.calls + 120,
                     extra=("-l", "1", "-r", str(RATE))).start().wait()  # fmt: skip
                time.sleep(args.settle)
                after = report(f"idle after {batch * args.calls} calls", pid, args.top)
                print(f"grew {after - fresh:+.1f} MB")
                idle_cpu(pid, args.cpu_window)
        main_line.stop()
        backup.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
