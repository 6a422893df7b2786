"""The demo's story: what each side reported, in order, and what it proves.

Pure bookkeeping for ``sip-failover demo`` (gateway/demo/run.py runs the
processes): lines from the gateway's log and the far side's JSON become one
timeline, and the facts they carry are checked against the story the demo
tells (failover on "unassigned", audio both ways, the alert, the voicemail
and its mail).
"""

from __future__ import annotations

import io
import json
import re
import wave
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateway.json_types import as_array, as_object, loads

if TYPE_CHECKING:
    from email.message import EmailMessage

    from gateway.json_types import JsonObject, JsonValue

MAIN_NUMBER = "+32470000001"  # office-mobile: the number the operator lost
ANNA_NUMBER = "+32480000002"  # anna's mobile: the backup
CALLER_NUMBER = "+32470999999"  # a customer
SECOND_CALLER_NUMBER = "+32470888888"  # another customer, who leaves a message
PUBLIC_NUMBER = "+3225550100"  # the number on every invoice
WORKSHOP_NUMBER = "+3225550101"  # the workshop's public line
WORKSHOP_MOBILE = "+32470000003"  # its mobile, whose operator plays tones instead of answering
THIRD_CALLER_NUMBER = "+32470777777"  # a customer who calls the workshop
MAIL_FROM = "sip-failover@example.com"

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3,6}) (\w+)\s+(.*)$")
_RINGING = re.compile(r"^call (\S+): ringing (\S+) \((\S+)\)$")
_PROBE = re.compile(r"^probe of (\S+): (.*)$")
_SIT = re.compile(r"^leg (\S+)/\d+: (SIT \S+) (.*) at \+([\d.]+) s: (\w+)$")
Entry = tuple[float, str, str | None]  # time, text, the far side's event it answers
# The far side's name for a target, when not its own.
_ROLE = {"office-mobile": "operator", "workshop-mobile": "operator"}

# Timeline text of the gateway's status events (gateway/core/session.py), and
# the far side's event each one answers (see gateway/demo/timeline.py).
_GATEWAY_TEXT = {
    "call.incoming": ("call from {caller} for {called} takes route {route}", "dial:None"),
    "call.failover": ("failover {from} -> {to} ({outcome}, {why})", "reply:{role}"),
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


@dataclass
class CallFacts:
    """What one call showed: its events, and what the story worked out of them.

    ``events`` are keyed as the far side's events (``reply:anna:486``) or
    the gateway's (``call.ended``, ``sit``).
    """

    events: dict[str, JsonObject] = field(default_factory=dict)
    ring_at: dict[str, float] = field(default_factory=dict)  # target -> when its INVITE left
    leg_at: dict[str, float] = field(default_factory=dict)  # target -> when its leg ended
    step: int = 0
    failed_role: str = ""  # the far side's name for the last target that failed

    def __contains__(self, key: str) -> bool:
        return key in self.events

    def get(self, key: str) -> JsonObject:
        """The event noted under ``key``; empty when there was none."""
        return self.events.get(key, {})


@dataclass
class RunFacts(CallFacts):
    """What the run showed outside the calls."""

    ready: float | None = None  # when the gateway said it was ready
    health: dict[str, str] = field(default_factory=dict)  # target -> state
    mails: list[Mail] = field(default_factory=list)
    voicemail_ids: set[str] = field(default_factory=set)


class Story:
    """What both sides reported: timeline text, and the facts checked at the end.

    ``facts`` are the run's (ready, health, mails); ``acts[0..2]`` those of
    the three calls.
    """

    def __init__(self) -> None:
        self.t0: float | None = None  # the first caller's INVITE
        self.facts = RunFacts()
        self.acts = [CallFacts(), CallFacts(), CallFacts()]
        self.act_of: dict[str, int] = {}  # call id -> 1, 2 or 3

    def gateway_line(self, line: str) -> Entry | None:
        """A line of the gateway's log as a timeline entry, if it is one."""
        match = _LOG_LINE.match(line)
        if match is None:
            return None
        # The gateway runs with TZ=UTC: its log times are UTC, to the millisecond.
        when = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
        at, level, message = when.timestamp(), match[2], match[3]
        if "ready listen=" in message:
            self.facts.ready = at
        if message.startswith("event "):
            kind, _, data = message.removeprefix("event ").partition(" ")
            return self._gateway_event(at, kind, as_object(loads(data)) or {})
        return self._gateway_message(at, level, message)

    def _gateway_message(self, at: float, level: str, message: str) -> Entry | None:
        ringing, probe, sit = _RINGING.match(message), _PROBE.match(message), _SIT.match(message)
        if sit:
            return self._sit(at, sit)
        if ringing:  # logged just after the INVITE went out
            return self._ringing(at, self.act_of.get(ringing[1], 1), ringing[2], ringing[3])
        if probe:  # rare in the demo (probes are hours apart), but real
            return at, f"gateway: probe of {probe[1]}: {probe[2]}", None
        if level in {"ERROR", "CRITICAL"}:  # warnings are in the log tail when it fails
            return at, f"gateway {level.lower()}: {message}", None
        return None

    def _sit(self, at: float, sit: re.Match[str]) -> Entry:
        """The gateway heard tones on a leg: what, when, and what it makes of them."""
        act = self.act_of.get(sit[1], 1)
        heard: JsonObject = {"code": sit[2], "at": float(sit[4]), "outcome": sit[5], "t": at}
        self.acts[act - 1].events["sit"] = heard
        text = (f"gateway: hears {sit[2]} ({sit[3]}) {sit[4]} s into the operator's audio: "
                f"{sit[5]}; CANCEL")  # fmt: skip
        return at, text, f"{act}:early_media:operator"

    def _ringing(self, at: float, act: int, target: str, number: str) -> Entry:
        facts = self.acts[act - 1]
        facts.ring_at[target] = at
        step = facts.step
        text = f"gateway: step {step + 1}: ring {target} {number}"
        dead = [n for n, s in self.facts.health.items() if s in {"unassigned", "down"}]
        if step == 0 and dead and target == "anna":
            text += f" ({', '.join(dead)} left out: its health is {self.facts.health[dead[0]]})"
        cause = "dial:None" if step == 0 else "reply:" + facts.failed_role
        if step > 0 and "sit" in facts:  # the tones, not a reply, moved the call on
            cause = "sit"
        return at, text, f"{act}:{cause}"

    def _gateway_event(self, at: float, kind: str, data: JsonObject) -> Entry | None:
        """Note a status event; its timeline entry if the timeline shows it."""
        if kind == "call.incoming":
            self.act_of[str(data["call_id"])] = min(len(self.act_of) + 1, 3)
        act = self.act_of.get(str(data.get("call_id", "")), 0)
        if kind == "voicemail.recorded":
            self.facts.voicemail_ids.add(str(data["id"]))
        shown = self._note(kind, data, at, act)
        if kind not in _GATEWAY_TEXT or not shown:
            return None
        facts = self.acts[act - 1] if act else self.facts
        text, cause = _GATEWAY_TEXT[kind]
        if cause is not None and act:
            cause = f"{act}:{cause.format(**facts.events[kind])}"
        if kind == "call.failover" and act and "sit" in facts:
            # Logged in the same millisecond as the tones it follows: keep it after them.
            cause = f"{act}:sit"
        return at, "gateway: " + text.format(**facts.events[kind]), cause if act else None

    def _note(self, kind: str, data: JsonObject, at: float, act: int) -> bool:
        """Keep an event's facts; whether the timeline shows it."""
        facts = self.acts[act - 1] if act else self.facts
        shown = True
        if kind == "call.step":
            facts.step = int(number(data["step"]))
            shown = data["kind"] == "voicemail"
            box = _texts(data["targets"])[0].split(":")[-1]
            data = data | {"n": facts.step + 1, "box": box}
        elif kind == "call.leg":
            target = str(data["target"])
            facts.leg_at[target] = at
            facts.failed_role = _ROLE.get(target, target)
            shown = data["outcome"] == "answered"  # a failed one is told by the failover
        elif kind == "call.failover":
            cause = f", cause {data['q850']}" if data.get("q850") is not None else ""
            why = f"{data['sip_code']}{cause}" if data.get("sip_code") else "tones, no SIP answer"
            to = " + ".join(_texts(data["to"]) or ["-"])
            origin = _texts(data["from"])
            role = _ROLE.get(origin[0], origin[0])
            data = data | {"from": " + ".join(origin), "to": to, "why": why, "role": role}
        elif kind == "target.health":
            # A health without evidence is the start-up "unknown", before any call.
            shown = bool(data.get("evidence"))
            self.facts.health[str(data["target"])] = str(data["state"])
        elif kind == "voicemail.delivered":
            shown = data["id"] in self.facts.voicemail_ids  # not an alert
            data = data | {"to": ", ".join(_texts(data["recipients"]))}
        facts.events[kind] = data
        return shown

    def peer_event(self, event: JsonObject) -> list[Entry]:
        """One JSON event of the far side (gateway/demo/peers.py): its timeline entries."""
        act = int(number(event.get("act", 1)))
        facts, at = self.acts[act - 1], number(event["t"])
        key = f"{event['event']}:{event.get('role')}"
        facts.events.setdefault(key, event)
        facts.events.setdefault(f"{key}:{event.get('code')}", event)
        if key == "dial:None" and self.t0 is None:
            self.t0 = at
        entries: list[Entry] = []
        if key == "dial:None" and act > 1:
            entries.append((at - 1e-6, _ACT_TITLES[act - 2], None))
        if event.get("text"):
            entries.append((at, str(event["text"]), None))
        return entries

    def mail_arrived(self, mail: Mail) -> Entry:
        """The mail server's line for a mail, kept for the end."""
        self.facts.mails.append(mail)
        found, to = mail.wav(), mail.mail["To"]
        if found is None:  # an alert to the admin
            subject = str(mail.mail["Subject"]).removeprefix("sip-failover: ")
            return mail.at, f"mail server: to {to}: {subject}", None
        return mail.at, f"mail server: to {to}: {mail.mail['Subject']}, with {found[0]}", None

    def voicemail_mail(self) -> Mail | None:
        return next((m for m in self.facts.mails if m.wav() is not None), None)

    def cause(self, key: str) -> JsonObject | None:
        """The far side's event a timeline entry answers (``act:event:role``)."""
        act, _, name = key.partition(":")
        return self.acts[int(act) - 1].events.get(name)

    def failover_ms(self) -> tuple[float | None, float | None]:
        """404 to anna's INVITE: on the wire (as the trunk saw it), and by the gateway's log."""
        first = self.acts[0]
        sent, reached = first.get("reply:operator"), first.get("invite:anna")
        wire = (number(reached["t"]) - number(sent["t"])) * 1000 if sent and reached else None
        leg = first.leg_at.get("office-mobile")
        ring = first.ring_at.get("anna")
        logged = (ring - leg) * 1000 if leg is not None and ring is not None else None
        return wire, logged

    def problems(self) -> list[str]:
        """The first thing that did not happen as it should, in the user's words."""
        # The story is a chain: the first broken link is the one to read about.
        checks = self._first_call() + self._second_call() + self._third_call()
        return [message for ok, message in checks if not ok][:1]

    def _first_call(self) -> list[tuple[bool, str]]:
        f = self.acts[0]
        failover = f.get("call.failover")
        caller_heard, anna_heard = (_heard(f.get("audio:None"), w) for w in ("caller", "anna"))
        ended = f.get("call.ended")
        no_failover = "the gateway did not fail over on the operator's 404, cause 1 (it said: {})"
        no_failover = no_failover.format(json.dumps(failover) if failover else "nothing")
        return [
            ("dial:None" in f, "the caller never dialled (the far side did not start)"),
            (
                [failover.get(k) for k in ("outcome", "sip_code", "q850")]
                == ["unassigned", 404, 1],
                no_failover,
            ),
            (f.get("call.answered").get("target") == "anna", "anna never answered"),
            ("connected:caller" in f, "the caller was never connected"),
            ("early_media:caller" not in f, "the caller was sent audio before anyone answered"),
            (caller_heard[0], f"the caller did not hear anna {caller_heard[1]}"),
            (anna_heard[0], f"anna did not hear the caller {anna_heard[1]}"),
            (ended.get("result") == "answered", f"the call did not end as answered ({ended})"),
        ]

    def _second_call(self) -> list[tuple[bool, str]]:
        f = self.acts[1]
        ended, dropped = f.get("call.ended"), f.get("voicemail.dropped")
        spoke, mail = number(f.get("hangup:caller").get("spoke")), self.voicemail_mail()
        seconds = wav[2] if mail and (wav := mail.wav()) else None
        heard = {w: number(f.get(f"heard:caller:{w}").get("level")) for w in ("greeting", "beep")}
        no_voicemail = f"the second call never reached voicemail (it ended: {ended or 'not'})"
        lasts = f"the mailed recording lasts {seconds or 0:.1f} s, the caller spoke {spoke:.1f} s"
        return [
            ("dial:None" in f, "the second caller never dialled"),
            (
                "office-mobile" not in f.ring_at,
                "the second call rang office-mobile again, though it was known unassigned",
            ),
            ("reply:anna:486" in f, "anna's mobile was not rung on the second call"),
            (f.get("call.step").get("kind") == "voicemail", no_voicemail),
            (heard["greeting"] > 0, "the second caller did not hear the greeting"),
            (heard["beep"] > 0, "the second caller did not hear the beep"),
            ("voicemail.recorded" in f, f"no voicemail saved ({dropped.get('why', 'no reason')})"),
            (ended.get("result") == "voicemail", f"the call did not end as voicemail ({ended})"),
            (seconds is not None, "no mail with the recording reached the mail server"),
            (seconds is None or abs(seconds - spoke) <= 1.0, lasts),
        ]


    def _third_call(self) -> list[tuple[bool, str]]:
        f = self.acts[2]
        sit, failover = f.get("sit"), f.get("call.failover")
        caller_heard = _heard(f.get("audio:None"), "caller")
        ended = f.get("call.ended")
        return [
            ("dial:None" in f, "the third caller never dialled"),
            ("early_media:operator" in f, "the workshop's operator never played its tones"),
            (sit.get("outcome") == "unassigned", f"the gateway did not hear the tones ({sit})"),
            (
                f.get("ended:operator").get("code") == 487,
                "the gateway did not CANCEL the leg that played the tones",
            ),
            (failover.get("outcome") == "unassigned", f"no failover on the tones ({failover})"),
            (f.get("call.answered").get("target") == "anna", "anna never answered the third"),
            ("early_media:caller" not in f, "the third caller heard the operator's announcement"),
            (caller_heard[0], f"the third caller did not hear anna {caller_heard[1]}"),
            (ended.get("result") == "answered", f"the third call did not end answered ({ended})"),
        ]


_ACT_TITLES = (
    "\n  A second customer calls; anna is busy.",
    "\n  A third customer calls the workshop; its mobile's operator plays tones, never a 404.",
)


def _heard(audio: JsonObject, who: str) -> tuple[bool, str]:
    side = as_object(audio.get(who)) or {}
    level, packets = number(side.get("level")), side.get("packets", 0)
    return level > 0, f"(audio level {level:g} in {packets} packets)"


def number(value: JsonValue) -> float:
    """A number one side reported; 0 when it reported none."""
    return float(value) if isinstance(value, int | float) else 0.0


def _texts(value: JsonValue) -> list[str]:
    """A list of names one side reported (targets, recipients); empty when none."""
    return [str(item) for item in as_array(value) or []]
