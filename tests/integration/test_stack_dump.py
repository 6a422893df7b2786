"""A gateway asked where it is (SIGUSR1) writes every thread's stack to its log and runs on.

That dump is what an admin (and a failing test) gets from a gateway that
seems stuck; systemd's watchdog abort (SIGABRT) writes the same one.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING

import pytest
from gateway_process import GatewayProcess
from rulesets import one_phone

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

WAIT = 15.0


def test_sigusr1_dumps_every_thread_and_the_gateway_runs_on(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path / "gateway", one_phone("127.0.0.1:9")) as gateway:
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + WAIT
        while "Current thread" not in gateway.log:
            assert time.monotonic() < deadline, f"no stack dump\n{gateway.describe()}"
            time.sleep(0.05)
        dump = gateway.log.split("Current thread", 1)[1]
        assert "gateway/cli/main.py" in dump, f"the main thread is not in the dump\n{dump[:3000]}"
        alive = gateway.is_alive(timeout=5.0)
        assert alive, f"the gateway stopped after the dump\n{gateway.describe()}"
    gateway.assert_clean_exit()
