"""``sip-failover demo``: the outage this gateway exists for, replayed on loopback.

The main number is a mobile whose operator lost it: callers get "unassigned"
(``404``, ``Reason: Q.850;cause=1``). The real gateway (``python -m gateway
run``, rules in ``gateway/demo/rules.yaml``) and a far side (``gateway.demo.peers``:
the operator, anna's backup mobile, two customers) run as processes on free
loopback ports; a mail server (aiosmtpd) runs in this process. Two calls
happen, and their timeline is printed as it happens:

1. the gateway fails over on "unassigned" to anna, who answers; it now
   knows the main line is lost and mails the admin;
2. a second customer calls while anna is busy (486): the call goes straight
   to anna, then to voicemail; the caller leaves a message, which the
   gateway mails. The mail is printed as the mail server received it;
3. a third customer calls the workshop's line: its mobile's operator answers
   183 and plays Special Information Tones and an announcement, with no
   final answer ever; the gateway hears the tones, cancels, and rings anna.

Then the story is checked. Every process is ended here, come what may;
nothing outside a temporary folder is written.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections import deque
from email import message_from_bytes, policy
from email.message import EmailMessage
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING

from aiosmtpd.controller import Controller

from gateway.demo import tones
from gateway.demo.story import MAIL_FROM, MAIN_NUMBER, Mail, Story
from gateway.demo.timeline import HOLD_S, Timeline
from gateway.json_types import as_object, loads

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiosmtpd.smtp import SMTP, Envelope, Session


READY_LIMIT_S = 10.0  # the gateway says "ready" within this
CALL_LIMIT_S = 40.0  # the far side has played the three calls within this
MAIL_LIMIT_S = 10.0  # the voicemail's mail arrives within this once the call ended
STOP_LIMIT_S = 6.0  # each process ends within this once asked
TAIL_LINES = 30
GREETING_S = (0.0, 3.3)  # "Hello. Nobody can take your call right now."
SPEECH_S = (8.05, 10.75)  # "... we will call you back as soon as possible."
ANNOUNCEMENT_S = 4.0  # the workshop operator's words after its tones


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
    package_root = str(Path(__file__).resolve().parents[2])  # this very package
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

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        del server, session
        content = envelope.original_content  # None only before DATA, never here
        mail = message_from_bytes(content, policy=policy.default) if content else None
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
        self.smtp = Controller(_Inbox(self.items), hostname="127.0.0.1", port=self.smtp_port,
                               server_hostname="localhost")  # fmt: skip
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
            event = as_object(loads(item))  # peers.py writes one JSON object a line
            for entry in self.story.peer_event(event) if event is not None else ():
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
    """The rules, the short greeting they name, what the second caller will say, and
    the workshop operator's tones and announcement."""
    (run.tmp / "rules.yaml").write_text(rules, encoding="utf-8")
    with resources.as_file(resources.files("gateway") / "assets" / "greeting.wav") as speech:
        _cut_wav(speech, run.tmp / "greeting.wav", GREETING_S)
        _cut_wav(speech, run.tmp / "caller.wav", SPEECH_S)
    announcement = tones.announcement(tones.sit(tones.ITU_SIT), seconds=ANNOUNCEMENT_S)
    tones.write_wav(run.tmp / "announcement.wav", announcement)
    run.smtp.start()
    run.smtp_running = True


def _play(run: Run, rules: str, say: Callable[[str], None]) -> int:
    """Start both sides, let the calls happen, stop the gateway; its exit code."""
    sip_port, trunk_port = _free_port(socket.SOCK_DGRAM, 2)
    _prepare(run, rules)
    env = _child_env(run.tmp, sip_port, trunk_port, run.smtp_port)
    gateway = run.spawn(["-m", "gateway", "run"], env, "gateway")
    facts, second, last = run.story.facts, run.story.acts[1], run.story.acts[2]
    run.take_until(lambda: facts.ready is not None or "gateway" in run.closed, READY_LIMIT_S,
                   "ready")  # fmt: skip
    if facts.ready is None:
        raise DemoError(f"the gateway did not start (exit {gateway.wait(STOP_LIMIT_S)})")
    say(f"gateway  127.0.0.1:{sip_port}  rings office-mobile {MAIN_NUMBER}, anna, then voicemail")
    say(f"trunk    127.0.0.1:{trunk_port}  plays two operators, anna's mobile and three customers")
    say(f"mail     127.0.0.1:{run.smtp_port}  receives what the gateway mails\n")
    peers_args = ["-m", "gateway.demo.peers", str(trunk_port), f"127.0.0.1:{sip_port}", run.tmp]
    peers = run.spawn([str(arg) for arg in peers_args], env, "peers")
    calls_over = {"call.ended", "ended:caller"}
    run.take_until(
        lambda: "peers" in run.closed or calls_over <= last.events.keys(), CALL_LIMIT_S, "the calls"
    )
    if second.get("call.ended").get("result") == "voicemail":
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
        rules: rules file text to run with instead of the demo's ``rules.yaml``.

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
        "then a second customer, with anna busy, leave a voicemail that is mailed;\n"
        "then a third reach anna when the workshop mobile's operator only plays tones.\n"
    )
    if rules is None:
        rules = resources.files("gateway.demo").joinpath("rules.yaml").read_text("utf-8")
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
    wire, _logged = story.failover_ms()
    if wire is not None:
        # The gateway logs its events after the INVITE has left: its own log
        # no longer splits this time, the wire is the measure.
        out.write(
            f"  failover: {wire:.1f} ms from the operator's 404 to anna's INVITE on the wire\n"
            "  (the gateway wakes on the 404's arrival; no polling wait)\n"
        )
    mail = story.voicemail_mail()
    if mail is not None:
        _print_mail(mail, out)
    if not quiet:
        out.write(
            "\nThe first caller heard ringback, then anna; never the operator. The second\n"
            "went straight to anna, then to voicemail; the message was in the mailbox\n"
            "before the gateway stopped. The third heard ringback while the gateway\n"
            "listened to the operator's tones, then anna. Now your own rules:\n"
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
