"""`sip-failover doctor`'s checks one by one: each passes, or fails with what to do."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from gateway.cli.doctor import report
from gateway.cli.doctor.host import check_clock, check_rules, check_state_dir
from gateway.cli.doctor.peers import _final_status, check_sip_port, options_request
from gateway.cli.doctor.result import CheckResult
from gateway.config import SipSettings

if TYPE_CHECKING:
    from pathlib import Path


def test_a_synchronised_clock_passes() -> None:
    result = check_clock((lambda: None, lambda: True))
    assert result.ok
    assert result.detail.startswith("synchronised")


def test_an_unsynchronised_clock_fails_with_how_to_enable_time_sync() -> None:
    result = check_clock((lambda: False, lambda: True))  # the first that can tell wins
    assert not result.ok
    assert "timedatectl set-ntp true" in result.fix


def test_a_clock_nobody_can_tell_about_is_unknown_not_a_failure() -> None:
    result = check_clock((lambda: None, lambda: None))
    assert result.ok
    assert result.detail.startswith("unknown")


def test_a_writable_state_folder_with_room_passes(tmp_path: Path) -> None:
    result = check_state_dir(tmp_path / "state")
    assert result.ok
    assert (tmp_path / "state").is_dir()
    assert list((tmp_path / "state").iterdir()) == []  # the probe file is gone


def test_a_state_folder_that_is_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("not a folder")
    result = check_state_dir(tmp_path / "state")
    assert not result.ok
    assert "cannot write" in result.detail
    assert "SIP_FAILOVER_STATE_DIR" in result.fix


def test_a_full_disk_fails_and_says_how_much_is_free(tmp_path: Path) -> None:
    result = check_state_dir(tmp_path, min_free=2**62)
    assert not result.ok
    assert "MB free" in result.detail


def test_rules_are_checked_with_the_engines_legs(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("""version: 1
targets:
  a: {uri: "sip:a@192.0.2.1"}
  b: {uri: "sip:b@192.0.2.2"}
  c: {uri: "sip:c@192.0.2.3"}
routes:
  - name: main
    match: {to: "+3225550100"}
    steps: [{ring_all: [a, b, c]}]
""", encoding="utf-8")  # fmt: skip
    wheel = check_rules(path, call_legs=3)
    assert not wheel.ok
    assert f"{path}:9:" in wheel.detail
    assert check_rules(path, call_legs=7).ok


def test_a_taken_sip_port_fails_with_the_setting_to_change() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        result = check_sip_port(SipSettings(listen=f"127.0.0.1:{port}"), "udp")
    assert not result.ok
    assert "SIP_FAILOVER_SIP__LISTEN" in result.fix
    assert check_sip_port(SipSettings(listen=f"127.0.0.1:{port}"), "udp").ok


def test_options_is_a_well_formed_request_with_a_fresh_branch() -> None:
    one = options_request("trunk.example.net", 5060, "udp", ("192.0.2.9", 40000)).decode()
    two = options_request("trunk.example.net", 5060, "udp", ("192.0.2.9", 40000)).decode()
    lines = one.split("\r\n")
    assert lines[0] == "OPTIONS sip:trunk.example.net:5060 SIP/2.0"
    via = next(line for line in lines if line.startswith("Via: "))
    assert via.startswith("Via: SIP/2.0/UDP 192.0.2.9:40000;branch=z9hG4bK")
    assert via not in two  # RFC 3261 8.1.1.7: a new branch per request
    assert "CSeq: 1 OPTIONS" in lines
    assert one.endswith("Content-Length: 0\r\n\r\n")


def test_only_a_final_response_ends_the_wait() -> None:
    assert _final_status(b"SIP/2.0 100 Trying\r\n\r\n") is None
    assert _final_status(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n") == "200 OK"
    assert _final_status(b"SIP/2.0 405 Method Not Allowed\r\n\r\n") == "405 Method Not Allowed"
    assert _final_status(b"OPTIONS sip:x SIP/2.0\r\n\r\n") is None


def test_the_report_gives_each_failure_its_fix() -> None:
    text = report([CheckResult.passed("engine", "4 call slots"),
                   CheckResult.failed("mqtt", "refused", "start the broker")])  # fmt: skip
    assert text.splitlines() == [
        "ok    engine  4 call slots",
        "FAIL  mqtt    refused",
        "              fix: start the broker",
        "1 of 2 checks failed",
    ]
