"""The mailer against a real SMTP server (aiosmtpd) on 127.0.0.1.

Time is a clock the test moves: the mailer is driven with ``run_due()`` and
``deliver_once()``, never by waiting for a retry delay.
"""

from __future__ import annotations

import asyncio
import io
import math
import socket
import struct
import wave
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from loguru import logger
from pydantic import SecretStr
from sipp import free_udp_port

from gateway.config import SmtpSettings
from gateway.voicemail.mailer import Mailer
from gateway.voicemail.record import SpooledMessage, VoicemailMeta
from gateway.voicemail.retry import Step
from gateway.voicemail.spool import Spool

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 14, 9, 15, 30, tzinfo=UTC)
BRUSSELS = ZoneInfo("Europe/Brussels")
USER, PASSWORD = "gateway", "hunter2-correct-horse"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Inbox:
    """An aiosmtpd handler: answers DATA with ``reply`` and keeps what it accepted."""

    reply: str = "250 OK"
    accepted: list[EmailMessage] = field(default_factory=list)
    attempts: int = 0
    ehlo_names: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        self.ehlo_names.append(session.host_name)
        if self.reply.startswith("250"):
            mail = message_from_bytes(envelope.original_content, policy=policy.default)
            assert isinstance(mail, EmailMessage)
            self.accepted.append(mail)
        return self.reply

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def only_our_login(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # not handled: the server answers 535


def free_port() -> int:
    return free_udp_port()  # the harness's share: free for TCP too


class Server:
    """A mail server on a fixed loopback port that the test can start late."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self, **smtp: Any) -> None:
        self._controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port, server_hostname="localhost", **smtp
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server(free_port())
    running.start()
    yield running
    running.stop()


@pytest.fixture
def down_server() -> Iterator[Server]:
    idle = Server(free_port())
    yield idle
    idle.stop()


@pytest.fixture
def events() -> list[tuple[str, dict[str, object]]]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


def settings_for(server: Server, **extra: Any) -> SmtpSettings:
    return SmtpSettings(
        host="127.0.0.1", port=server.port, timeout=5, from_="gw@example.net", **extra
    )


def make_mailer(
    server: Server, spool: Spool, events: list[Any], clock: Clock, **extra: Any
) -> Mailer:
    return Mailer(
        settings_for(server, **extra),
        spool,
        lambda kind, data: events.append((kind, data)),
        BRUSSELS,
        clock,
        jitter=lambda: 1.0,  # the longest delay of each step: the schedule as documented
    )


def wav_bytes(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A short real WAV: a 440 Hz tone, 16-bit mono, as the recorder would write."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(seconds * rate))
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


def leave_voicemail(
    spool: Spool,
    caller: str = "+32470000001",
    recipients: tuple[str, ...] = ("office@example.com",),
) -> SpooledMessage:
    reservation = spool.reserve(f"call-{caller}")
    reservation.path.write_bytes(wav_bytes())
    meta = VoicemailMeta(
        id=reservation.id,
        call_id=reservation.call_id,
        caller=caller,
        called="+3225550100",
        started_at=T0,
        duration=1.0,
        route="main-line",
        box="main",
        why="main line unassigned, backups no answer",
        recipients=recipients,
    )
    return spool.commit(reservation, meta)


def kinds(events: list[tuple[str, dict[str, object]]]) -> list[str]:
    return [kind for kind, _ in events]


async def test_delivered_exactly_once_with_a_playable_wav(
    tmp_path: Path, server: Server, events: list[Any], clock: Clock
) -> None:
    spool = Spool(tmp_path, clock=clock)
    message = leave_voicemail(spool)
    mailer = make_mailer(server, spool, events, clock)
    assert await mailer.run_due() is None
    assert await mailer.run_due() is None
    (mail,) = server.inbox.accepted
    assert mail["Message-ID"] == f"<voicemail.{message.id}@example.net>"
    assert mail["Subject"].startswith("Voicemail from +32470000001 (0:01)")
    (attachment,) = mail.iter_attachments()
    assert attachment.get_content_type() == "audio/wav"
    with wave.open(io.BytesIO(attachment.get_content())) as played:
        assert (played.getframerate(), played.getnframes()) == (8000, 8000)
    assert events == [
        ("voicemail.delivered", {"id": message.id, "recipients": ["office@example.com"]})
    ]
    assert spool.pending() == []


async def test_server_down_then_up_delivers_once_after_retries(
    tmp_path: Path, down_server: Server, events: list[Any], clock: Clock
) -> None:
    spool = Spool(tmp_path, clock=clock)
    message = leave_voicemail(spool)
    mailer = make_mailer(down_server, spool, events, clock)
    assert await mailer.run_due() == T0 + timedelta(minutes=1)
    assert await mailer.run_due() == T0 + timedelta(minutes=1)  # not due: not tried again
    clock.now = T0 + timedelta(minutes=1)
    assert await mailer.run_due() == T0 + timedelta(minutes=3)
    (pending,) = spool.pending()
    assert pending.retry.attempts == 2
    assert f"cannot reach 127.0.0.1:{down_server.port}" in (pending.retry.last_error or "")
    # the outage is told once, not at every attempt
    assert kinds(events) == ["voicemail.failed"]
    assert events[0][1]["permanent"] is False

    down_server.start()
    clock.now = T0 + timedelta(minutes=3)
    assert await mailer.run_due() is None
    assert len(down_server.inbox.accepted) == 1
    assert down_server.inbox.accepted[0]["Message-ID"].startswith(f"<voicemail.{message.id}@")
    assert kinds(events) == ["voicemail.failed", "voicemail.delivered"]
    assert await mailer.run_due() is None
    assert len(down_server.inbox.accepted) == 1


async def test_permanent_refusal_keeps_the_voicemail_in_failed(
    tmp_path: Path, server: Server, events: list[Any], clock: Clock
) -> None:
    server.inbox.reply = "550 5.1.1 mailbox unavailable"
    spool = Spool(tmp_path, clock=clock)
    message = leave_voicemail(spool)
    result = await make_mailer(server, spool, events, clock).deliver_once(message)
    assert result.step is Step.GIVE_UP
    assert spool.pending() == []
    (kept,) = spool.failed()
    assert kept.audio.read_bytes() == wav_bytes()
    ((kind, data),) = events
    assert kind == "voicemail.failed"
    assert data["permanent"] is True
    assert "550" in str(data["error"])


async def test_a_mail_server_down_for_the_whole_lifetime_ends_in_failed(
    tmp_path: Path, down_server: Server, events: list[Any], clock: Clock
) -> None:
    spool = Spool(tmp_path, clock=clock)
    message = leave_voicemail(spool)
    clock.now = T0 + timedelta(days=6)  # the gateway itself was off meanwhile
    result = await make_mailer(down_server, spool, events, clock).deliver_once(message)
    assert result.step is Step.GIVE_UP
    assert [m.id for m in spool.failed()] == [message.id]
    assert events[-1][1]["permanent"] is True
    assert str(events[-1][1]["error"]).startswith("gave up after 5 days: cannot reach")


async def test_a_refused_recipient_does_not_make_the_others_get_it_twice(
    tmp_path: Path, server: Server, events: list[Any], clock: Clock
) -> None:
    spool = Spool(tmp_path, clock=clock)
    leave_voicemail(spool, recipients=("office@example.com", "gone@example.com"))
    mailer = make_mailer(server, spool, events, clock)
    assert await mailer.run_due() is None
    clock.now += timedelta(hours=2)
    assert await mailer.run_due() is None
    assert len(server.inbox.accepted) == 1
    assert kinds(events) == ["voicemail.delivered", "voicemail.failed"]
    assert events[0][1]["recipients"] == ["office@example.com"]
    assert events[1][1]["permanent"] is True
    assert "gone@example.com: 550" in str(events[1][1]["error"])
    assert len(spool.failed()) == 1


async def test_temporary_refusal_is_retried_until_accepted(
    tmp_path: Path, server: Server, events: list[Any], clock: Clock
) -> None:
    server.inbox.reply = "451 4.3.0 try again later"
    spool = Spool(tmp_path, clock=clock)
    leave_voicemail(spool)
    mailer = make_mailer(server, spool, events, clock)
    due = await mailer.run_due()
    assert due == T0 + timedelta(minutes=1)
    server.inbox.reply = "250 OK"
    clock.now = due
    assert await mailer.run_due() is None
    assert server.inbox.attempts == 2
    assert len(server.inbox.accepted) == 1
    assert kinds(events) == ["voicemail.failed", "voicemail.delivered"]


async def test_wrong_password_alarms_keeps_the_message_and_never_shows_the_password(
    tmp_path: Path, down_server: Server, events: list[Any], clock: Clock
) -> None:
    down_server.start(authenticator=only_our_login, auth_require_tls=False)
    logged: list[str] = []
    sink = logger.add(logged.append, level="DEBUG")
    try:
        spool = Spool(tmp_path, clock=clock)
        leave_voicemail(spool)
        wrong = SecretStr("not-the-password-42")
        mailer = make_mailer(down_server, spool, events, clock, username=USER, password=wrong)
        due = await mailer.run_due()
        assert due is not None
        clock.now = due
        await mailer.run_due()
    finally:
        logger.remove(sink)
    assert down_server.inbox.accepted == []
    assert kinds(events) == ["voicemail.failed", "voicemail.failed"]  # at every attempt
    assert all(data["permanent"] is False for _, data in events)
    assert "credentials" in str(events[0][1]["error"])
    assert "not-the-password-42" not in repr(events) + "".join(logged)
    (kept,) = spool.pending()
    assert kept.retry.attempts == 2

    # The admin fixes the password: the kept message goes out.
    fixed = make_mailer(down_server, spool, events, clock, username=USER, password=PASSWORD)
    clock.now += timedelta(hours=1)
    assert await fixed.run_due() is None
    assert len(down_server.inbox.accepted) == 1


async def test_restart_delivers_what_was_pending_and_not_what_was_delivered(
    tmp_path: Path, server: Server, events: list[Any], clock: Clock
) -> None:
    spool = Spool(tmp_path, clock=clock)
    first = leave_voicemail(spool, "+32470000001")
    assert await make_mailer(server, spool, events, clock).run_due() is None
    server.inbox.reply = "451 4.3.0 try again later"
    clock.now += timedelta(seconds=1)
    second = leave_voicemail(spool, "+32480000002")
    assert await make_mailer(server, spool, events, clock).run_due() is not None

    server.inbox.reply = "250 OK"
    clock.now += timedelta(hours=1)
    after_restart = Spool(tmp_path, clock=clock)
    assert await make_mailer(server, after_restart, events, clock).run_due() is None
    ids = [mail["Message-ID"] for mail in server.inbox.accepted]
    assert ids == [f"<voicemail.{first.id}@example.net>", f"<voicemail.{second.id}@example.net>"]
    assert after_restart.pending() == []


async def test_run_sends_a_new_message_when_notified(tmp_path: Path, server: Server) -> None:
    spool = Spool(tmp_path)
    delivered: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()

    def emit(kind: str, data: dict[str, object]) -> None:
        if kind == "voicemail.delivered":
            delivered.set_result(data)

    mailer = Mailer(settings_for(server), spool, emit, BRUSSELS)
    running = asyncio.create_task(mailer.run(), name="voicemail.mailer")
    try:
        await asyncio.sleep(0)  # let it find the empty queue and wait
        message = leave_voicemail(spool)
        mailer.notify()
        async with asyncio.timeout(10):
            assert (await delivered)["id"] == message.id
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert len(server.inbox.accepted) == 1


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """``socket.getfqdn`` fails the test: on a host whose name is not in /etc/hosts
    it waits on DNS for seconds, long enough to time a test server out."""

    def looked_up(name: str = "") -> str:
        raise AssertionError(f"socket.getfqdn({name!r}) called: a DNS look-up")

    monkeypatch.setattr(socket, "getfqdn", looked_up)


@pytest.mark.usefixtures("no_dns")
async def test_the_mailer_says_ehlo_with_its_setting_and_looks_nothing_up(
    tmp_path: Path, events: list[Any], clock: Clock
) -> None:
    server = Server(free_port())
    server.start()  # after no_dns: the test server must not look its own name up either
    try:
        spool = Spool(tmp_path, clock=clock)
        leave_voicemail(spool)
        mailer = make_mailer(server, spool, events, clock, ehlo_name="gw1.example.net")
        assert await mailer.run_due() is None
    finally:
        server.stop()
    assert server.inbox.ehlo_names == ["gw1.example.net"]
    assert kinds(events) == ["voicemail.delivered"]


@pytest.mark.usefixtures("no_dns")
async def test_the_default_ehlo_name_is_the_host_name_as_it_is(
    tmp_path: Path, events: list[Any], clock: Clock
) -> None:
    server = Server(free_port())
    server.start()
    try:
        spool = Spool(tmp_path, clock=clock)
        leave_voicemail(spool)
        assert await make_mailer(server, spool, events, clock).run_due() is None
    finally:
        server.stop()
    assert server.inbox.ehlo_names == [socket.gethostname()]
