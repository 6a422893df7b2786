"""Numbers in the forms trunks send, end to end: the trunk is SIPp, so is the phone."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from gateway_process import GatewayProcess

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import SippFactory

pytestmark = pytest.mark.integration


def belgian_rules(target: str) -> str:
    """The public number in E.164, its one target as written; numbers read in BE."""
    return f"""version: 1
country: BE
targets:
  phone: {target}
routes:
  - name: main-line
    match: {{to: "+3225550100"}}
    steps:
      - ring: phone
        timeout: 5s
"""


def incoming(log: str) -> list[dict[str, object]]:
    """The ``call.incoming`` events the gateway logged (what the feed and call log get)."""
    marker = "event call.incoming "
    return [json.loads(line.split(marker, 1)[1]) for line in log.splitlines() if marker in line]


def test_a_call_to_the_national_form_of_the_public_number_is_routed(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    phone = sipp("phone_answer", keys={"answer_ms": 200}).start()
    rules = belgian_rules(f'{{uri: "sip:phone@{phone.address}"}}')
    with GatewayProcess(gateway_dir, rules) as gateway:
        caller = sipp("caller_answered", remote=gateway.address,
                      keys={"dial": "025550100", "cli": "0470999999", "hold_ms": 300})  # fmt: skip
        caller.start().wait().assert_success()
        phone.wait().assert_success()
    gateway.assert_clean_exit()
    (event,) = incoming(gateway.log)
    assert (event["called"], event["caller"]) == ("+3225550100", "+32470999999")


@pytest.mark.parametrize(
    ("dial_format", "dialled"),
    [("national", "0480000002"), ("international_00", "0032480000002")],
)
def test_numbers_are_dialled_in_the_form_the_trunk_expects(
    sipp: SippFactory, gateway_dir: Path, dial_format: str, dialled: str
) -> None:
    trunk = sipp("phone_answer", keys={"answer_ms": 200}).start()  # the trunk's proxy
    with GatewayProcess(
        gateway_dir,
        belgian_rules('{number: "0480 00 00 02"}'),
        proxy=trunk.address,
        env={"SIP_FAILOVER_TRUNK__DIAL_FORMAT": dial_format},
    ) as gateway:
        caller = sipp("caller_answered", remote=gateway.address,
                      keys={"dial": "3225550100", "hold_ms": 300})  # fmt: skip
        caller.start().wait().assert_success()
        (invite,) = trunk.wait().received("INVITE")
    gateway.assert_clean_exit()
    assert invite.first_line.startswith(f"INVITE sip:{dialled}@"), invite.first_line
