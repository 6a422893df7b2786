"""The shipped nftables template, filled in from settings, is a valid nftables file."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.service.firewall import allowed_hosts, render

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "firewall" / "nftables.conf"
NFT = shutil.which("nft") or "/usr/sbin/nft"


def settings(tmp_path: Path, **values: object) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        'version: 1\ntargets:\n  desk: {uri: "sip:desk@192.0.2.10:5062"}\n'
        '  mobile: {number: "+32470000001"}\n'
        'routes:\n  - name: r\n    match: {to: "+3225550100"}\n    steps: [{ring: desk}]\n'
    )
    trunk = {"registrar": "sip:203.0.113.9", **values.pop("trunk", {})}  # type: ignore[dict-item]
    return Settings(rules=rules, trunk=trunk, **values)  # type: ignore[arg-type]


def nft_check(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``nft -c``: parse and check against the kernel, never commit (root needed)."""
    path = tmp_path / "nftables.conf"
    path.write_text(text)
    return subprocess.run([NFT, "-c", "-f", str(path)], capture_output=True, text=True,
                          timeout=30, check=False)  # fmt: skip


def test_trunk_sources_phones_and_ports_are_filled_in(tmp_path: Path) -> None:
    chosen = settings(tmp_path, sip={"listen": "0.0.0.0:5070", "rtp_port": 20000,
                      "rtp_port_range": 100},
                      trunk={"sources": ["198.51.100.10", "2001:db8::5"]})  # fmt: skip
    hosts = allowed_hosts(chosen)
    assert hosts == ["192.0.2.10", "198.51.100.10", "2001:db8::5"]
    text = render(TEMPLATE.read_text(), chosen, hosts)
    assert not re.search(r"@[A-Z_0-9]+@", text), "a field was left unfilled"
    assert "elements = { 192.0.2.10, 198.51.100.10 }" in text
    assert "elements = { 2001:db8::5 }" in text
    assert "udp dport 5070 ip saddr @trunk_v4 accept" in text
    assert "udp dport 20000-20100 ip saddr @trunk_v4 accept" in text
    assert "tcp dport { 5061, 5070 } ip saddr @trunk_v4 accept" in text  # a TCP or TLS trunk


def test_without_sources_the_registrar_is_the_trunk(tmp_path: Path) -> None:
    chosen = settings(tmp_path, trunk={"registrar": "sip:203.0.113.9:5080"})  # no sources
    assert allowed_hosts(chosen) == ["192.0.2.10", "203.0.113.9"]


def test_any_rtp_port_cannot_be_filtered(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RTP"):
        render(TEMPLATE.read_text(), settings(tmp_path, sip={"rtp_port": 0}), [])


@pytest.mark.skipif(not Path(NFT).exists(), reason="needs nft (Debian nftables)")
def test_generated_file_passes_nft_check(tmp_path: Path) -> None:
    chosen = settings(tmp_path, trunk={"sources": ["198.51.100.10", "2001:db8::5"]})
    good = nft_check(render(TEMPLATE.read_text(), chosen, allowed_hosts(chosen)), tmp_path)
    if "Operation not permitted" in good.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN here")
    assert good.returncode == 0, good.stderr
    only_v6 = render(TEMPLATE.read_text(), chosen, ["2001:db8::5"])  # an empty IPv4 set
    assert nft_check(only_v6, tmp_path).returncode == 0
    broken = nft_check(render(TEMPLATE.read_text(), chosen, ["198.51.100.10"]).replace(
        "ip saddr", "ip sadr", 1), tmp_path)  # fmt: skip
    assert broken.returncode != 0, "nft -c accepts anything: the check proves nothing"
