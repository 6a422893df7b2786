"""Trunk registration: backoff after failures, and unregistering at shutdown."""

from __future__ import annotations

import asyncio

from gateway.config import TrunkSettings
from gateway.sip.registration import Registration
from gateway.sip.signals import RegistrationSignal


class Engine:
    """Records what was asked of pjsua; ``busy`` answers like PJSIP_EBUSY."""

    def __init__(self) -> None:
        self.sent: list[bool] = []
        self.busy = False

    def set_registration(self, active: bool) -> str:
        if self.busy:
            return "busy"
        self.sent.append(active)
        return "sent"


def registration(engine: Engine, events: list[dict[str, object]]) -> Registration:
    trunk = TrunkSettings(registrar="sip:127.0.0.1", retry_first=5, retry_max=300)
    loop = asyncio.get_running_loop()
    return Registration(engine, loop, lambda _kind, data: events.append(data), trunk)  # type: ignore[arg-type]


OK = RegistrationSignal(200, "OK", 300, active=True)
GONE = RegistrationSignal(200, "OK", 0, active=False)


async def test_unregister_waits_for_a_refresh_in_flight_at_shutdown() -> None:
    engine, events = Engine(), []
    reg = registration(engine, events)
    reg.on_signal(OK)
    engine.busy = True  # a refresh REGISTER is still in flight
    reg.stop()
    assert engine.sent == []
    engine.busy = False
    reg.on_signal(OK)  # the refresh is answered: now the unREGISTER goes
    assert engine.sent == [False]
    assert reg.unregistering
    reg.on_signal(GONE)
    assert events[-1]["state"] == "unregistered"
    assert not reg.unregistering


async def test_unregister_goes_after_the_first_register_in_flight_at_shutdown() -> None:
    engine, events = Engine(), []
    reg = registration(engine, events)
    engine.busy = True  # the first REGISTER is unanswered: not registered yet
    reg.stop()
    assert engine.sent == []
    assert reg.unregistering, "the shutdown would not wait for the un-REGISTER"
    engine.busy = False
    reg.on_signal(OK)
    assert engine.sent == [False]


async def test_unregister_goes_even_when_the_refresh_in_flight_fails() -> None:
    engine, events = Engine(), []
    reg = registration(engine, events)
    reg.on_signal(OK)
    engine.busy = True
    reg.stop()
    engine.busy = False
    reg.on_signal(RegistrationSignal(408, "Request Timeout", 0, active=False))
    assert engine.sent == [False], "the registrar may still hold the old binding"
    assert events[-1]["state"] == "unregistered"


async def test_shutdown_during_a_retry_backoff_unregisters_and_never_retries() -> None:
    engine, events = Engine(), []
    reg = registration(engine, events)
    reg.on_signal(OK)
    reg.on_signal(RegistrationSignal(503, "Service Unavailable", 0, active=False))
    reg.stop()
    assert engine.sent == [False]
    reg.on_signal(GONE)
    assert not reg.unregistering
    assert engine.sent == [False]


async def test_a_failed_register_is_retried_later_not_at_once() -> None:
    engine, events = Engine(), []
    reg = registration(engine, events)
    reg.on_signal(RegistrationSignal(503, "Service Unavailable", 0, active=False))
    assert events[-1]["state"] == "failed"
    assert engine.sent == []  # not hammered: the retry is scheduled (2.5 to 5 s)
    reg.stop()  # and shutdown cancels it (only the un-REGISTER goes)
    await asyncio.sleep(0)
    assert True not in engine.sent
