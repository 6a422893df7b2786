"""The edge's generated configuration and a worker's capacity rule, in memory."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.config import Settings, TrunkSettings
from gateway.core.admission import Capacity
from gateway.edge.kamailio_cfg import EdgeLayout, address_table, edge_files, uacreg_table
from gateway.edge.supervisor import registration_state
from gateway.edge.worker import behind_edge
from gateway.sip.limits import WHEEL

LAYOUT = EdgeLayout(("192.0.2.5", 5060), (("127.0.0.1", 5061), ("127.0.0.1", 5062)),
                    Path("/var/lib/sip-failover/edge"))  # fmt: skip


def _settings(**trunk: object) -> Settings:
    values: dict[str, object] = {"registrar": "sip:198.51.100.10:5070", "username": "office",
                                 "password": SecretStr("pa:ss\\word"), **trunk}  # fmt: skip
    return Settings(trunk=TrunkSettings.model_validate(values))


def test_the_registration_row_escapes_what_db_text_splits_on() -> None:
    row = uacreg_table(_settings(), LAYOUT).splitlines()[1]
    assert "pa\\:ss\\\\word" in row
    assert row.startswith("1:trunk:office:198.51.100.10\\:5070:office:")


def test_no_registration_row_for_a_trunk_that_sends_to_a_static_address() -> None:
    assert len(uacreg_table(_settings(register_enabled=False), LAYOUT).splitlines()) == 1


def test_only_the_trunk_sources_are_admitted() -> None:
    rows = address_table(_settings(sources=["198.51.100.10", "2001:db8::1"])).splitlines()[1:]
    assert rows == ["1:1:198.51.100.10:32:0:trunk", "2:1:2001\\:db8\\:\\:1:128:0:trunk"]


def test_the_workers_are_the_dispatcher_set_and_legs_go_to_the_trunk_proxy() -> None:
    files = edge_files(_settings(proxy="sip:198.51.100.11"), LAYOUT)
    assert files["dispatcher.list"] == "1 sip:127.0.0.1:5061\n1 sip:127.0.0.1:5062\n"
    cfg = files["kamailio.cfg"]
    assert "listen=udp:192.0.2.5:5060" in cfg
    assert '$rd = "198.51.100.11";' in cfg
    assert "$rp = 5060;" in cfg


def test_a_line_break_in_the_password_is_refused_not_written() -> None:
    with pytest.raises(ValueError, match="line break"):
        edge_files(_settings(password=SecretStr("a\nmodparam")), LAYOUT)


def test_a_worker_trusts_only_the_edge_and_holds_no_credentials() -> None:
    worker = behind_edge(_settings(), "127.0.0.1:5060")
    assert worker.trunk.allowed_sources() == frozenset({"127.0.0.1"})
    assert worker.trunk.outbound_proxy == "sip:127.0.0.1:5060"
    assert not worker.trunk.register_enabled
    assert worker.trunk.password.get_secret_value() == ""


@pytest.mark.parametrize(
    ("inbound", "outbound", "last_resort", "admitted"),
    [
        (0, 0, False, True),  # idle
        (1, 0, False, False),  # a caller not ringing yet still needs its leg
        (1, 1, False, False),  # one call ringing: no room to ring for another
        (1, 1, True, True),  # ... but room for a voicemail
        (2, 1, True, False),  # every leg taken
    ],
)
def test_a_worker_takes_a_caller_only_when_it_can_ring(
    inbound: int, outbound: int, last_resort: bool, admitted: bool
) -> None:
    capacity = Capacity(WHEEL.call_legs)
    assert capacity.room_in_pool(inbound, outbound, last_resort=last_resort) is admitted


@pytest.mark.parametrize(
    ("flags", "state"),
    [(20, "registered"), (18, "registering"), (16, "failed"), (1, "disabled")],
)
def test_the_edge_registration_flags_become_a_state(flags: int, state: str) -> None:
    assert registration_state({"flags": flags, "expires": 300})[0] == state
    assert registration_state(None)[0] == "unknown"
