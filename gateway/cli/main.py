"""The ``sip-failover`` command: run · demo · check · explain · calls · status."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import uvloop
from pydantic import BaseModel, SecretStr

from gateway.core.health import HealthState

# A closed stdout (``| head``): the shell's status for a writer killed by
# SIGPIPE, not 1, which ``status`` uses for "not running".
EXIT_BROKEN_PIPE = 141
_RAW = argparse.RawDescriptionHelpFormatter


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sip-failover",
        description="SIP failover gateway: when the main line answers 'unassigned', "
        "is busy, unreachable or does not answer, ring the backups.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="serve calls (settings from SIP_FAILOVER_* / .env)",
        description="Register to the trunk, take its calls and ring the targets the rules "
        "name, failing over step by step; publish status on MQTT, mail voicemail. Runs "
        "until SIGTERM/SIGINT (a second one skips the grace period); SIGHUP reloads the "
        "rules. Settings come from the environment, a .env file in the working folder, "
        "or one file per setting in SIP_FAILOVER_SECRETS_DIR.",
        epilog=_settings_help(),
        formatter_class=_RAW,
    )
    run.add_argument(
        "--log-json", action="store_true", help="one JSON object per log line (log shippers)"
    )
    pool = run.add_mutually_exclusive_group()
    pool.add_argument("--workers", type=_at_least_two, metavar="N",
                      help="Kamailio as the edge with N gateway workers behind it")  # fmt: skip
    pool.add_argument("--edge", metavar="ADDRESS",
                      help="a worker behind the edge at ADDRESS (host:port)")  # fmt: skip
    sub.add_parser(
        "edge",
        help="the Kamailio edge alone (workers: SIP_FAILOVER_EDGE__WORKERS)",
        description="Run only the Kamailio edge: register the public number with the trunk, "
        "admit the trunk's calls and dispatch them to the workers listed in "
        "SIP_FAILOVER_EDGE__WORKERS (docs/scaling.md).",
    )
    demo = sub.add_parser(
        "demo",
        help="replay the 'operator lost our number' outage on loopback",
        description="Replay the outage on 127.0.0.1 with simulated operator, phones and "
        "mail server: the main line answers 'unassigned', the call fails over to a "
        "backup; a second caller leaves a voicemail, which is mailed and shown. Needs "
        "no settings and touches nothing outside a temporary folder.",
    )
    demo.add_argument("--quiet", action="store_true", help="only the timeline and the mail")
    check = sub.add_parser(
        "check",
        help="check rules files; one file:line: message per problem",
        description="Check rules files without running anything. Exit 0 when every file "
        "is valid, 1 with one 'file:line: message' per problem.",
    )
    check.add_argument("rules", nargs="+", type=Path)
    explain = sub.add_parser(
        "explain",
        help="which route and steps a call would take",
        description="Show which route a call to --to would match and the steps it would "
        "go through, at --at (default: now) and with the given targets' health.",
    )
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
    calls = sub.add_parser(
        "calls",
        help="the call log (SIP_FAILOVER_STATE_DIR/calls.sqlite3)",
        description="Print the call log of the gateway whose state folder is "
        "SIP_FAILOVER_STATE_DIR (default: ./state), newest first.",
    )
    calls.add_argument("--since", help="only calls since: 24h, 7d, 30m, 2w or an ISO time")
    calls.add_argument(
        "--missed",
        action="store_true",
        help="the call-back list: whom nobody spoke to, newest first",
    )
    calls.add_argument("--json", action="store_true",
                       help="one JSON object per line (docs/schemas/call.schema.json)")  # fmt: skip
    status = sub.add_parser(
        "status",
        help="the running gateway's live state",
        description="Print the live state of the gateway whose state folder is "
        "SIP_FAILOVER_STATE_DIR (default: ./state): registration, targets' health, calls, "
        "rules, MQTT link. Exit 0 when it runs, 1 when it does not.",
    )
    status.add_argument("--json", action="store_true", help="the status file as it is")
    probe = sub.add_parser(
        "probe",
        help="probe one target now and print what the network says",
        description="Probe one target of the rules (SIP_FAILOVER_RULES) now, from a SIP "
        "endpoint of its own on a free port (no registration), and print the answer and "
        "the health verdict it would give. Exit 0 when the probe ran, 2 for bad "
        "settings, rules or target.",
    )
    doctor = sub.add_parser(
        "doctor",
        help="check the engine, the rules, the SIP port and every peer, one line each",
        description="Check what the gateway needs, with the settings `run` would use: the SIP "
        "engine and its real limits, the rules file, the SIP port, the trunk (OPTIONS), the "
        "mail server (connection and login), the MQTT broker, the state folder and the "
        "clock. Each failure comes with its fix. Exit 0 when all pass, 1 otherwise.",
    )
    doctor.add_argument("--json", action="store_true", help="the results as one JSON object")
    doctor.add_argument("--send-test-mail", metavar="ADDRESS",
                        help="also send a test mail to ADDRESS")  # fmt: skip
    doctor.add_argument("--skip", action="append", default=[], metavar="CHECK",
                        choices=["engine", "rules", "sip port", "trunk", "smtp", "mqtt",
                                 "state folder", "clock"],
                        help="leave a check out (repeatable), e.g. clock in a container "
                        "whose host keeps the time")  # fmt: skip
    probe.add_argument("target", help="a target name from the rules")
    probe.add_argument("--kind", choices=["call", "options"], help="default: the rules' probe")
    return parser


def _settings_help() -> str:
    """The settings ``run`` reads, one line each, from the settings model itself."""
    from gateway.config import Settings  # noqa: PLC0415 - pydantic only, no pjsua

    lines = ["settings (environment, .env or SIP_FAILOVER_SECRETS_DIR):"]
    lines += _settings_lines(Settings, "SIP_FAILOVER_")
    return "\n".join(lines)


def _settings_lines(model: type[BaseModel], prefix: str) -> list[str]:
    """``PREFIX_NAME [default]: meaning`` for each field, sections flattened (``__``)."""
    lines = []
    for name, field in model.model_fields.items():
        variable = prefix + (field.alias or name).upper()
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            lines += _settings_lines(section, variable + "__")
            continue
        default: object = field.default
        if field.is_required():
            default = "required"
        elif field.default_factory is not None:
            default = "(host name)" if name == "gateway_id" else None
        lines.append(_setting(variable, default, field.description))
    return lines


def _setting(variable: str, default: object, meaning: str | None) -> str:
    if isinstance(default, SecretStr):
        default, meaning = None, "a secret: best as a file in SIP_FAILOVER_SECRETS_DIR"
    default = getattr(default, "value", default)  # enums: their value
    shown = "" if default in (None, "", []) else f" [{default}]"
    return f"  {variable}{shown}" + (f": {meaning}" if meaning else "")


def _at_least_two(text: str) -> int:
    count = int(text)
    if count < 2:
        raise argparse.ArgumentTypeError("a pool needs 2 workers or more")
    return count


def _health_pair(text: str) -> tuple[str, HealthState]:
    name, sep, state = text.partition("=")
    if not sep or state not in set(HealthState):
        raise argparse.ArgumentTypeError("expected TARGET=up|down|unassigned|unknown")
    return name, HealthState(state)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script.

    A reader that goes away early (``sip-failover status --json | head -1``)
    ends the command quietly, as the Python docs' "Note on SIGPIPE" advises:
    no traceback, exit 141 like a tool killed by SIGPIPE.
    """
    try:
        try:
            return _command(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not in the exit's flush
    except BrokenPipeError:
        # Point stdout at /dev/null: the interpreter flushes it again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _command(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        from gateway.cli.rules import check  # noqa: PLC0415 - keep pjsua out of check/explain

        return check(args.rules, sys.stdout)
    if args.command == "explain":
        from gateway.cli.rules import explain  # noqa: PLC0415

        return explain(args.rules, args.to, args.from_, args.at, args.json, sys.stdout,
                       dict(args.health), args.mode)  # fmt: skip
    if args.command == "demo":
        from gateway.demo.run import run_demo  # noqa: PLC0415

        return run_demo(quiet=args.quiet)
    if args.command in {"probe", "doctor"}:
        return _engine_command(args)
    if args.command in {"calls", "status"}:
        return _read_state(args)
    return _serve(args)


def _engine_command(args: argparse.Namespace) -> int:
    """``probe`` and ``doctor``: they load pjsua2 in this process."""
    from gateway.service.stacks import enable_stack_dumps  # noqa: PLC0415

    enable_stack_dumps()
    if args.command == "probe":
        from gateway.cli.probe import probe  # noqa: PLC0415 - pjsua only for this command

        return probe(args.target, args.kind, sys.stdout, sys.stderr)
    from gateway.cli.doctor import doctor  # noqa: PLC0415 - pjsua and the peers' clients

    return doctor(sys.stdout, as_json=args.json, send_test_mail=args.send_test_mail,
                  skip=args.skip)  # fmt: skip


def _serve(args: argparse.Namespace) -> int:
    """``run`` (alone, ``--workers N``, ``--edge ADDRESS``) and ``edge``."""
    if args.command == "edge":
        return _run(workers=None, edge_only=True)
    if args.edge:
        # A worker behind an edge needs no trunk settings of its own.
        os.environ["SIP_FAILOVER_EDGE__ADDRESS"] = args.edge
        os.environ.setdefault("SIP_FAILOVER_TRUNK__REGISTRAR", f"sip:{args.edge}")
    return _run(workers=args.workers, log_json=args.log_json)


def _read_state(args: argparse.Namespace) -> int:
    """``calls`` and ``status``: read the state folder of the gateway's settings."""
    from gateway.cli import state as commands  # noqa: PLC0415
    from gateway.config import StateSettings  # noqa: PLC0415 - keep pjsua out of reading commands

    state_dir = StateSettings().state_dir
    now = datetime.now(UTC)
    if args.command == "calls":
        return commands.calls(state_dir, args.since, missed=args.missed, now=now,
                              out=sys.stdout, err=sys.stderr, as_json=args.json)  # fmt: skip
    return commands.status(state_dir, as_json=args.json, now=now, out=sys.stdout, err=sys.stderr)


def _run(workers: int | None, *, edge_only: bool = False, log_json: bool = False) -> int:
    from gateway.config_check import checked_settings  # noqa: PLC0415
    from gateway.service.logs import configure  # noqa: PLC0415 - no pjsua in the supervisor
    from gateway.service.stacks import enable_stack_dumps  # noqa: PLC0415

    settings = checked_settings(sys.stderr)
    if settings is None:
        return 2
    configure(settings.log_level, "json" if log_json else settings.log_format)
    enable_stack_dumps()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        if workers or edge_only:
            from gateway.edge.pool import serve_pool  # noqa: PLC0415 - no pjsua in the supervisor

            return runner.run(serve_pool(settings, workers))
        from gateway.app import serve  # noqa: PLC0415

        return runner.run(serve(settings))
