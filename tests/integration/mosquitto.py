"""A real Mosquitto broker on a free loopback port, for integration tests."""

from __future__ import annotations

import getpass
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

from sipp import free_udp_port

MOSQUITTO = Path("/usr/sbin/mosquitto")


def free_port() -> int:
    """A TCP port on 127.0.0.1 from the harness's share (sipp.free_udp_port checks TCP)."""
    return free_udp_port()


class Mosquitto:
    """Start, stop and restart one broker; the port survives restarts.

    ``persistent=True`` keeps sessions and retained messages across a restart
    (saved on SIGTERM), so a test subscriber with a persistent session gets what
    was published while it was reconnecting.
    """

    def __init__(self, workdir: Path, *, persistent: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.config = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            # Run as whoever runs the tests (as root it would switch to user
            # mosquitto and could not write its database in our tmp folder).
            f"user {getpass.getuser()}",
            f"persistence {'true' if persistent else 'false'}",
            f"persistence_location {workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        self.config.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(MOSQUITTO), "-c", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.05)
            else:
                return
        raise TimeoutError("mosquitto did not start listening")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
