"""Fill in the shipped nftables template from the gateway's settings and rules.

``python -m gateway.service.firewall TEMPLATE [ENV_FILE]`` prints the firewall for
this gateway (deploy/install.sh writes it to /etc/sip-failover/nftables.conf).
SIP and RTP are let in from the trunk's addresses (``trunk.sources``, else the
registrar's host) and from the hosts of the SIP phones the rules ring (``uri:``
targets: their BYE or re-INVITE may come long after the call set-up). Names
are resolved now.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import Settings, _resolve, sip_uri_hostport
from gateway.core.rules import RulesError
from gateway.rules.load import load_rules

if TYPE_CHECKING:
    from collections.abc import Iterable


def allowed_hosts(settings: Settings) -> list[str]:
    """Addresses allowed to send SIP and RTP: the trunk, then the rules' SIP phones."""
    found = set(settings.trunk.allowed_sources())
    for name in _phone_hosts(settings.rules):
        found.update(_resolve(name))
    return sorted(found, key=lambda host: _sort_key(ipaddress.ip_address(host)))


def _sort_key(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, bytes]:
    return address.version, address.packed


def _phone_hosts(rules_path: Path) -> list[str]:
    try:
        rules = load_rules(rules_path)
    except RulesError:
        return []  # no rules yet, or broken ones: the trunk alone
    hosts = []
    for target in rules.targets.values():
        uri = getattr(target, "uri", None)
        if uri:
            hosts.append(sip_uri_hostport(uri)[0])
    return hosts


def render(template: str, settings: Settings, hosts: Iterable[str]) -> str:
    """The template with its ``@...@`` fields filled in."""
    sip = settings.sip
    if sip.rtp_port == 0:
        raise ValueError("SIP_FAILOVER_SIP__RTP_PORT is 0 (any port): set a fixed RTP range")
    addresses = [ipaddress.ip_address(host) for host in hosts]
    fields = {
        "@SIP_PORT@": str(sip.port),
        "@TCP_PORTS@": ", ".join(str(p) for p in sorted({sip.port, settings.trunk.tls.port})),
        # pjsua binds RTP within [port, port + range) and RTCP one above it.
        "@RTP_PORTS@": f"{sip.rtp_port}-{min(sip.rtp_port + max(sip.rtp_port_range, 1), 65535)}",
        "@TRUNK_V4@": _elements([a for a in addresses if a.version == 4]),
        "@TRUNK_V6@": _elements([a for a in addresses if a.version == 6]),
    }
    for field, value in fields.items():
        template = template.replace(field, value)
    return template


def _elements(addresses: list[ipaddress.IPv4Address] | list[ipaddress.IPv6Address]) -> str:
    # nft refuses an empty "elements = { }": an empty set has no elements line.
    if not addresses:
        return "        # (none)"
    return "        elements = { " + ", ".join(str(a) for a in addresses) + " }"


def main(argv: list[str]) -> int:
    """Print the filled-in firewall; exit 2 on a settings problem."""
    template = Path(argv[0]).read_text(encoding="utf-8")
    env_file = argv[1] if len(argv) > 1 else None
    try:
        settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
        text = render(template, settings, allowed_hosts(settings))
    except (ValueError, OSError) as error:
        sys.stderr.write(f"firewall: {error}\n")
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
