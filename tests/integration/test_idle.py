"""An idle gateway costs almost nothing: no thread of it wakes every few milliseconds.

Idle, pjmedia's worker thread polled RTP sockets every 10 ms (0.3 % of a core),
the rules watcher's thread woke every 50 ms and the pump ticked every 250 ms: 0.5 %
of a core in all. Now RTP is read only while legs are up (gateway/sip/idle.py).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from gateway_process import GatewayProcess, observed
from rulesets import one_phone
from sipp import free_udp_port

# alone: each wake costs more CPU time on a loaded machine (0.32 % read beside a
# test run against 0.08 % on its own), and the window is counted in 10 ms ticks.
pytestmark = [pytest.mark.integration, pytest.mark.alone]
WINDOW_S = 10.0  # CPU time is counted in 10 ms ticks: a window of 1,000 of them
MAX_PERCENT = 0.3  # measured 0.1 % over 60 s; 0.5 % before (benchmarks/README.md)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of the process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_gateway_uses_almost_no_cpu(gateway_dir: Path) -> None:
    with GatewayProcess(gateway_dir, one_phone(f"127.0.0.1:{free_udp_port()}")) as gateway:
        assert gateway.process is not None
        pid = gateway.process.pid
        before, start = cpu_seconds(pid), time.monotonic()
        process = gateway.process
        observed(WINDOW_S, lambda: process.poll() is not None)  # a window; ends if it died
        used, elapsed = cpu_seconds(pid) - before, time.monotonic() - start
        percent = 100 * used / elapsed
        assert percent <= MAX_PERCENT, (
            f"idle gateway used {used * 1000:.0f} ms CPU in {elapsed:.1f} s "
            f"({percent:.2f} % of a core)\n{gateway.describe()}"
        )
    gateway.assert_clean_exit()
