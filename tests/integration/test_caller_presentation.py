"""Whoever answers sees who is calling: the caller's identity on every leg.

The backup phone's scenario (``phone_checks_caller``) fails the call unless
the INVITE's From, P-Asserted-Identity and Diversion/History-Info headers
match what the test expects, so a leg that hides the caller cannot pass.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from gateway_process import GatewayProcess
from rulesets import CALLED

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import SippFactory
    from sipp import Sipp

pytestmark = pytest.mark.integration
CLI = "+32470999999"  # caller_answered's calling number (the key "cli")
BACKUP = "+32470000002"
WITH_PAI = {"SIP_FAILOVER_TRUNK__ASSERT_IDENTITY": "true"}


def failover_rules(main: Sipp, backup: str) -> str:
    """Ring ``main`` (a SIP URI), then ``backup`` (a target's YAML value)."""
    return (
        "version: 1\ntargets:\n"
        f'  main: {{uri: "sip:main@{main.address}"}}\n'
        f"  backup: {backup}\n"
        "routes:\n  - name: main-line\n"
        f'    match: {{to: "{CALLED}"}}\n    steps:\n'
        "      - ring: main\n        timeout: 3s\n        failover_on: [unassigned]\n"
        "      - ring: backup\n        timeout: 5s\n"
    )


def call_through(
    sipp: SippFactory, gateway_dir: Path, backup_keys: dict[str, str], env: dict[str, str],
    *, through_trunk: bool = True, caller: str = "caller_answered",
) -> Sipp:  # fmt: skip
    """A call whose main line answers 404 and whose backup is ``phone_checks_caller``."""
    main = sipp("phone_reject", keys={"code": 404}).start()
    backup = sipp("phone_checks_caller", keys={"answer_ms": 200, **backup_keys}).start()
    target = f'{{number: "{BACKUP}"}}' if through_trunk else f'{{uri: "sip:desk@{backup.address}"}}'
    proxy = backup.address if through_trunk else None
    rules = failover_rules(main, target)
    with GatewayProcess(gateway_dir, rules, proxy=proxy, env=env) as gateway:
        sipp(caller, remote=gateway.address, keys={"hold_ms": 300}).start().wait().assert_success()
        main.wait().assert_success()
        backup.wait()
    gateway.assert_clean_exit()
    return backup


def test_the_backup_through_the_trunk_sees_the_callers_number(
    sipp: SippFactory, gateway_dir: Path
) -> None:
    # Defaults of phone_checks_caller: From "+32470999999" <sip:+32470999999@…>,
    # P-Asserted-Identity <sip:+32470999999@…>, Diversion naming the public number.
    backup = call_through(sipp, gateway_dir, {}, WITH_PAI)
    backup.collect().assert_success()
    invite = backup.collect().received("INVITE")[0]
    assert CLI in (invite.header("From") or ""), invite.text


def test_a_desk_phone_sees_the_caller_too(sipp: SippFactory, gateway_dir: Path) -> None:
    backup = call_through(sipp, gateway_dir, {}, WITH_PAI, through_trunk=False)
    backup.collect().assert_success()


def test_history_info_instead_of_diversion(sipp: SippFactory, gateway_dir: Path) -> None:
    keys = {
        "redirect_header": "History-Info",
        "redirect_re": (
            rf"^[ \t]*<sip:{re.escape(CALLED)}@[^>]*>;index=1,[ \t]*"
            rf"<sip:{re.escape(BACKUP)}@[^>]*;cause=302>;index=1\.1;mp=1"
        ),
    }
    env = {**WITH_PAI, "SIP_FAILOVER_TRUNK__REDIRECT_HEADER": "history-info"}
    call_through(sipp, gateway_dir, keys, env).collect().assert_success()


def test_public_setting_presents_the_public_number(sipp: SippFactory, gateway_dir: Path) -> None:
    public = re.escape(CALLED)
    keys = {
        "from_re": rf'^[ \t]*"{public}"[ \t]*<sip:{public}@',
        "pai_re": rf"^[ \t]*<sip:{public}@",
    }
    env = {**WITH_PAI, "SIP_FAILOVER_TRUNK__PRESENT": "public"}
    backup = call_through(sipp, gateway_dir, keys, env)
    backup.collect().assert_success()
    assert CLI not in backup.collect().received("INVITE")[0].text


def test_an_anonymous_caller_stays_anonymous(sipp: SippFactory, gateway_dir: Path) -> None:
    # The trunk asserts the real number but the caller asked for privacy.
    keys = {
        "from_re": r'^[ \t]*"Anonymous"[ \t]*<sip:anonymous@anonymous\.invalid>',
        "pai_header": "Privacy",  # passed on (RFC 3323); no P-Asserted-Identity below
        "pai_re": r"^[ \t]*id[ \t]*$",
        "redirect_re": rf"^[ \t]*<sip:{re.escape(CALLED)}@",
    }
    backup = call_through(sipp, gateway_dir, keys, WITH_PAI, caller="caller_anonymous")
    backup.collect().assert_success()
    invite = backup.collect().received("INVITE")[0]
    anonymous = r"^\"Anonymous\" <sip:anonymous@anonymous\.invalid>"
    assert re.search(anonymous, invite.header("From") or ""), invite.text
    assert invite.header("Privacy") == "id", invite.text
    assert invite.header("P-Asserted-Identity") is None, invite.text
    assert CLI not in invite.text, "the withheld number reached the backup"
