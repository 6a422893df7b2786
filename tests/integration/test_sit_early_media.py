"""Operators that answer 183 and play tones: the gateway hears SIT and fails over.

Each operator is SIPp playing PCMU RTP from a pcap generated here from
synthetic audio (gateway/demo/tones.py): SIT + announcement for each code, and
ringback, busy, speech and music that must never be taken for SIT.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from gateway_process import GatewayProcess, observed
from pcap import write_rtp_pcap
from sipp import RtpSink

from gateway.core.sit import SitCode
from gateway.demo import tones

if TYPE_CHECKING:
    from conftest import SippFactory
    from sipp import Sipp

# alone: the tap measures each tone's length from the audio clock, which a loaded
# machine stretches and squeezes (seen beside 3 workers: a 380 ms tone heard as 450 ms).
pytestmark = [pytest.mark.integration, pytest.mark.alone]
CALLED = "+3225550100"
LEAD_S = 0.3  # silence before the operator's tones
SILENCE_RMS = 50
_HEARD = re.compile(r"leg \S+: SIT (\S+) .* at \+(\d+\.\d+) s: (\w+)")
_TAP = re.compile(r".*leg \S+: SIT (?:tap off|bands heard).*")
QUIET_WAIT_S = 15.0  # the legs end, then RTP is read 2 s more (gateway/sip/idle.py)
DEBUG = {"SIP_FAILOVER_LOG_LEVEL": "DEBUG"}  # the tap logs the SIT bands it heard
_EXPECTED = {
    SitCode.INTERCEPT: "unassigned",
    SitCode.VACANT_CODE: "unassigned",
    SitCode.NO_CIRCUIT: "unreachable",
    SitCode.NO_CIRCUIT_LOCAL: "unreachable",
    SitCode.REORDER: "unreachable",
    SitCode.REORDER_LOCAL: "unreachable",
    SitCode.INEFFECTIVE_OTHER: "failed",
    SitCode.RESERVED: "failed",
    SitCode.ITU: "unassigned",
}


def rules(operator: Sipp, backup: Sipp, early: str = "8s") -> str:
    return (
        "version: 1\ntargets:\n"
        f'  main: {{uri: "sip:main@{operator.address}"}}\n'
        f'  backup: {{uri: "sip:backup@{backup.address}"}}\n'
        "routes:\n  - name: main-line\n"
        f'    match: {{to: "{CALLED}"}}\n    steps:\n'
        f"      - ring: main\n        timeout: 15s\n        early_media_timeout: {early}\n"
        "        failover_on: [unassigned, unreachable, failed, no_answer]\n"
        "      - ring: backup\n        timeout: 5s\n"
    )


def pcap_of(folder: Path, name: str, audio: np.ndarray) -> Path:
    path = folder / f"{name}.pcap"
    write_rtp_pcap(path, np.concatenate((tones.silence(LEAD_S), audio)))
    return path


def sit_audio(code: SitCode) -> np.ndarray:
    pattern = tones.sit(tones.ITU_SIT) if code is SitCode.ITU else tones.telcordia(code)
    return tones.announcement(pattern, seconds=6.0)


def what_the_tap_heard(gateway: GatewayProcess) -> str:
    """The tap's own account, for a failure message: how long, and which tones."""
    lines = [line.strip() for line in _TAP.findall(gateway.log)]
    return "\n".join(["--- what the SIT tap heard ---", *lines, gateway.describe()])


def call_through(sipp: SippFactory, gateway: GatewayProcess) -> float:
    """A caller's call that the backup answers; returns the loudness the caller heard."""
    caller = sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 500})
    with RtpSink(caller.rx_port) as sink:
        called = caller.start().wait()
        sink.drain()
    called.assert_success()
    return sink.rms()


@pytest.mark.parametrize("code", list(SitCode))
def test_sit_in_early_media_cancels_the_leg_and_the_caller_reaches_the_backup(
    code: SitCode, sipp: SippFactory, gateway_dir: Path, tmp_path: Path
) -> None:
    pcap = pcap_of(tmp_path, code.value, sit_audio(code))
    operator = sipp("operator_sit", keys={"pcap": pcap}).start()
    backup = sipp("phone_answer", keys={"answer_ms": 300}).start()
    with GatewayProcess(gateway_dir, rules(operator, backup), env=DEBUG) as gateway:
        heard = call_through(sipp, gateway)
        backup.wait().assert_success()
        cancelled = operator.wait()
        assert cancelled.received("CANCEL"), cancelled.describe()
        found = _HEARD.search(gateway.log)
        assert found is not None, what_the_tap_heard(gateway)
        verdict = (found.group(1), found.group(3))
        assert verdict == (code.value, _EXPECTED[code]), what_the_tap_heard(gateway)
        assert float(found.group(2)) - LEAD_S <= 1.0, found.group(0)
        # The backup answers without playing: anything loud came from the operator.
        assert heard < SILENCE_RMS, "the operator's announcement reached the caller"
    gateway.assert_clean_exit()


@pytest.mark.parametrize(
    ("name", "audio"),
    [
        ("ringback", tones.ringback_eu(5.0)),
        ("busy", tones.busy_eu(5.0)),
        ("speech", tones.voice(5.0, seed=21)),
        ("music", tones.music(5.0, seed=22)),
    ],
)
def test_other_early_media_is_never_taken_for_sit(
    name: str, audio: np.ndarray, sipp: SippFactory, gateway_dir: Path, tmp_path: Path
) -> None:
    operator = sipp("operator_sit", keys={"pcap": pcap_of(tmp_path, name, audio)}).start()
    backup = sipp("phone_answer", keys={"answer_ms": 300}).start()
    with GatewayProcess(gateway_dir, rules(operator, backup, early="3s"), env=DEBUG) as gateway:
        call_through(sipp, gateway)
        backup.wait().assert_success()
        assert operator.wait().received("CANCEL")
        assert "SIT tap off after" in gateway.log, "the early media was not listened to"
        assert not _HEARD.search(gateway.log), what_the_tap_heard(gateway)
    gateway.assert_clean_exit()


def test_sit_is_heard_on_a_call_that_comes_after_rtp_reading_stopped(
    sipp: SippFactory, gateway_dir: Path, tmp_path: Path
) -> None:
    """RTP is read only while legs are up: each call here starts it again."""
    code = SitCode.VACANT_CODE
    pcap = pcap_of(tmp_path, code.value, sit_audio(code))
    operator = sipp("operator_sit", keys={"pcap": pcap}, calls=2).start()
    backup = sipp("phone_answer", keys={"answer_ms": 300}, calls=2).start()
    with GatewayProcess(gateway_dir, rules(operator, backup), env=DEBUG) as gateway:
        for calls in (1, 2):
            call_through(sipp, gateway)
            off = observed(QUIET_WAIT_S, lambda n=calls: gateway.log.count("media poll off") >= n)
            assert off, f"RTP still read {QUIET_WAIT_S} s after call {calls}\n{gateway.describe()}"
        heard = [found[0] for found in _HEARD.findall(gateway.log)]
        assert heard == [code.value, code.value], what_the_tap_heard(gateway)
    gateway.assert_clean_exit()


def test_listening_for_sit_does_not_load_numpy(
    sipp: SippFactory, gateway_dir: Path, tmp_path: Path
) -> None:
    """numpy was 13 MB of the gateway once a leg had been listened to."""
    pcap = pcap_of(tmp_path, "itu", sit_audio(SitCode.ITU))
    operator = sipp("operator_sit", keys={"pcap": pcap}).start()
    backup = sipp("phone_answer", keys={"answer_ms": 300}).start()
    with GatewayProcess(gateway_dir, rules(operator, backup), env=DEBUG) as gateway:
        call_through(sipp, gateway)
        assert _HEARD.search(gateway.log), what_the_tap_heard(gateway)
        assert gateway.process is not None
        maps = Path(f"/proc/{gateway.process.pid}/maps").read_text()
        loaded = sorted({line.rsplit("/", 1)[-1] for line in maps.splitlines() if "numpy" in line})
        assert not loaded, f"numpy is loaded: {loaded}"
    gateway.assert_clean_exit()
