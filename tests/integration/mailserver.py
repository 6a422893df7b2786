"""A real mail server for end-to-end tests: aiosmtpd on a free loopback port."""

from __future__ import annotations

from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from aiosmtpd.controller import Controller
from sipp import free_udp_port

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass
class Inbox:
    """An aiosmtpd handler: answers DATA with ``reply`` and keeps what it accepted."""

    reply: str = "250 OK"
    accepted: list[EmailMessage] = field(default_factory=list)
    attempts: int = 0
    on_data: Callable[[], None] | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.on_data is not None:
            self.on_data()
        if self.reply.startswith("250"):
            mail = message_from_bytes(envelope.original_content, policy=policy.default)
            assert isinstance(mail, EmailMessage)
            self.accepted.append(mail)
        return self.reply


class MailServer:
    """aiosmtpd on a fixed free loopback port, which the test may start late."""

    def __init__(self) -> None:
        self.port = free_udp_port()  # the harness's share: free for TCP too
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self, **smtp: Any) -> MailServer:
        self._controller = Controller(
            self.inbox, hostname="127.0.0.1", port=self.port, server_hostname="localhost", **smtp
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def env(self, **extra: str) -> dict[str, str]:
        """The gateway's SMTP settings for this server."""
        return {
            "SIP_FAILOVER_SMTP__HOST": "127.0.0.1",
            "SIP_FAILOVER_SMTP__PORT": str(self.port),
            "SIP_FAILOVER_SMTP__FROM": "voicemail@example.net",
            "SIP_FAILOVER_SMTP__TIMEOUT": "5",
            **extra,
        }
