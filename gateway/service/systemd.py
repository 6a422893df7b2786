"""systemd's notify protocol (sd_notify): ready, watchdog, stopping.

With ``Type=notify`` systemd starts dependent units only once the gateway
takes calls, and with ``WatchdogSec=`` it restarts a gateway whose loop has
stopped polling the SIP engine (a hung loop means no call gets through).
The protocol is one datagram per message to ``$NOTIFY_SOCKET``; outside
systemd every call here does nothing.
"""

from __future__ import annotations

import os
import socket

from loguru import logger


def notify(message: str) -> bool:
    """Send one sd_notify message (e.g. ``READY=1``); False outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket (Linux)
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as error:
        logger.warning("sd_notify {}: {}", message.split("=", 1)[0], error)
        return False
    return True


def watchdog_interval() -> float | None:
    """How often to send ``WATCHDOG=1`` (half of ``WatchdogSec``), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000


class Watchdog:
    """Feeds systemd's watchdog (``WATCHDOG=1``) at half its interval; nothing outside systemd."""

    def __init__(self, now: float) -> None:
        self.interval = watchdog_interval()
        self._fed = now

    def feed(self, now: float) -> bool:
        """Tell systemd the loop is alive if it is time to; True when it was told."""
        if self.interval is None or now - self._fed < self.interval:
            return False
        self._fed = now
        return notify("WATCHDOG=1")
