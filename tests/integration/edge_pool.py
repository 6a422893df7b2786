"""A pool (Kamailio edge + workers) with its SIPp trunk, for the edge tests.

The trunk is three SIPp peers: its registrar (``registrar.xml``), its proxy
where every leg goes (``trunk_operator_auth.xml``: it challenges each
INVITE, answers the unassigned main number 404 with Q.850 cause 1 and any
other number with echoed audio), and the callers, started by each test.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from gateway_process import GatewayProcess
from rulesets import CALLED
from sipp import LOOPBACK, free_udp_port

from gateway.edge.supervisor import WORKER_RTP_PORTS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from conftest import SippFactory
    from sipp import Sipp

KAMAILIO = "/usr/sbin/kamailio"
GREETING = "greeting.wav"  # next to the rules: 0.3 s, so that callers soon speak
MAIN = "+32470000001"  # the main line's mobile: the operator lost it (404, cause 1)
BACKUP = "+32470000002"
TRUNK_KEYS = {"user": "gateway", "password": "s3cret", "realm": "trunk.test", "unassigned": MAIN}


def needs_kamailio() -> None:
    """Skip unless Kamailio is installed (scripts/test.sh installs it)."""
    if not Path(KAMAILIO).exists():
        pytest.skip("needs kamailio (apt-get install kamailio)")


def failover_rules(*, voicemail: bool = False, health: str = "") -> str:
    """The main number rings the lost mobile, then the backup (then a voicemail)."""
    box = ("voicemail:\n  main: {email: [office@example.com], max_seconds: 5,"
           f" greeting: {GREETING}, beep: false}}\n" if voicemail else "")  # fmt: skip
    last = "      - voicemail: main\n" if voicemail else ""
    return f"""version: 1
targets:
  main: {{number: "{MAIN}"}}
  backup: {{number: "{BACKUP}"}}
{box}routes:
  - name: main-line
    match: {{to: "{CALLED}"}}
    steps:
      - ring: main
        timeout: 5s
        failover_on: [unassigned, unreachable, busy, no_answer]
      - ring: backup
        timeout: 5s
        failover_on: [unassigned, unreachable, busy, no_answer]
{last}{health}"""


@dataclass
class Trunk:
    """The trunk's registrar and proxy."""

    registrar: Sipp
    proxy: Sipp

    def stop(self) -> None:
        self.registrar.stop()
        self.proxy.stop()


def start_trunk(sipp: SippFactory, legs: int, *, host: str = LOOPBACK) -> Trunk:
    """The registrar and the proxy (``legs``: how many INVITEs it will see in all)."""
    registrar = sipp("registrar", ip=host, keys=TRUNK_KEYS, recv_timeout_ms=60000,
                     timeout_s=90).start()  # fmt: skip
    proxy = sipp("trunk_operator_auth", ip=host, keys=TRUNK_KEYS, rtp_echo=True, calls=legs,
                 timeout_s=90).start()  # fmt: skip
    return Trunk(registrar, proxy)


def start_pool(
    workdir: Path,
    trunk: Trunk,
    rules: str,
    workers: int,
    env: Mapping[str, str] | None = None,
) -> GatewayProcess:
    """``run --workers N`` registered with ``trunk``; workers on a free port block."""
    # RTP ports of our own: another gateway bound on the same ports (pjsua sets
    # SO_REUSEADDR) would take some of the workers' audio.
    settings = {
        "SIP_FAILOVER_EDGE__WORKER_PORT": str(free_udp_port(workers)),
        "SIP_FAILOVER_SIP__RTP_PORT": str(free_udp_port(WORKER_RTP_PORTS * workers, even=True)),
    }
    _write_greeting(workdir)
    pool = GatewayProcess(
        workdir,
        rules,
        proxy=trunk.proxy.address,
        registrar=trunk.registrar.address,
        username=TRUNK_KEYS["user"],
        password=TRUNK_KEYS["password"],
        env={**settings, **(env or {})},
        args=["--workers", str(workers)],
    )
    return pool.start()


def _write_greeting(folder: Path, seconds: float = 0.3) -> None:
    """A short, quiet greeting (8 kHz mono 16-bit) for the voicemail box."""
    folder.mkdir(parents=True, exist_ok=True)
    with wave.open(str(folder / GREETING), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * int(seconds * 8000))
