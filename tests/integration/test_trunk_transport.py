"""A trunk over TCP or TLS: its calls come in, and fail over, on that transport.

The trunk is SIPp twice, as in the UDP tests: ``caller_answered`` calls the
public number, ``trunk_operator`` is the trunk's proxy for the legs (404 for
the main line's number, answered for the backup's). Over TLS both sit behind
stunnel (``tlsfront``), since Debian's SIPp has no TLS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from gateway_process import GatewayProcess
from rulesets import CALLED
from sipp import free_udp_port
from tlsfront import TlsFront, make_certificate, tls_available

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import SippFactory

pytestmark = pytest.mark.integration
MAIN, BACKUP = "+32470000001", "+32470000002"  # trunk_operator: MAIN is unassigned
RULES = f"""version: 1
targets:
  main: {{number: "{MAIN}"}}
  backup: {{number: "{BACKUP}"}}
routes:
  - name: main-line
    match: {{to: "{CALLED}"}}
    steps:
      - ring: main
        timeout: 3s
        failover_on: [unassigned]
      - ring: backup
        timeout: 5s
"""


def test_a_trunk_over_tcp_delivers_a_call_that_fails_over(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    operator = sipp("trunk_operator", calls=2, transport="t1").start()
    env = {"SIP_FAILOVER_TRUNK__TRANSPORT": "tcp"}
    with GatewayProcess(gateway_dir, RULES, proxy=operator.address, env=env) as gateway:
        caller = sipp("caller_answered", remote=gateway.address, transport="t1",
                      keys={"hold_ms": 300})  # fmt: skip
        caller.start().wait().assert_success()
        legs = operator.wait()
    gateway.assert_clean_exit()
    legs.assert_success(calls=2)
    invites = legs.received("INVITE")
    assert [i.first_line.split()[1].split("@")[0] for i in invites] == [
        f"sip:{MAIN}", f"sip:{BACKUP}"
    ], legs.describe()
    assert all("transport=tcp" in i.first_line for i in invites), invites[0].text
    assert all((i.header("Via") or "").startswith("SIP/2.0/TCP") for i in invites), invites[0].text
    assert legs.sent(status=404), legs.describe()


# The caller reaches the gateway over TLS through the front but SIPp writes
# TCP in its Contact: pjsua builds its answer's Contact for that transport,
# and the gateway listens for TLS only. A TLS trunk writes transport=tls.
TLS_CALLER = "127.0.0.1:5061;transport=tls"


def tls_gateway(
    gateway_dir: Path, front: TlsFront, ca: Path, tls_port: int, own: tuple[Path, Path]
) -> GatewayProcess:
    env = {
        "SIP_FAILOVER_TRUNK__TRANSPORT": "tls",
        "SIP_FAILOVER_TRUNK__TLS__PORT": str(tls_port),
        "SIP_FAILOVER_TRUNK__TLS__CA_FILE": str(ca),
        "SIP_FAILOVER_TRUNK__TLS__CERT_FILE": str(own[0]),
        "SIP_FAILOVER_TRUNK__TLS__KEY_FILE": str(own[1]),
    }
    return GatewayProcess(gateway_dir, RULES, proxy=front.trunk_address, env=env)


@pytest.mark.skipif(not tls_available(), reason="needs stunnel4 and openssl")
def test_a_trunk_over_tls_delivers_a_call_that_fails_over(
    sipp: SippFactory, gateway_dir: Path, tmp_path: Path
) -> None:
    cert = make_certificate(tmp_path / "tls")
    operator = sipp("trunk_operator", calls=2, transport="t1")
    tls_port = free_udp_port()
    front = TlsFront(tmp_path / "tls", cert, operator.port, f"127.0.0.1:{tls_port}")
    # In-dialog requests (ACK, BYE) must reach the operator through the front too.
    operator.advertise = f"{front.trunk_address};transport=tls"
    operator.start()
    with front, tls_gateway(
        gateway_dir, front, cert.cert, tls_port, (cert.cert, cert.key)
    ) as gateway:
        caller = sipp("caller_answered", remote=front.caller_address, transport="t1",
                      keys={"hold_ms": 300}, advertise=TLS_CALLER)  # fmt: skip
        caller.start().wait().assert_success()
        legs = operator.wait()
    gateway.assert_clean_exit()
    legs.assert_success(calls=2)
    assert [i.first_line.split()[1].split("@")[0] for i in legs.received("INVITE")] == [
        f"sip:{MAIN}", f"sip:{BACKUP}"
    ], legs.describe()
    assert all("transport=tls" in i.first_line for i in legs.received("INVITE"))
    assert legs.received("BYE"), "the backup leg did not end over TLS"


@pytest.mark.skipif(not tls_available(), reason="needs stunnel4 and openssl")
def test_a_trunk_whose_certificate_fails_verification_gets_no_leg(
    sipp: SippFactory, gateway_dir: Path, tmp_path: Path
) -> None:
    cert = make_certificate(tmp_path / "tls")
    stranger = make_certificate(tmp_path / "tls", "other-ca")  # not the trunk's issuer
    operator = sipp("trunk_operator", calls=2, transport="t1").start()
    tls_port = free_udp_port()
    front = TlsFront(tmp_path / "tls", cert, operator.port, f"127.0.0.1:{tls_port}")
    with front, tls_gateway(
        gateway_dir, front, stranger.cert, tls_port, (cert.cert, cert.key)
    ) as gateway:
        final = sipp("caller_refused", remote=front.caller_address, transport="t1",
                     advertise=TLS_CALLER).start().wait().final_response()  # fmt: skip
    gateway.assert_clean_exit()
    assert (final.status or 0) >= 400, final.text
    assert not operator.collect().received(), "a leg reached a trunk that failed verification"
    assert "certificate failed verification" in gateway.log, gateway.describe()
