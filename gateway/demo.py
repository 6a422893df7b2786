"""``sip-failover demo``: the outage this gateway exists for, replayed on loopback.

The main number is a mobile whose operator lost it: callers get "unassigned"
(``404``, ``Reason: Q.850;cause=1``). The real gateway (``python -m gateway
run``, rules in ``demo_rules.yaml``) and a far side (``gateway.demo_peers``:
the operator, anna's backup mobile, two customers) run as processes on free
loopback ports; a mail server (aiosmtpd) runs in this process. Two calls
happen, and their timeline is printed as it happens:

1. the gateway fails over on "unassigned" to anna, who answers; it now
   knows the main line is lost and mails the admin;
2. a second customer calls while anna is busy (486): the call goes straight
   to anna, then to voicemail; the caller leaves a message, which the
   gateway mails. The mail is printed as the mail server received it.

Then the story is checked. Every process is ended here, come what may;
nothing outside a temporary folder is written.
"""

from __future__ import annotations

import contextlib
import io
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
import wave
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aiosmtpd.controller import Controller

if TYPE_CHECKING:
    from collections.abc import Callable

MAIN_NUMBER = "+32470000001"  # office-mobile: the number the operator lost
ANNA_NUMBER = "+32480000002"  # anna's mobile: the backup
CALLER_NUMBER = "+32470999999"  # a customer
SECOND_CALLER_NUMBER = "+32470888888"  # another customer, who leaves a message
PUBLIC_NUMBER = "+3225550100"  # the number on every invoice
MAIL_FROM = "sip-failover@example.com"

READY_LIMIT_S = 10.0  # the gateway says "ready" within this
CALL_LIMIT_S = 30.0  # the far side has played both calls within this
MAIL_LIMIT_S = 10.0  # the voicemail's mail arrives within this once the call ended
STOP_LIMIT_S = 6.0  # each process ends within this once asked
TAIL_LINES = 30
HOLD_S = 0.05  # timeline lines wait this long for lines from the other side
GREETING_S = (0.0, 3.3)  # "Hello. Nobody can take your call right now."
SPEECH_S = (8.05, 10.75)  # "... we will call you back as soon as possible."

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3,6}) (\w+)\s+(.*)$")
_RINGING = re.compile(r"^call (\S+): ringing (\S+) \((\S+)\)$")
_PROBE = re.compile(r"^probe of (\S+): (.*)$")
Entry = tuple[float, str, str | None]  # time, text, the far side's event it answers
_ROLE = {"office-mobile": "operator"}  # the far side's name for a target, when not its own

# Timeline text of the gateway's status events (gateway/core/session.py), and
# the far side's event each one answers (see Timeline).
_GATEWAY_TEXT = {
    "call.incoming": ("call from {caller} for {called} takes route {route}", "dial:None"),
    "call.failover": ("failover {from} -> {to} ({outcome}, {sip_code}{cause})", "reply:{role}"),
    "call.leg": ("{target} answered; connecting the caller to {target}", "reply:anna:200"),
    "call.step": ("step {n}: voicemail {box}: greeting, beep, then record", None),
    "call.ended": ("call ended ({result}, {duration:.1f} s in all)", "hangup:caller"),
    "target.health": ("{target} is now {state} ({evidence[text]}), says its health", None),
    "voicemail.recorded": ("voicemail from {caller} saved ({duration:.1f} s)", "hangup:caller"),
    "voicemail.dropped": ("no voicemail from {caller}: {why}", None),
    "voicemail.failed": ("voicemail {id} not mailed yet: {error}", None),
    "voicemail.delivered": ("voicemail mailed to {to}", None),
}


@dataclass(frozen=True, slots=True)
class Mail:
    """A mail the demo's mail server accepted."""

    at: float
    mail: EmailMessage

    def wav(self) -> tuple[str, int, float] | None:
        """The attached recording: name, size in bytes, seconds; None without one."""
        for part in self.mail.iter_attachments():
            name, data = part.get_filename() or "", part.get_content()
            if name.endswith(".wav") and isinstance(data, bytes):
                with wave.open(io.BytesIO(data), "rb") as audio:
                    return name, len(data), audio.getnframes() / audio.getframerate()
        return None

    def text(self) -> str:
        body = self.mail.get_body(("plain",))
        return str(body.get_content()) if body is not None else ""


class Story:
    """What both sides reported: timeline text, and the facts checked at the end.

    ``facts`` are the run's (ready, health, mails); ``acts[0]`` and ``acts[1]``
    those of the first and the second call, keyed as the far side's events
    (``reply:anna:486``) or the gateway's (``call.ended``).
    """

    def __init__(self) -> None:
        self.t0: float | None = None  # the first caller's INVITE
        self.facts: dict[str, Any] = {"health": {}, "mails": []}
        self.acts: list[dict[str, Any]] = [{}, {}]
        self.act_of: dict[str, int] = {}  # call id -> 1 or 2

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
            return self._gateway_event(at, kind, json.loads(data))
        ringing, probe = _RINGING.match(message), _PROBE.match(message)
        if ringing:  # logged just before the INVITE goes out
            return self._ringing(at, self.act_of.get(ringing[1], 1), ringing[2], ringing[3])
        if probe:  # rare in the demo (probes are hours apart), but real
            return at, f"gateway: probe of {probe[1]}: {probe[2]}", None
        if level in {"ERROR", "CRITICAL"}:  # warnings are in the log tail when it fails
            return at, f"gateway {level.lower()}: {message}", None
        return None

    def _ringing(self, at: float, act: int, target: str, number: str) -> Entry:
        facts = self.acts[act - 1]
        facts.setdefault("ring_at", {})[target] = at
        step = facts.get("step", 0)
        text = f"gateway: step {step + 1}: ring {target} {number}"
        dead = [n for n, s in self.facts["health"].items() if s in {"unassigned", "down"}]
        if step == 0 and dead and target not in dead:
            text += f" ({', '.join(dead)} left out: its health is {self.facts['health'][dead[0]]})"
        cause = "dial:None" if step == 0 else "reply:" + facts.get("failed_role", "")
        return at, text, f"{act}:{cause}"

    def _gateway_event(self, at: float, kind: str, data: dict[str, Any]) -> Entry | None:
        """Note a status event; its timeline entry if the timeline shows it."""
        if kind == "call.incoming":
            self.act_of[data["call_id"]] = min(len(self.act_of) + 1, 2)
        act = self.act_of.get(data.get("call_id", ""), 0)
        if kind == "voicemail.recorded":
            self.facts["voicemail_ids"] = {*self.facts.get("voicemail_ids", ()), data["id"]}
        shown = self._note(kind, data, at, act)
        if kind not in _GATEWAY_TEXT or not shown:
            return None
        facts = self.acts[act - 1] if act else self.facts
        text, cause = _GATEWAY_TEXT[kind]
        if cause is not None and act:
            cause = f"{act}:{cause.format(**facts[kind])}"
        return at, "gateway: " + text.format(**facts[kind]), cause if act else None

    def _note(self, kind: str, data: dict[str, Any], at: float, act: int) -> bool:
        """Keep an event's facts; whether the timeline shows it."""
        facts = self.acts[act - 1] if act else self.facts
        shown = True
        if kind == "call.step":
            facts["step"] = int(data["step"])
            shown = data["kind"] == "voicemail"
            data = data | {"n": int(data["step"]) + 1, "box": data["targets"][0].split(":")[-1]}
        elif kind == "call.leg":
            facts.setdefault("leg_at", {})[data["target"]] = at
            facts["failed_role"] = _ROLE.get(data["target"], data["target"])
            shown = data["outcome"] == "answered"  # a failed one is told by the failover
        elif kind == "call.failover":
            cause = f", cause {data['q850']}" if data.get("q850") is not None else ""
            to = " + ".join(data["to"] or ["-"])
            role = _ROLE.get(data["from"][0], data["from"][0])
            data = data | {"from": " + ".join(data["from"]), "to": to, "cause": cause, "role": role}
        elif kind == "target.health":
            # A health without evidence is the start-up "unknown", before any call.
            shown = bool(data.get("evidence"))
            self.facts["health"][data["target"]] = data["state"]
        elif kind == "voicemail.delivered":
            shown = data["id"] in self.facts.get("voicemail_ids", ())  # not an alert
            data = data | {"to": ", ".join(data["recipients"])}
        facts[kind] = data
        return shown

    def peer_event(self, event: dict[str, Any]) -> list[Entry]:
        """One JSON event of the far side (gateway/demo_peers.py): its timeline entries."""
        act = int(event.get("act", 1))
        facts = self.acts[act - 1]
        key = f"{event['event']}:{event.get('role')}"
        facts.setdefault(key, event)
        facts.setdefault(f"{key}:{event.get('code')}", event)
        if key == "dial:None" and self.t0 is None:
            self.t0 = event["t"]
        entries: list[Entry] = []
        if key == "dial:None" and act == 2:
            entries.append((event["t"] - 1e-6, "\n  A second customer calls; anna is busy.", None))
        if event.get("text"):
            entries.append((event["t"], event["text"], None))
        return entries

    def mail_arrived(self, mail: Mail) -> Entry:
        """The mail server's line for a mail, kept for the end."""
        self.facts["mails"].append(mail)
        found, to = mail.wav(), mail.mail["To"]
        if found is None:  # an alert to the admin
            subject = str(mail.mail["Subject"]).removeprefix("sip-failover: ")
            return mail.at, f"mail server: to {to}: {subject}", None
        return mail.at, f"mail server: to {to}: {mail.mail['Subject']}, with {found[0]}", None

    def voicemail_mail(self) -> Mail | None:
        return next((m for m in self.facts["mails"] if m.wav() is not None), None)

    def cause(self, key: str) -> dict[str, Any] | None:
        """The far side's event a timeline entry answers (``act:event:role``)."""
        act, _, name = key.partition(":")
        event: dict[str, Any] | None = self.acts[int(act) - 1].get(name)
        return event

    def failover_ms(self) -> tuple[float | None, float | None]:
        """404 to anna's INVITE: on the wire (as the trunk saw it), and by the gateway's log."""
        first = self.acts[0]
        sent, reached = first.get("reply:operator"), first.get("invite:anna")
        wire = (reached["t"] - sent["t"]) * 1000 if sent and reached else None
        leg = first.get("leg_at", {}).get("office-mobile")
        ring = first.get("ring_at", {}).get("anna")
        logged = (ring - leg) * 1000 if leg is not None and ring is not None else None
        return wire, logged

    def problems(self) -> list[str]:
        """The first thing that did not happen as it should, in the user's words."""
        # The story is a chain: the first broken link is the one to read about.
        return [message for ok, message in self._first_call() + self._second_call() if not ok][:1]

    def _first_call(self) -> list[tuple[bool, str]]:
        f = self.acts[0]
        failover = f.get("call.failover") or {}
        caller_heard, anna_heard = (
            _heard(f.get("audio:None") or {}, w) for w in ("caller", "anna")
        )
        ended = f.get("call.ended") or {}
        no_failover = "the gateway did not fail over on the operator's 404, cause 1 (it said: {})"
        no_failover = no_failover.format(json.dumps(failover) if failover else "nothing")
        return [
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

    def _second_call(self) -> list[tuple[bool, str]]:
        f = self.acts[1]
        ended, dropped = f.get("call.ended") or {}, f.get("voicemail.dropped") or {}
        spoke, mail = f.get("hangup:caller", {}).get("spoke") or 0.0, self.voicemail_mail()
        seconds = wav[2] if mail and (wav := mail.wav()) else None
        heard = {w: f.get(f"heard:caller:{w}", {}).get("level", 0) for w in ("greeting", "beep")}
        no_voicemail = f"the second call never reached voicemail (it ended: {ended or 'not'})"
        lasts = f"the mailed recording lasts {seconds or 0:.1f} s, the caller spoke {spoke:.1f} s"
        return [
            ("dial:None" in f, "the second caller never dialled"),
            (
                "office-mobile" not in f.get("ring_at", {}),
                "the second call rang office-mobile again, though it was known unassigned",
            ),
            ("reply:anna:486" in f, "anna's mobile was not rung on the second call"),
            (f.get("call.step", {}).get("kind") == "voicemail", no_voicemail),
            (heard["greeting"] > 0, "the second caller did not hear the greeting"),
            (heard["beep"] > 0, "the second caller did not hear the beep"),
            ("voicemail.recorded" in f, f"no voicemail saved ({dropped.get('why', 'no reason')})"),
            (ended.get("result") == "voicemail", f"the call did not end as voicemail ({ended})"),
            (seconds is not None, "no mail with the recording reached the mail server"),
            (seconds is None or abs(seconds - spoke) <= 1.0, lasts),
        ]


def _heard(audio: dict[str, Any], who: str) -> tuple[bool, str]:
    side = audio.get(who) or {}
    level, packets = side.get("level", 0), side.get("packets", 0)
    return level > 0, f"(audio level {level} in {packets} packets)"


class Timeline:
    """Prints the calls' lines in the order they happened, times from the first INVITE.

    Both sides' lines are held until neither has said anything for
    ``HOLD_S``, then printed sorted by time. The gateway's log times are cut
    to the millisecond, so a gateway line answering the far side (the
    failover after the 404) may carry an earlier time than its cause: such a
    line is placed just after its cause, which is what its true time was.
    A text that starts a new paragraph is printed as it is, without a time.
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
        self.out.writelines(
            text + "\n" if text.startswith("\n") else f"  {at - t0:7.3f}  {text}\n"
            for at, text in entries
        )
        self.out.flush()
        self.pending.clear()

    def _when(self, at: float, cause: str | None) -> float:
        event = self.story.cause(cause) if cause else None
        return max(at, event["t"] + 1e-6) if event else at


def _free_port(kind: socket.SocketKind, count: int = 1) -> list[int]:
    """Ports free on 127.0.0.1 now (held at once, so they differ)."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket(type=kind)) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _cut_wav(source: Path, target: Path, seconds: tuple[float, float]) -> None:
    """Write a piece of a WAV file (the demo's greeting and its caller's words)."""
    with wave.open(str(source), "rb") as whole:
        rate = whole.getframerate()
        whole.setpos(int(seconds[0] * rate))
        frames = whole.readframes(int((seconds[1] - seconds[0]) * rate))
        params = whole.getparams()
    with wave.open(str(target), "wb") as piece:
        piece.setparams(params)
        piece.writeframes(frames)


def _child_env(tmp: Path, sip_port: int, trunk_port: int, smtp_port: int) -> dict[str, str]:
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
        "SIP_FAILOVER_SMTP__HOST": "127.0.0.1",
        "SIP_FAILOVER_SMTP__PORT": str(smtp_port),
        "SIP_FAILOVER_SMTP__FROM": MAIL_FROM,
        "SIP_FAILOVER_SMTP__TIMEOUT": "5",
        "SIP_FAILOVER_SMTP__RETRY_FIRST": "1",  # a first try that fails is retried at once
        "SIP_FAILOVER_RULES": str(tmp / "rules.yaml"),
        "SIP_FAILOVER_STATE_DIR": str(tmp / "state"),
        "SIP_FAILOVER_LOG_LEVEL": "INFO",
        "SIP_FAILOVER_SHUTDOWN_GRACE": "1",  # cut short (Ctrl-C), the call is not waited for
    }


class DemoError(Exception):
    """Something did not happen as the demo expects; the message says what."""


Item = tuple[str, str | Mail | None]  # source, a line (None: closed) or a mail


class _Inbox:
    """The aiosmtpd handler: every mail goes into the run's queue."""

    def __init__(self, items: queue.Queue[Item]) -> None:
        self.items = items

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        del server, session
        mail = message_from_bytes(envelope.original_content, policy=policy.default)
        if not isinstance(mail, EmailMessage):  # policy.default makes them all EmailMessage
            return "554 not understood"
        self.items.put(("mail", Mail(time.time(), mail)))
        return "250 OK"


class Run:
    """The child processes and the mail server, their output read in order, and their end."""

    def __init__(self, tmp: Path, story: Story, timeline: Timeline) -> None:
        self.tmp = tmp
        self.story = story
        self.timeline = timeline
        self.items: queue.Queue[Item] = queue.Queue()
        self.closed: set[str] = set()
        self.tail = {name: deque[str](maxlen=TAIL_LINES) for name in ("gateway", "far side")}
        self.procs: list[subprocess.Popen[str]] = []
        self.smtp_port = _free_port(socket.SOCK_STREAM)[0]
        self.smtp = Controller(_Inbox(self.items), hostname="127.0.0.1", port=self.smtp_port)
        self.smtp_running = False

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

    def _handle(self, source: str, item: str | Mail | None) -> None:
        if isinstance(item, Mail):
            self.timeline.add(self.story.mail_arrived(item))
            return
        if item is None:
            self.closed.add(source)
            return
        self.tail["gateway" if source == "gateway" else "far side"].append(item)
        if source == "gateway":
            entry = self.story.gateway_line(item)
            if entry is not None:
                self.timeline.add(entry)
        elif source == "peers" and item.startswith("{"):
            for entry in self.story.peer_event(json.loads(item)):
                self.timeline.add(entry)

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
        if self.smtp_running:
            self.smtp.stop()
            self.smtp_running = False


def _prepare(run: Run, rules: str) -> None:
    """The rules, the short greeting they name, and what the second caller will say."""
    (run.tmp / "rules.yaml").write_text(rules, encoding="utf-8")
    with resources.as_file(resources.files("gateway") / "assets" / "greeting.wav") as speech:
        _cut_wav(speech, run.tmp / "greeting.wav", GREETING_S)
        _cut_wav(speech, run.tmp / "caller.wav", SPEECH_S)
    run.smtp.start()
    run.smtp_running = True


def _play(run: Run, rules: str, say: Callable[[str], None]) -> int:
    """Start both sides, let the calls happen, stop the gateway; its exit code."""
    sip_port, trunk_port = _free_port(socket.SOCK_DGRAM, 2)
    _prepare(run, rules)
    env = _child_env(run.tmp, sip_port, trunk_port, run.smtp_port)
    gateway = run.spawn(["-m", "gateway", "run"], env, "gateway")
    facts, second = run.story.facts, run.story.acts[1]
    run.take_until(lambda: "ready" in facts or "gateway" in run.closed, READY_LIMIT_S, "ready")
    if "ready" not in facts:
        raise DemoError(f"the gateway did not start (exit {gateway.wait(STOP_LIMIT_S)})")
    say(f"gateway  127.0.0.1:{sip_port}  rings office-mobile {MAIN_NUMBER}, anna, then voicemail")
    say(f"trunk    127.0.0.1:{trunk_port}  plays its operator, anna's mobile and two customers")
    say(f"mail     127.0.0.1:{run.smtp_port}  receives what the gateway mails\n")
    peers_args = ["-m", "gateway.demo_peers", str(trunk_port), f"127.0.0.1:{sip_port}", run.tmp]
    peers = run.spawn([str(arg) for arg in peers_args], env, "peers")
    calls_over = {"call.ended", "ended:caller"}
    run.take_until(
        lambda: "peers" in run.closed or calls_over <= second.keys(), CALL_LIMIT_S, "the calls"
    )
    if second.get("call.ended", {}).get("result") == "voicemail":
        mailed = run.story.voicemail_mail
        run.take_until(lambda: mailed() is not None, MAIL_LIMIT_S, "the voicemail's mail")
    gateway.send_signal(signal.SIGTERM)
    run.take_until(lambda: len(run.closed) >= 3, STOP_LIMIT_S, "the gateway's shutdown")
    if peers.wait(timeout=STOP_LIMIT_S) != 0:
        raise DemoError(f"the far side failed (exit {peers.returncode})")
    return gateway.wait(timeout=STOP_LIMIT_S)


def run_demo(quiet: bool, *, rules: str | None = None) -> int:
    """Replay the outage on loopback and print the calls' timeline and the mail.

    Args:
        quiet: print only the timeline and the mail (no introduction, no explanation).
        rules: rules file text to run with instead of ``demo_rules.yaml``.

    Returns:
        0 when the whole story happened: failover on "unassigned", anna
        answered, audio both ways; the second call skipped the lost line, found
        anna busy, left a voicemail that was mailed; the gateway stopped
        cleanly. 1 otherwise, with what went wrong on stderr; 130 on Ctrl-C.
    """
    out = sys.stdout

    def say(text: str) -> None:
        if not quiet:
            out.write(text + "\n")

    say(
        "sip-failover demo: the office mobile's operator has lost the number and tells\n"
        'every caller it is "unassigned". Watch a customer\'s call reach anna instead,\n'
        "then a second customer, with anna busy, leave a voicemail that is mailed.\n"
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
    if "dial:None" in story.acts[0]:
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
    mail = story.voicemail_mail()
    if mail is not None:
        _print_mail(mail, out)
    if not quiet:
        out.write(
            "\nThe first caller heard ringback, then anna; never the operator. The second\n"
            "went straight to anna, then to voicemail; the message was in the mailbox\n"
            "before the gateway stopped. Now your own rules:\n"
            "  sip-failover explain rules/example.yaml --to +3225550100\n"
        )


def _print_mail(mail: Mail, out: IO[str]) -> None:
    name, size, seconds = mail.wav() or ("?", 0, 0.0)
    head = [f"{key + ':':9} {mail.mail[key]}" for key in ("From", "To", "Subject")]
    body = [f"| {line}".rstrip() for line in mail.text().rstrip("\n").splitlines()]
    attached = f"attached: {name}, {size / 1000:.1f} kB, {seconds:.1f} s of audio"
    out.write("\n  The voicemail, as the mail server received it:\n")
    out.writelines(f"    {line}\n" for line in [*head, *body, attached])


def _fail(problems: list[str], run: Run) -> int:
    lines = ["", "sip-failover demo FAILED:", *(f"  - {p}" for p in dict.fromkeys(problems))]
    for name, tail in run.tail.items():
        if tail:
            lines += ["", f"last lines from the {name}:", *(f"  | {line}" for line in tail)]
    sys.stderr.write("\n".join(lines) + "\n")
    return 1
