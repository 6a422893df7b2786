"""``sip-failover doctor``: is everything the gateway needs there and working?

One line per check, and for each failure what to do about it. Each check is a
small function that returns a `CheckResult` (gateway/cli/doctor/host.py: the
machine; gateway/cli/doctor/peers.py: the peers). Exit 0 when all pass, 1 when one
fails. Nothing is changed and no mail is sent unless ``--send-test-mail``.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
from email.message import EmailMessage
from typing import TYPE_CHECKING, TextIO

from gateway.cli.doctor.host import check_clock, check_engine, check_rules, check_state_dir
from gateway.cli.doctor.peers import check_mqtt, check_sip_port, check_smtp, check_trunk
from gateway.cli.doctor.result import CheckResult
from gateway.config_check import checked_settings
from gateway.sip.limits import WHEEL

if TYPE_CHECKING:
    from collections.abc import Collection

    from gateway.config import Settings

__all__ = ["CHECKS", "CheckResult", "doctor"]

CHECKS = ("settings", "engine", "rules", "sip port", "trunk", "smtp", "mqtt", "state folder",
          "clock")  # fmt: skip
EXIT_OK = 0
EXIT_FAILED = 1


def doctor(out: TextIO, *, as_json: bool = False, send_test_mail: str | None = None,
           skip: Collection[str] = ()) -> int:  # fmt: skip
    """Run every check not in ``skip``, print the report to ``out``, return the exit code."""
    results = [r for r in asyncio.run(_checks(send_test_mail, skip)) if r.name not in skip]
    if as_json:
        document = {"ok": all(r.ok for r in results),
                    "checks": [r.__dict__ for r in results]}  # fmt: skip
        out.write(json.dumps(document, indent=2) + "\n")
    else:
        out.write(report(results))
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def report(results: list[CheckResult]) -> str:
    """One line per check; a failure's fix on the line below it."""
    width = max((len(r.name) for r in results), default=0)
    lines = []
    for result in results:
        lines.append(f"{'ok  ' if result.ok else 'FAIL'}  {result.name.ljust(width)}  "
                     f"{result.detail}")  # fmt: skip
        if not result.ok:
            lines.append(f"      {' ' * width}  fix: {result.fix}")
    failed = sum(not r.ok for r in results)
    lines.append(f"{failed} of {len(results)} checks failed" if failed else
                 f"all {len(results)} checks passed")  # fmt: skip
    return "\n".join(lines) + "\n"


async def _checks(send_test_mail: str | None, skip: Collection[str]) -> list[CheckResult]:
    settings, said = _settings()
    engine, limits = check_engine() if "engine" not in skip else (None, None)
    results = [said] + ([engine] if engine is not None else [])
    if settings is not None:
        legs = (limits or WHEEL).call_legs
        mail = _test_mail(settings, send_test_mail) if send_test_mail else None
        results += [
            check_rules(settings.rules, legs),
            check_sip_port(settings.sip, settings.trunk.transport),
            *await asyncio.gather(
                check_trunk(settings.trunk), check_smtp(settings.smtp, mail),
                check_mqtt(settings.mqtt),
            ),
            check_state_dir(settings.state_dir),
        ]
    return [*results, check_clock()]


def _settings() -> tuple[Settings | None, CheckResult]:
    problems = io.StringIO()
    settings = checked_settings(problems)
    if settings is None:
        lines = [line.removeprefix("settings: ") for line in problems.getvalue().splitlines()]
        errors = [line for line in lines if not line.startswith("warning: ")]
        return None, CheckResult.failed("settings", "; ".join(errors),
                                        "set the variables named (`sip-failover run --help` "
                                        "lists them); the other checks need them")  # fmt: skip
    return settings, CheckResult.passed("settings", f"gateway {settings.gateway_id}")


def _test_mail(settings: Settings, to: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = settings.smtp.from_
    mail["To"] = to
    mail["Subject"] = f"sip-failover doctor: test mail from {settings.gateway_id}"
    mail.set_content(
        f"A test mail sent by `sip-failover doctor --send-test-mail` on "
        f"{socket.gethostname()}. Voicemail and alerts will come the same way.\n"
    )
    return mail
