"""The ``sip-failover`` command: run · demo · check · explain."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from pathlib import Path

import uvloop
from pydantic import ValidationError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sip-failover",
        description="SIP failover gateway: when the main line answers 'unassigned', "
        "is busy, unreachable or does not answer, ring the backups.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve calls (settings from SIP_FAILOVER_* / .env)")
    demo = sub.add_parser("demo", help="replay the 'operator lost our number' outage on loopback")
    demo.add_argument("--quiet", action="store_true", help="only the call's timeline")
    check = sub.add_parser("check", help="check rules files; one file:line: message per problem")
    check.add_argument("rules", nargs="+", type=Path)
    explain = sub.add_parser("explain", help="which route and steps a call would take")
    explain.add_argument("rules", type=Path)
    explain.add_argument("--to", required=True, help="the called number")
    explain.add_argument("--from", dest="from_", help="the caller's number")
    explain.add_argument("--at", type=datetime.fromisoformat, help="ISO time of the call")
    explain.add_argument("--json", action="store_true", help="JSON for scripts")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        from gateway.rules_cli import check  # noqa: PLC0415 - keep pjsua out of check/explain

        return check(args.rules, sys.stdout)
    if args.command == "explain":
        from gateway.rules_cli import explain  # noqa: PLC0415

        return explain(args.rules, args.to, args.from_, args.at, args.json, sys.stdout)
    if args.command == "demo":
        from gateway.demo import run_demo  # noqa: PLC0415

        return run_demo(quiet=args.quiet)
    return _run()


def _run() -> int:
    from gateway.app import serve, setup_logging  # noqa: PLC0415
    from gateway.config import Settings  # noqa: PLC0415

    try:
        settings = Settings()
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(p) for p in problem["loc"])
            print(
                f"settings: SIP_FAILOVER_{where.upper().replace('.', '__')}: {problem['msg']}",
                file=sys.stderr,
            )
        return 2
    setup_logging(settings.log_level)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(settings))
