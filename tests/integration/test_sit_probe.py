"""Call probes hear Special Information Tones: a number that plays them is dead.

The probed number's operator is SIPp answering 183 with audio and no final
answer ever (``operator_sit``), its RTP from a pcap of synthetic tones
(gateway/demo/tones.py). The probe hears the tones, CANCELs, and its verdict is
what the tones mean: for the ITU SIT, what the rules' ``sit.itu`` says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from gateway_process import GatewayProcess
from pcap import write_rtp_pcap
from test_health_probes import health_is, wait_for

from gateway.demo import tones

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import SippFactory

# alone: the tap measures each tone's length from the audio clock, which a loaded
# machine stretches and squeezes (seen beside 3 workers: a 380 ms tone heard as 450 ms).
pytestmark = [pytest.mark.integration, pytest.mark.alone]
LEAD_S = 0.3  # silence before the operator's tones


def rules(operator: str, sit: str) -> str:
    return (
        "version: 1\ntargets:\n"
        f'  main: {{uri: "sip:main@{operator}"}}\n'
        "routes:\n  - name: main-line\n"
        '    match: {to: "+3225550100"}\n'
        "    steps: [{ring: main, timeout: 5s, early_media_timeout: 8s}]\n"
        f"{sit}"
        "health:\n  main: {probe: call, every: 1s, down_after: 2, up_after: 1}\n"
    )


@pytest.mark.parametrize(
    ("sit", "verdict", "state"),
    [("", "unassigned", "unassigned"), ("sit: {itu: unreachable}\n", "unreachable", "down")],
)
def test_call_probe_hears_the_itu_sit_and_the_rules_say_what_it_means(
    sit: str, verdict: str, state: str, sipp: SippFactory, gateway_dir: Path, tmp_path: Path
) -> None:
    pcap = tmp_path / "itu.pcap"
    announcement = tones.announcement(tones.sit(tones.ITU_SIT), seconds=6.0)
    write_rtp_pcap(pcap, np.concatenate((tones.silence(LEAD_S), announcement)))
    operator = sipp("operator_sit", calls=None, timeout_s=60, keys={"pcap": pcap}).start()
    with GatewayProcess(gateway_dir, rules(operator.address, sit)) as gateway:
        dead = wait_for(gateway, "target.health", health_is("main", state), 25)
        probed = operator.collect()
    gateway.assert_clean_exit()
    # The verdict came from the tones, not from a SIP answer.
    assert dead["evidence"]["outcome"] == verdict, dead
    assert dead["evidence"]["sip_code"] is None, dead
    assert "SIT itu" in gateway.log, gateway.describe()
    assert len(probed.received("CANCEL")) >= 2, probed.describe()
    assert not probed.received("BYE"), "a probe held the operator's call"
