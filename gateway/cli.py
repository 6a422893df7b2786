"""The ``sip-failover`` command: run · demo · check · explain · calls · status."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import uvloop


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sip-failover",
        description="SIP failover gateway: when the main line answers 'unassigned', "
        "is busy, unreachable or does not answer, ring the backups.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve calls (settings from SIP_FAILOVER_* / .env)")
    demo = sub.add_parser("demo", help="replay the 'operator lost our number' outage on loopback")
    demo.add_argument("--quiet", action="store_true", help="only the timeline and the mail")
    check = sub.add_parser("check", help="check rules files; one file:line: message per problem")
    check.add_argument("rules", nargs="+", type=Path)
    explain = sub.add_parser("explain", help="which route and steps a call would take")
    explain.add_argument("rules", type=Path)
    explain.add_argument("--to", required=True, help="the called number")
    explain.add_argument("--from", dest="from_", help="the caller's number")
    explain.add_argument("--at", type=datetime.fromisoformat, help="ISO time of the call")
    explain.add_argument("--json", action="store_true", help="JSON for scripts")
    explain.add_argument("--mode", choices=["normal", "force-backup", "closed"],
                         help="as if this mode were set over MQTT (cmd/mode)")  # fmt: skip
    explain.add_argument(
        "--health",
        action="append",
        default=[],
        type=_health_pair,
        metavar="TARGET=STATE",
        help="a target's health (up, down, unassigned, unknown); repeatable",
    )
    calls = sub.add_parser("calls", help="the call log (SIP_FAILOVER_STATE_DIR/calls.sqlite3)")
    calls.add_argument("--since", help="only calls since: 24h, 7d, 30m, 2w or an ISO time")
    calls.add_argument(
        "--missed",
        action="store_true",
        help="the call-back list: whom nobody spoke to, newest first",
    )
    status = sub.add_parser("status", help="the running gateway's live state")
    status.add_argument("--json", action="store_true", help="the status file as it is")
    probe = sub.add_parser("probe", help="probe one target now and print what the network says")
    probe.add_argument("target", help="a target name from the rules")
    probe.add_argument("--kind", choices=["call", "options"], help="default: the rules' probe")
    return parser


def _health_pair(text: str) -> tuple[str, str]:
    name, sep, state = text.partition("=")
    if not sep or state not in {"up", "down", "unassigned", "unknown"}:
        raise argparse.ArgumentTypeError("expected TARGET=up|down|unassigned|unknown")
    return name, state


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    if args.command == "check":
        from gateway.rules_cli import check  # noqa: PLC0415 - keep pjsua out of check/explain

        return check(args.rules, sys.stdout)
    if args.command == "explain":
        from gateway.rules_cli import explain  # noqa: PLC0415

        return explain(args.rules, args.to, args.from_, args.at, args.json, sys.stdout,
                       dict(args.health), args.mode)  # fmt: skip
    if args.command == "demo":
        from gateway.demo import run_demo  # noqa: PLC0415

        return run_demo(quiet=args.quiet)
    if args.command == "probe":
        from gateway.probe_cli import probe  # noqa: PLC0415 - pjsua only for this command

        return probe(args.target, args.kind, sys.stdout, sys.stderr)
    if args.command in {"calls", "status"}:
        return _read_state(args)
    return _run()


def _read_state(args: argparse.Namespace) -> int:
    """``calls`` and ``status``: read the state folder of the gateway's settings."""
    from gateway.config import StateSettings  # noqa: PLC0415 - keep pjsua out of reading commands
    from gateway.status import commands  # noqa: PLC0415

    state_dir = StateSettings().state_dir
    now = datetime.now(UTC)
    if args.command == "calls":
        return commands.calls(state_dir, args.since, missed=args.missed, now=now,
                              out=sys.stdout, err=sys.stderr)  # fmt: skip
    return commands.status(state_dir, as_json=args.json, now=now, out=sys.stdout, err=sys.stderr)


def _run() -> int:
    from gateway.app import serve, setup_logging  # noqa: PLC0415
    from gateway.config_check import checked_settings  # noqa: PLC0415

    settings = checked_settings(sys.stderr)
    if settings is None:
        return 2
    setup_logging(settings.log_level)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(settings))
