"""End-to-end failover: the gateway as a process between SIPp callers and phones."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from gateway_process import GatewayProcess
from sipp import RtpSink

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import SippFactory
    from sipp import Sipp

pytestmark = pytest.mark.integration
SILENCE_RMS = 50
CALLED = "+3225550100"


def two_step_rules(
    main: Sipp,
    backups: list[Sipp],
    *,
    failover_on: str,
    kind: str = "ring_all",
    timeout: str = "3s",
    early: str = "1s",
) -> str:
    """Rules: ring ``main``, then the backups (one ring_all/ring_each step)."""
    targets = "".join(f'  b{i}: {{uri: "sip:b{i}@{b.address}"}}\n' for i, b in enumerate(backups))
    names = ", ".join(f"b{i}" for i in range(len(backups)))
    return (
        "version: 1\ntargets:\n"
        f'  main: {{uri: "sip:main@{main.address}"}}\n{targets}'
        "routes:\n  - name: main-line\n"
        f'    match: {{to: "{CALLED}"}}\n    steps:\n'
        f"      - ring: main\n        timeout: {timeout}\n        early_media_timeout: {early}\n"
        f"        failover_on: [{failover_on}]\n"
        f"      - {kind}: [{names}]\n        timeout: 5s\n"
    )


ALL = "unassigned, unreachable, busy, no_answer"


def test_unassigned_main_fails_over_and_audio_flows(sipp: SippFactory, gateway_dir: Path) -> None:
    main = sipp("phone_reject_reason", keys={"code": 404, "cause": 1}).start()
    backup = sipp("phone_answer", rtp_echo=True, keys={"answer_ms": 300}).start()
    with GatewayProcess(gateway_dir, two_step_rules(main, [backup], failover_on=ALL)) as gateway:
        caller = sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 3000})
        with RtpSink(caller.rx_port) as sink:
            called = caller.start().wait()
            sink.drain()
        called.assert_success()
        main.wait().assert_success()
        answered = backup.wait()
        answered.assert_success()
        assert answered.received("BYE"), "the caller's BYE did not end the backup leg"
        assert sink.rms() > SILENCE_RMS, "no echoed audio reached the caller"
    gateway.assert_clean_exit()


@pytest.mark.parametrize(
    ("scenario", "code"),
    [
        ("phone_reject", 604),
        ("phone_reject", 410),
        ("phone_reject", 484),
        ("phone_reject_reason", 480),
    ],
)
def test_unassigned_answers_fail_over(
    sipp: SippFactory, gateway_dir: Path, scenario: str, code: int
) -> None:
    main = sipp(scenario, keys={"code": code, "cause": 1}).start()
    backup = sipp("phone_answer", keys={"answer_ms": 200}).start()
    rules = two_step_rules(main, [backup], failover_on="unassigned")
    with GatewayProcess(gateway_dir, rules) as gateway:
        caller = sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 300})
        caller.start().wait().assert_success()
        backup.wait().assert_success()
    gateway.assert_clean_exit()


@pytest.mark.parametrize(
    ("scenario", "keys", "outcome", "code", "cause"),
    [
        ("phone_reject", {"code": 486}, "busy", 486, 17),
        ("phone_ring_forever", {}, "no_answer", 480, 19),
        ("phone_reject", {"code": 503}, "unreachable", 503, 41),
        ("phone_silent", {}, "unreachable", 503, 41),
    ],
)
@pytest.mark.parametrize("listed", [True, False])
def test_failover_only_on_listed_outcomes(
    sipp: SippFactory,
    gateway_dir: Path,
    scenario: str,
    keys: dict[str, int],
    outcome: str,
    code: int,
    cause: int,
    listed: bool,
) -> None:
    main = sipp(scenario, keys=keys, recv_timeout_ms=8000).start()
    backup = sipp("phone_answer", keys={"answer_ms": 200}).start()
    other = "unassigned" if outcome != "unassigned" else "busy"
    rules = two_step_rules(main, [backup], failover_on=outcome if listed else other, timeout="2s")
    with GatewayProcess(gateway_dir, rules) as gateway:
        if listed:
            sipp(
                "caller_answered", remote=gateway.address, keys={"hold_ms": 300}
            ).start().wait().assert_success()
            backup.wait().assert_success()
        else:
            final = sipp("caller_refused", remote=gateway.address).start().wait().final_response()
            assert (final.status, final.q850_cause) == (code, cause)
            assert not backup.collect().received(), "the backup was rung"
        if scenario == "phone_ring_forever":
            assert main.wait().received("CANCEL"), "the gateway did not CANCEL the ringing phone"
    gateway.assert_clean_exit()


def test_early_media_times_out_and_is_never_heard(sipp: SippFactory, gateway_dir: Path) -> None:
    main = sipp("phone_early_media").start()
    backup = sipp("phone_answer", keys={"answer_ms": 300}).start()
    rules = two_step_rules(main, [backup], failover_on="no_answer, unreachable", early="1s")
    with GatewayProcess(gateway_dir, rules) as gateway:
        caller = sipp("caller_answered", remote=gateway.address, keys={"hold_ms": 500})
        with RtpSink(caller.rx_port) as sink:
            called = caller.start().wait()
            sink.drain()
        called.assert_success()
        answered_at = min((at for at, _ in sink.packets), default=time.monotonic())
        assert not [p for at, p in sink.packets if at < answered_at and p], "early media leaked"
        assert main.wait().received("CANCEL")
        # The backup answers without playing: anything loud came from the announcement.
        assert sink.rms() < SILENCE_RMS, "the other operator's announcement reached the caller"
    gateway.assert_clean_exit()


def test_ring_all_first_answer_wins(sipp: SippFactory, gateway_dir: Path) -> None:
    main = sipp("phone_reject", keys={"code": 404}).start()
    winner = sipp("phone_answer", keys={"answer_ms": 300}).start()
    loser = sipp("phone_ring_forever").start()
    rules = two_step_rules(main, [loser, winner], failover_on="unassigned")
    with GatewayProcess(gateway_dir, rules) as gateway:
        sipp(
            "caller_answered", remote=gateway.address, keys={"hold_ms": 300}
        ).start().wait().assert_success()
        winner.wait().assert_success()
        assert loser.wait().received("CANCEL")
    gateway.assert_clean_exit()


def test_ring_each_tries_in_order(sipp: SippFactory, gateway_dir: Path) -> None:
    main = sipp("phone_reject", keys={"code": 404}).start()
    first = sipp("phone_reject", keys={"code": 486}).start()
    second = sipp("phone_answer", keys={"answer_ms": 200}).start()
    rules = two_step_rules(main, [first, second], failover_on="unassigned", kind="ring_each")
    with GatewayProcess(gateway_dir, rules) as gateway:
        sipp(
            "caller_answered", remote=gateway.address, keys={"hold_ms": 300}
        ).start().wait().assert_success()
        rung_first = first.wait().received("INVITE")[0]
        rung_second = second.wait().received("INVITE")[0]
        assert rung_first.header("Call-ID")
        assert rung_second.header("Call-ID")
    gateway.assert_clean_exit()


def test_registration_challenged_accepted_and_refreshed(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    password = "pw-7f3a9c-never-logged"
    registrar = sipp(
        "registrar", keys={"expires": 40, "password": password}, recv_timeout_ms=60000, timeout_s=70
    ).start()
    phone = sipp("phone_answer")
    with GatewayProcess(
        gateway_dir,
        two_step_rules(phone, [phone], failover_on="busy"),
        registrar=registrar.address,
        password=password,
        expires=40,
    ) as gateway:
        deadline = time.monotonic() + 45
        while len(registrar.collect().sent(status=200)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
    gateway.assert_clean_exit()
    assert password not in gateway.log, "the trunk password reached the log"
    sent = registrar.wait().sent()
    assert sent[0].status == 401
    assert len([m for m in sent if m.status == 200]) >= 2, "no refresh before expiry"


def test_registration_retried_after_503(sipp: SippFactory, gateway_dir: Path) -> None:
    registrar = sipp("registrar_503", keys={"fails": 1}, calls=None, recv_timeout_ms=5000).start()
    phone = sipp("phone_answer")
    with GatewayProcess(
        gateway_dir,
        two_step_rules(phone, [phone], failover_on="busy"),
        registrar=registrar.address,
        expires=60,
    ):
        deadline = time.monotonic() + 20
        while not registrar.collect().sent(status=200) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert registrar.collect().sent(status=200), registrar.collect().describe()


def test_caller_cancel_reaches_every_ringing_backup(sipp: SippFactory, gateway_dir: Path) -> None:
    main = sipp("phone_reject", keys={"code": 404}).start()
    backups = [sipp("phone_ring_forever").start() for _ in range(2)]
    with GatewayProcess(
        gateway_dir, two_step_rules(main, backups, failover_on="unassigned")
    ) as gateway:
        called = (
            sipp("caller_cancels", remote=gateway.address, keys={"ring_ms": 1500}).start().wait()
        )
        called.assert_success()
        assert called.final_response().status == 487
        for backup in backups:
            assert backup.wait().received("CANCEL")
    gateway.assert_clean_exit()


@pytest.mark.parametrize(
    ("scenario", "source", "dial"),
    [
        ("caller_answered", "127.0.0.2", CALLED),
        ("caller_nosdp", "127.0.0.2", CALLED),
        ("caller_nosdp", "127.0.0.1", "+3299999999"),
    ],
)
def test_strangers_and_unknown_numbers_are_refused(
    sipp: SippFactory, gateway_dir: Path, scenario: str, source: str, dial: str
) -> None:
    main = sipp("phone_answer", keys={"answer_ms": 200}, timeout_s=15).start()
    with GatewayProcess(gateway_dir, two_step_rules(main, [main], failover_on="busy")) as gateway:
        stranger = (
            sipp(
                scenario,
                ip=source,
                remote=gateway.address,
                keys={"dial": dial},
                recv_timeout_ms=3000,
            )
            .start()
            .wait()
        )
        assert not any(m.status == 200 for m in stranger.received()), "a stranger got through"
        assert not main.collect().received(), "a phone was rung for a refused call"
        sipp(
            "caller_answered", remote=gateway.address, keys={"hold_ms": 300}
        ).start().wait().assert_success()
        assert gateway.is_alive()
    gateway.assert_clean_exit()
