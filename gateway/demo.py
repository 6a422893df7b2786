"""``sip-failover demo``: the outage this gateway exists for, replayed on loopback.

The main number is a mobile whose operator lost it: callers get "unassigned"
(``404``, ``Reason: Q.850;cause=1``). The real gateway (``python -m gateway
run``, rules in ``demo_rules.yaml``) and a far side (``gateway.demo_peers``:
the operator, anna's backup mobile, a customer) run as processes on free
loopback ports. The call's timeline is printed as it happens, then the story
is checked: failover on "unassigned", anna answered, audio both ways, the
call ended, the gateway stopped cleanly. Every process is ended here, come
what may; nothing outside a temporary folder is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

MAIN_NUMBER = "+32470000001"  # office-mobile: the number the operator lost
ANNA_NUMBER = "+32480000002"  # anna's mobile: the backup
CALLER_NUMBER = "+32470999999"  # a customer
PUBLIC_NUMBER = "+3225550100"  # the number on every invoice

READY_LIMIT_S = 10.0  # the gateway says "ready" within this
CALL_LIMIT_S = 25.0  # the far side has played the whole call within this
STOP_LIMIT_S = 6.0  # each process ends within this once asked
TAIL_LINES = 30
HOLD_S = 0.05  # timeline lines wait this long for lines from the other side

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3,6}) (\w+)\s+(.*)$")
_RINGING = re.compile(r"^call \S+: ringing (\S+) \((\S+)\)$")
Entry = tuple[float, str, str | None]  # time, text, the far side's event it answers

# Timeline text of the gateway's status events (gateway/core/session.py), and
# the far side's event each one answers (see Timeline).
_GATEWAY_TEXT = {
    "call.incoming": ("call from {caller} for {called} takes route {route}", "dial:None"),
    "call.failover": (
        "failover {from} -> {to} ({outcome}, {sip_code}, cause {q850})",
        "reply:operator",
    ),
    "call.leg": ("{target} answered; connecting the caller to {target}", "reply:anna:200"),
    "call.ended": ("call ended ({result}, {duration:.1f} s in all)", "hangup:caller"),
    "target.health": ("{target} is now {state} ({evidence[text]}), says its health", None),
}


class Story:
    """What both sides reported: timeline text, and the facts checked at the end."""

    def __init__(self) -> None:
        self.t0: float | None = None  # the caller's INVITE
        self.facts: dict[str, Any] = {}
        self.step = 0

    def gateway_line(self, line: str) -> Entry | None:
        """A line of the gateway's log as a timeline entry, if it is one."""
        match = _LOG_LINE.match(line)
        if match is None:
            return None
        # The gateway runs with TZ=UTC: its log times are UTC, to the millisecond.
        when = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
        at, level, message = when.timestamp(), match[2], match[3]
        if "ready listen=" in message:
            self.facts["ready"] = at
        if message.startswith("event "):
            kind, _, data = message.removeprefix("event ").partition(" ")
            if not self._gateway_event(at, kind, json.loads(data)):
                return None
            text, cause = _GATEWAY_TEXT[kind]
            return at, "gateway: " + text.format(**self.facts[kind]), cause
        ringing = _RINGING.match(message)
        if ringing:  # logged just before the INVITE goes out
            self.facts.setdefault("ring_at", {})[ringing[1]] = at
            text = f"gateway: step {self.step + 1}: ring {ringing[1]} {ringing[2]}"
            return at, text, "dial:None" if self.step == 0 else "reply:operator"
        if level in {"ERROR", "CRITICAL"}:  # warnings are in the log tail when it fails
            return at, f"gateway {level.lower()}: {message}", None
        return None

    def _gateway_event(self, at: float, kind: str, data: dict[str, Any]) -> bool:
        """Note a status event; whether the timeline shows it."""
        if kind == "call.step":
            self.step = int(data["step"])
        elif kind == "call.leg":
            self.facts.setdefault("leg_at", {})[data["target"]] = at
        elif kind == "call.failover":
            data = data | {"from": " + ".join(data["from"]), "to": " + ".join(data["to"] or ["-"])}
        self.facts[kind] = data
        if kind == "call.leg":  # the failed one is told by the failover
            return bool(data["outcome"] == "answered")
        # A health without evidence is the start-up "unknown", before any call.
        return kind in _GATEWAY_TEXT and bool(data.get("evidence", True))

    def peer_event(self, event: dict[str, Any]) -> str | None:
        """One JSON event of the far side (gateway/demo_peers.py): its timeline text."""
        key = f"{event['event']}:{event.get('role')}"
        self.facts.setdefault(key, event)
        self.facts.setdefault(f"{key}:{event.get('code')}", event)
        if key == "dial:None":
            self.t0 = event["t"]
        return event.get("text")

    def failover_ms(self) -> tuple[float | None, float | None]:
        """404 to anna's INVITE: on the wire (as the trunk saw it), and by the gateway's log."""
        sent, reached = self.facts.get("reply:operator"), self.facts.get("invite:anna")
        wire = (reached["t"] - sent["t"]) * 1000 if sent and reached else None
        leg = self.facts.get("leg_at", {}).get("office-mobile")
        ring = self.facts.get("ring_at", {}).get("anna")
        logged = (ring - leg) * 1000 if leg is not None and ring is not None else None
        return wire, logged

    def problems(self) -> list[str]:
        """The first thing that did not happen as it should, in the user's words."""
        f = self.facts
        failover = f.get("call.failover") or {}
        caller_heard, anna_heard = (
            _heard(f.get("audio:None") or {}, w) for w in ("caller", "anna")
        )
        ended = f.get("call.ended") or {}
        no_failover = "the gateway did not fail over on the operator's 404, cause 1 (it said: {})"
        no_failover = no_failover.format(json.dumps(failover) if failover else "nothing")
        checks = [
            ("dial:None" in f, "the caller never dialled (the far side did not start)"),
            (
                [failover.get(k) for k in ("outcome", "sip_code", "q850")]
                == ["unassigned", 404, 1],
                no_failover,
            ),
            (f.get("call.answered", {}).get("target") == "anna", "anna never answered"),
            ("connected:caller" in f, "the caller was never connected"),
            ("early_media:caller" not in f, "the caller was sent audio before anyone answered"),
            (caller_heard[0], f"the caller did not hear anna {caller_heard[1]}"),
            (anna_heard[0], f"anna did not hear the caller {anna_heard[1]}"),
            (ended.get("result") == "answered", f"the call did not end as answered ({ended})"),
        ]
        # The story is a chain: the first broken link is the one to read about.
        return [message for ok, message in checks if not ok][:1]


def _heard(audio: dict[str, Any], who: str) -> tuple[bool, str]:
    side = audio.get(who) or {}
    level, packets = side.get("level", 0), side.get("packets", 0)
    return level > 0, f"(audio level {level} in {packets} packets)"


class Timeline:
    """Prints the call's lines in the order they happened, times from the INVITE.

    Both sides' lines are held until neither has said anything for
    ``HOLD_S``, then printed sorted by time. The gateway's log times are cut
    to the millisecond, so a gateway line answering the far side (the
    failover after the 404) may carry an earlier time than its cause: such a
    line is placed just after its cause, which is what its true time was.
    """

    def __init__(self, out: IO[str], story: Story) -> None:
        self.out = out
        self.story = story
        self.pending: list[Entry] = []
        self.quiet_since = 0.0

    def add(self, entry: Entry) -> None:
        self.pending.append(entry)
        self.quiet_since = time.monotonic()

    def flush(self, *, force: bool = False) -> None:
        waiting = self.story.t0 is None or time.monotonic() - self.quiet_since < HOLD_S
        if not self.pending or (waiting and not force):
            return
        entries = sorted((self._when(at, cause), text) for at, text, cause in self.pending)
        t0 = self.story.t0 if self.story.t0 is not None else entries[0][0]
        self.out.writelines(f"  {at - t0:7.3f}  {text}\n" for at, text in entries)
        self.out.flush()
        self.pending.clear()

    def _when(self, at: float, cause: str | None) -> float:
        event = self.story.facts.get(cause) if cause else None
        return max(at, event["t"] + 1e-6) if event else at


def _free_udp_ports() -> tuple[int, int]:
    """Two ports free on 127.0.0.1 now (held at once, so they differ)."""
    with socket.socket(type=socket.SOCK_DGRAM) as one, socket.socket(type=socket.SOCK_DGRAM) as two:
        one.bind(("127.0.0.1", 0))
        two.bind(("127.0.0.1", 0))
        return one.getsockname()[1], two.getsockname()[1]


def _child_env(tmp: Path, sip_port: int, trunk_port: int) -> dict[str, str]:
    # The user's own SIP_FAILOVER_* settings (a real trunk, a broker) stay out.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIP_FAILOVER_")}
    package_root = str(Path(__file__).resolve().parent.parent)  # this very package
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    trunk = f"sip:127.0.0.1:{trunk_port}"
    return env | {
        "TZ": "UTC",
        "SIP_FAILOVER_GATEWAY_ID": "demo",
        "SIP_FAILOVER_SIP__LISTEN": f"127.0.0.1:{sip_port}",
        "SIP_FAILOVER_SIP__RTP_PORT": "0",
        "SIP_FAILOVER_TRUNK__REGISTER": "false",  # pjsua (the far side) is no registrar
        "SIP_FAILOVER_TRUNK__REGISTRAR": trunk,
        "SIP_FAILOVER_TRUNK__PROXY": trunk,
        "SIP_FAILOVER_TRUNK__SOURCES": '["127.0.0.1"]',
        "SIP_FAILOVER_RULES": str(tmp / "rules.yaml"),
        "SIP_FAILOVER_STATE_DIR": str(tmp / "state"),
        "SIP_FAILOVER_LOG_LEVEL": "INFO",
        "SIP_FAILOVER_SHUTDOWN_GRACE": "1",  # cut short (Ctrl-C), the call is not waited for
    }


class DemoError(Exception):
    """Something did not happen as the demo expects; the message says what."""


class Run:
    """The two child processes, their output read in order, and their end."""

    def __init__(self, tmp: Path, story: Story, timeline: Timeline) -> None:
        self.tmp = tmp
        self.story = story
        self.timeline = timeline
        self.items: queue.Queue[tuple[str, str | None]] = queue.Queue()  # None: closed
        self.closed: set[str] = set()
        self.tail = {name: deque[str](maxlen=TAIL_LINES) for name in ("gateway", "far side")}
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(self, args: list[str], env: dict[str, str], source: str) -> subprocess.Popen[str]:
        """Start ``python <args>``; the gateway's stderr joins its stdout (one log)."""
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, our own modules
            [sys.executable, *args],
            env=env,
            cwd=self.tmp,  # no .env file of the user's is read
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if source == "gateway" else subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        for stream, name in ((proc.stdout, source), (proc.stderr, f"{source}-log")):
            if stream is not None:
                threading.Thread(target=self._pump, args=(stream, name), daemon=True).start()
        return proc

    def _pump(self, stream: IO[str], source: str) -> None:
        with stream:
            for line in stream:
                self.items.put((source, line.rstrip("\n")))
        self.items.put((source, None))

    def take_until(self, done: Callable[[], bool], limit: float, what: str) -> None:
        """Handle output until ``done()``; DemoError after ``limit`` seconds."""
        deadline = time.monotonic() + limit
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise DemoError(f"{what} did not happen within {limit:.0f} s")
            with contextlib.suppress(queue.Empty):
                self._handle(*self.items.get(timeout=min(left, HOLD_S / 2)))
            self.timeline.flush()

    def _handle(self, source: str, line: str | None) -> None:
        if line is None:
            self.closed.add(source)
            return
        self.tail["gateway" if source == "gateway" else "far side"].append(line)
        if source == "gateway":
            entry = self.story.gateway_line(line)
            if entry is not None:
                self.timeline.add(entry)
        elif source == "peers" and line.startswith("{"):
            event = json.loads(line)
            text = self.story.peer_event(event)
            if text is not None:
                self.timeline.add((event["t"], text, None))

    def end_all(self) -> None:
        """Whatever happened: every child still running is stopped, then killed."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=STOP_LIMIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _play(run: Run, rules: str, say: Callable[[str], None]) -> int:
    """Start both sides, let the call happen, stop the gateway; its exit code."""
    sip_port, trunk_port = _free_udp_ports()
    (run.tmp / "rules.yaml").write_text(rules, encoding="utf-8")
    env = _child_env(run.tmp, sip_port, trunk_port)
    gateway = run.spawn(["-m", "gateway", "run"], env, "gateway")
    facts = run.story.facts
    run.take_until(lambda: "ready" in facts or "gateway" in run.closed, READY_LIMIT_S, "ready")
    if "ready" not in facts:
        raise DemoError(f"the gateway did not start (exit {gateway.wait(STOP_LIMIT_S)})")
    say(f"gateway  127.0.0.1:{sip_port}  rings office-mobile {MAIN_NUMBER}, then anna")
    say(f"trunk    127.0.0.1:{trunk_port}  plays its operator, anna's mobile and a customer\n")
    peers_args = ["-m", "gateway.demo_peers", str(trunk_port), f"127.0.0.1:{sip_port}"]
    peers = run.spawn(peers_args, env, "peers")
    call_over = {"call.ended", "ended:caller"}
    run.take_until(
        lambda: "peers" in run.closed or call_over <= facts.keys(), CALL_LIMIT_S, "the call"
    )
    gateway.send_signal(signal.SIGTERM)
    run.take_until(lambda: len(run.closed) == 3, STOP_LIMIT_S, "the gateway's shutdown")
    if peers.wait(timeout=STOP_LIMIT_S) != 0:
        raise DemoError(f"the far side failed (exit {peers.returncode})")
    return gateway.wait(timeout=STOP_LIMIT_S)


def run_demo(quiet: bool, *, rules: str | None = None) -> int:
    """Replay the outage on loopback and print the call's timeline.

    Args:
        quiet: print only the timeline (no introduction, no explanation).
        rules: rules file text to run with instead of ``demo_rules.yaml``.

    Returns:
        0 when the whole story happened: failover on "unassigned", anna
        answered, audio both ways, the call ended and the gateway stopped
        cleanly; 1 otherwise, with what went wrong on stderr; 130 on Ctrl-C.
    """
    out = sys.stdout

    def say(text: str) -> None:
        if not quiet:
            out.write(text + "\n")

    say(
        "sip-failover demo: the office mobile's operator has lost the number and tells\n"
        'every caller it is "unassigned". Watch a customer\'s call reach anna instead.\n'
    )
    if rules is None:
        rules = resources.files("gateway").joinpath("demo_rules.yaml").read_text("utf-8")
    story, problems = Story(), []
    with tempfile.TemporaryDirectory(prefix="sip-failover-demo-") as folder:
        run = Run(Path(folder), story, Timeline(out, story))
        try:
            code = _play(run, rules, say)
            if code != 0:
                problems.append(f"the gateway did not stop cleanly on SIGTERM (exit {code})")
        except (DemoError, subprocess.TimeoutExpired) as error:
            problems.append(str(error))
        except KeyboardInterrupt:
            return 130
        finally:
            run.end_all()
            run.timeline.flush(force=True)
    if "dial:None" in story.facts:
        problems = story.problems() + problems
    if problems:
        return _fail(problems, run)
    _conclude(story, out, quiet)
    return 0


def _conclude(story: Story, out: IO[str], quiet: bool) -> None:
    wire, logged = story.failover_ms()
    if wire is not None and logged is not None:
        out.write(
            f"  failover: {wire:.1f} ms from the operator's 404 to anna's INVITE on the wire;\n"
            f"  {logged:.2f} ms of it in the gateway's logic (from its own log),\n"
            "  the rest is loopback and the wait for the gateway's next look at its socket\n"
        )
    if not quiet:
        out.write(
            "\nThe caller heard ringback, then anna; never the operator. Now your own rules:\n"
            "  sip-failover explain rules/example.yaml --to +3225550100\n"
        )


def _fail(problems: list[str], run: Run) -> int:
    lines = ["", "sip-failover demo FAILED:", *(f"  - {p}" for p in dict.fromkeys(problems))]
    for name, tail in run.tail.items():
        if tail:
            lines += ["", f"last lines from the {name}:", *(f"  | {line}" for line in tail)]
    sys.stderr.write("\n".join(lines) + "\n")
    return 1
