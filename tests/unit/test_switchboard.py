"""The switchboard against a fake SIP engine: every trunk call is decided in the core and logged.

The fake implements the switchboard's ``CallEngine`` protocol: it records what
the switchboard asks of pjsua and hands back the signals a test queues, so a
test runs the real switchboard, sessions and intake on a real event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.core.admission import Admission, Capacity, EngineLoad
from gateway.core.causes import failed_locally
from gateway.core.events import LegAnswered, LegEnded, LegFailed
from gateway.core.rules import parse_rules
from gateway.core.sit import SitCode, SitTone
from gateway.sip.signals import IncomingSignal, InviteOffer, LegSignal, SitSignal
from gateway.switchboard import Switchboard

if TYPE_CHECKING:
    from gateway.core.plan import Dial
    from gateway.core.session import CallInfo

TRUNK = "192.0.2.1"
RULES = """version: 1
targets:
  office: {uri: "sip:office@192.0.2.10"}
  anna: {uri: "sip:anna@192.0.2.11"}
voicemail:
  main: {email: [office@example.com]}
routes:
  - name: main-line
    match: {to: "+3225550100"}
    steps:
      - {ring: office, timeout: 5s}
      - {ring: anna, timeout: 5s}
  - name: messages
    match: {to: "+3225550199"}
    steps: [{voicemail: main}]
"""


@dataclass
class FakeEngine:
    """What pjsua would be asked; ``legs`` is what pjsua would count."""

    legs: int = 0
    signals: list[object] = field(default_factory=list)
    done: list[tuple[Any, ...]] = field(default_factory=list)
    fail_to_send: set[str] = field(default_factory=set)  # target names pjsua will not dial
    ended: list[float] = field(default_factory=list)  # when legs ended (their sockets held)
    _ids: int = 0

    def poll(self) -> list[object]:
        taken, self.signals = self.signals, []
        return taken

    def legs_in_use(self) -> int:
        return self.legs

    def load(self, now: float) -> EngineLoad:
        return EngineLoad(self.legs, tuple(self.ended))

    def new_call_id(self) -> str:
        self._ids += 1
        return f"gw-{self._ids}"

    def ring(self, leg: str, target: Dial, call_info: CallInfo | None = None) -> None:
        self.done.append(("ring", target.name))
        if target.name in self.fail_to_send:
            c = failed_locally()
            self.signals.append(LegSignal(leg, LegFailed(leg, c.outcome, c.sip_code, c.q850)))
        else:
            self.legs += 1

    def stop_leg(self, leg: str, code: int = 0) -> None:
        self.done.append(("stop", leg, code))

    def answer(self, call_id: str, code: int = 200) -> None:
        self.done.append(("answer", call_id, code))

    def refuse(self, call_id: str, code: int, q850: int | None,
               retry_after: int | None = None) -> None:  # fmt: skip
        self.done.append(("refuse", call_id, code, q850, retry_after))

    def hang_up_caller(self, call_id: str) -> None:
        self.done.append(("hang_up_caller", call_id))

    def connect(self, call_id: str, leg: str) -> bool:
        return True

    def codecs(self, call_id: str, leg: str) -> tuple[str, str]:
        return ("PCMA", "PCMA")

    def hang_up_all(self) -> None:
        self.done.append(("hang_up_all",))


@dataclass
class Board:
    engine: FakeEngine
    switchboard: Switchboard
    events: list[tuple[str, dict[str, Any]]]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for k, data in self.events if k == kind]

    async def settled(self) -> None:
        """Status events follow the SIP actions on the loop's next turns, one a turn."""
        for _ in range(3):
            await asyncio.sleep(0)
        await self.switchboard.later.drained()

    def incoming(self, call_id: str, called: str = "+3225550100") -> None:
        """The trunk's INVITE got a slot: its inbound leg exists."""
        self.engine.legs += 1
        self.engine.signals.append(IncomingSignal(call_id, "+32470999999", (called,), TRUNK))
        self.switchboard.pump()


def board(legs: int = 0) -> Board:
    engine = FakeEngine(legs=legs)
    events: list[tuple[str, dict[str, Any]]] = []
    admission = Admission(frozenset({TRUNK}), Capacity(3, 64), per_minute=120)
    rules = parse_rules(RULES, "rules.yaml")
    sb = Switchboard(engine, rules, admission, lambda k, d: events.append((k, d)),
                     asyncio.get_running_loop())  # fmt: skip
    return Board(engine, sb, events)


def offer(source: str = TRUNK, sip_call_id: str = "a@trunk") -> InviteOffer:
    return InviteOffer(source, sip_call_id, "+32470999999", ("+3225550100",))


async def test_a_trunk_caller_with_no_slot_is_turned_away_and_logged_once() -> None:
    b = board(legs=3)
    assert b.switchboard.gate(offer()) is False
    assert b.switchboard.gate(offer()) is False  # the caller's retransmission
    b.switchboard.pump()
    await b.settled()
    (incoming,) = b.of("call.incoming")
    assert (incoming["caller"], incoming["route"]) == ("+32470999999", "main-line")
    (ended,) = b.of("call.ended")
    assert (ended["result"], ended["reason"], ended["sip_code"]) == ("refused", "over_capacity",
                                                                     480)  # fmt: skip
    assert ended["call_id"] == incoming["call_id"]
    assert b.engine.done == [], "pjsua already answered it: nothing more is sent"
    assert b.switchboard.active_calls == 0
    assert b.of("calls.active") == []


async def test_strangers_are_counted_as_a_rate_and_never_logged_per_call() -> None:
    b = board()
    for n in range(5):
        assert b.switchboard.gate(offer("203.0.113.9", f"{n}@x")) is False
    b.switchboard.pump()
    await b.settled()
    assert b.of("call.incoming") == b.of("call.ended") == []
    assert b.of("calls.refused_sources") == [{"per_minute": 5}]


async def test_a_trunk_caller_with_a_slot_is_admitted() -> None:
    b = board(legs=2)
    assert b.switchboard.gate(offer()) is True
    b.switchboard.pump()
    await b.settled()
    assert b.of("call.incoming") == []  # its IncomingSignal comes once its leg exists


async def test_no_route_is_refused_404_by_the_session_and_logged() -> None:
    b = board()
    b.incoming("c1", called="+3299999999")
    assert b.engine.done == [("refuse", "c1", 404, 1, None)]
    await b.settled()
    (ended,) = b.of("call.ended")
    assert (ended["result"], ended["reason"], ended["sip_code"]) == ("refused", "no_route", 404)
    assert b.of("call.incoming")[0]["route"] is None
    assert b.switchboard.active_calls == 0


async def test_no_leg_left_and_no_voicemail_is_refused_503_retry_after() -> None:
    b = board(legs=2)
    b.incoming("c1")  # its own leg makes 3: nothing left to ring with
    assert b.engine.done == [("refuse", "c1", 503, 42, 30)]
    await b.settled()
    (ended,) = b.of("call.ended")
    assert (ended["result"], ended["reason"]) == ("refused", "over_capacity")


async def test_while_ended_legs_hold_the_sockets_callers_are_refused_not_rung() -> None:
    b = board()
    b.engine.ended = [b.switchboard.loop.time()] * 29  # 58 of pjsua's 64 handles held
    assert b.switchboard.gate(offer()) is False  # the gate's stateless 480
    b.incoming("c1")  # a caller let in just before: nothing rung, 503 + Retry-After
    assert b.engine.done == [("refuse", "c1", 503, 42, 30)]
    await b.settled()
    ended = b.of("call.ended")
    assert [(e["result"], e["reason"]) for e in ended] == [("refused", "over_capacity")] * 2


async def test_a_box_that_cannot_take_a_message_refuses_480_and_the_call_failed() -> None:
    b = board()  # no answering machine at all
    b.incoming("c1", called="+3225550199")
    await asyncio.sleep(0)  # the voicemail's end is reported on the next loop turn
    assert ("refuse", "c1", 480, 19, None) in b.engine.done
    assert ("answer", "c1", 200) not in b.engine.done
    await b.settled()
    (ended,) = b.of("call.ended")
    assert (ended["result"], ended["reason"]) == ("failed", "voicemail_unavailable")


async def test_a_leg_that_fails_locally_fails_over_like_an_unreachable_one() -> None:
    b = board()
    b.engine.fail_to_send.add("office")
    b.incoming("c1")
    b.switchboard.pump()
    assert [d for d in b.engine.done if d[0] == "ring"] == [("ring", "office"), ("ring", "anna")]
    await b.settled()
    (leg,) = b.of("call.leg")
    assert (leg["target"], leg["outcome"]) == ("office", "unreachable")
    assert b.of("call.failover")[0]["outcome"] == "unreachable"


class _Timers:
    """Stands in for the loop's ``call_later`` in the answer hold: a test fires them."""

    def __init__(self) -> None:
        self.due: list[tuple[float, Any, tuple[Any, ...]]] = []

    def call_later(self, delay: float, callback: Any, *args: Any) -> Any:
        self.due.append((delay, callback, args))
        return asyncio.get_running_loop().call_later(3600, lambda: None)  # cancellable

    def fire(self) -> None:
        taken, self.due = self.due, []
        for _delay, callback, args in taken:
            callback(*args)


def held_board() -> tuple[Board, _Timers]:
    b = board()
    b.switchboard.rules = parse_rules(RULES + "sit: {hold_answer: 2s}\n", "rules.yaml")
    timers = _Timers()
    b.switchboard._held.loop = timers  # type: ignore[assignment]
    return b, timers


def itu_sit() -> SitTone:
    return SitTone(SitCode.ITU, (950.0, 1400.0, 1800.0), (330, 330, 160), 0.1, 1.1)


async def test_a_held_answer_is_not_bridged_and_tones_meanwhile_fail_over() -> None:
    b, timers = held_board()
    b.incoming("c1")
    b.engine.signals.append(LegSignal("c1/1", LegAnswered("c1/1")))
    b.switchboard.pump()
    assert [delay for delay, _, _ in timers.due] == [2.0]
    assert ("answer", "c1", 200) not in b.engine.done, "bridged before the hold ended"
    await b.settled()
    assert b.of("call.answered") == []
    b.engine.signals.append(SitSignal("c1/1", itu_sit()))
    b.switchboard.pump()
    assert ("stop", "c1/1", 0) in b.engine.done
    assert [d for d in b.engine.done if d[0] == "ring"] == [("ring", "office"), ("ring", "anna")]
    await b.settled()
    (failover,) = b.of("call.failover")
    assert (failover["outcome"], failover["sip_code"]) == ("unassigned", None)
    timers.fire()  # cancelled: the old answer never counts
    await b.settled()
    assert b.of("call.answered") == []


async def test_a_held_answer_without_tones_counts_when_the_hold_ends() -> None:
    b, timers = held_board()
    b.incoming("c1")
    b.engine.signals.append(LegSignal("c1/1", LegAnswered("c1/1")))
    b.switchboard.pump()
    timers.fire()
    await b.settled()
    assert [a["target"] for a in b.of("call.answered")] == ["office"]
    assert ("answer", "c1", 200) in b.engine.done


async def test_a_leg_hung_up_while_its_answer_is_held_fails_over() -> None:
    b, _timers = held_board()
    b.incoming("c1")
    b.engine.signals.append(LegSignal("c1/1", LegAnswered("c1/1")))
    b.engine.signals.append(LegSignal("c1/1", LegEnded("c1/1")))
    b.switchboard.pump()
    await b.settled()
    assert b.of("call.answered") == []
    assert b.of("call.failover")[0]["outcome"] == "failed"
    assert [d for d in b.engine.done if d[0] == "ring"] == [("ring", "office"), ("ring", "anna")]


async def test_without_a_hold_an_answer_is_bridged_at_once() -> None:
    b = board()
    b.incoming("c1")
    b.engine.signals.append(LegSignal("c1/1", LegAnswered("c1/1")))
    b.switchboard.pump()
    await b.settled()
    assert [a["target"] for a in b.of("call.answered")] == ["office"]
