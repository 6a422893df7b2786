"""The pool over several machines: ``sip-failover edge`` + ``run --edge ADDRESS``.

Each "machine" is a network namespace: the edge (with the trunk and the
callers) in one, each worker in its own, linked by veth pairs
(tests/integration/netns.py). The workers reach the edge's control process
over TCP.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import netns
import pytest
from edge_pool import BACKUP, MAIN, TRUNK_KEYS, failover_rules, needs_kamailio, start_trunk
from gateway_process import GatewayProcess, sip_failover
from sipp import RtpSink, free_udp_port

from gateway.edge.supervisor import WORKER_RTP_PORTS

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import SippFactory

# alone: Kamailio, two workers in namespaces of their own and six callers at once.
pytestmark = [pytest.mark.integration, pytest.mark.alone]
VOICED_PACKETS = 3
WORKER_RTP = 40000


def test_two_workers_on_other_machines_bridge_six_callers_through_the_edge(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    needs_kamailio()
    if not netns.available():
        pytest.skip("needs root and iproute2 (network namespaces as machines)")
    callers, edge_host = 6, netns.EDGE_ADDRESS
    with netns.isolated_network() as home, netns.worker_hosts(home, 2) as hosts:
        trunk = start_trunk(sipp, legs=2 * callers, host=edge_host)
        control = f"{edge_host}:{free_udp_port()}"
        pool = [_worker(gateway_dir, n, host, control) for n, host in enumerate(hosts, start=1)]
        workers = [worker.address for worker in pool]
        edge = GatewayProcess(
            gateway_dir / "edge", failover_rules(), proxy=trunk.proxy.address,
            registrar=trunk.registrar.address, username=TRUNK_KEYS["user"],
            password=TRUNK_KEYS["password"], sources=[edge_host], host=edge_host,
            command=["edge"], env={"SIP_FAILOVER_EDGE__WORKERS": json.dumps(workers),
                                   "SIP_FAILOVER_EDGE__CONTROL": control},
        ).start()  # fmt: skip
        for worker in pool:
            worker.args = ["--edge", edge.address]
            worker.start()
        try:
            # Two at a time: one bridged call per worker (docs/limits.md).
            caller = sipp("caller_answered", remote=edge.address, ip=edge_host,
                          calls=callers, keys={"hold_ms": 2000},
                          extra=["-r", "20", "-l", "2"], timeout_s=60)  # fmt: skip
            with RtpSink(caller.rx_port, host=edge_host) as sink:
                called = caller.start().wait()
                sink.drain()
            called.assert_success(callers)
            legs = trunk.proxy.wait()
        finally:
            trunk.stop()
            codes = [worker.stop() for worker in pool] + [edge.stop()]
    described = "\n".join(p.describe() for p in [edge, *pool])
    assert codes == [0, 0, 0], described
    # Speech came back through both machines (each carried three of the calls,
    # one after the other, so their RTP ports repeat: counted by machine).
    voiced: dict[str, int] = {}
    for (host, _port), count in sink.voiced_by_sender().items():
        voiced[host] = voiced.get(host, 0) + count
    assert voiced.keys() == {netns.worker_address(1), netns.worker_address(2)}, voiced
    assert all(n >= 3 * VOICED_PACKETS for n in voiced.values()), (voiced, described)
    invites = [m for m in legs.received("INVITE") if m.header("Authorization")]
    assert all((m.header("Via") or "").startswith(f"SIP/2.0/UDP {edge.address}") for m in invites)
    numbers = sorted(m.first_line.split()[1].split("@")[0] for m in invites)
    assert numbers == sorted([f"sip:{MAIN}"] * callers + [f"sip:{BACKUP}"] * callers)
    # Both machines took calls, and the edge's control process logged all of them.
    for worker in pool:
        assert "event call.answered" in worker.log, worker.describe()
    assert edge.log.count("control channel: worker") >= 2, edge.describe()
    listed = sip_failover(edge, "calls", "--json").stdout
    logged = [json.loads(line) for line in listed.splitlines()]
    assert [c["result"] for c in logged] == ["answered"] * callers, edge.describe()


def _worker(workdir: Path, n: int, namespace: str, control: str) -> GatewayProcess:
    """Worker ``n`` on its own machine, reporting to ``control`` (not started)."""
    return GatewayProcess(
        workdir / f"worker{n}", failover_rules(), host=netns.worker_address(n),
        prefix=netns.run_in(namespace),
        env={"SIP_FAILOVER_EDGE__CONTROL": control, "SIP_FAILOVER_EDGE__WORKER_INDEX": str(n),
             "SIP_FAILOVER_SIP__RTP_PORT": str(WORKER_RTP),
             "SIP_FAILOVER_SIP__RTP_PORT_RANGE": str(WORKER_RTP_PORTS)},
    )  # fmt: skip

