"""Run part of a test in a network namespace of its own, with only loopback.

Hostile input (RFC 4475 torture messages, scanners) can make a SIP stack
answer toward hosts named inside the message (a Via's maddr, a broadcast
address, a host name to resolve). Inside a fresh namespace with only ``lo``,
nothing the gateway or a scanner sends can leave this machine.

``isolated_network()`` moves the calling thread into a new namespace (Linux
``setns``); every socket it opens and every process it starts (the gateway,
SIPp, sipvicious) lives there until the block ends. Needs root and iproute2.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
IP = shutil.which("ip") or "/usr/sbin/ip"


def available() -> bool:
    """True when this process may create and enter network namespaces."""
    return os.geteuid() == 0 and Path(IP).exists()


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns(CLONE_NEWNET) failed")


@contextmanager
def isolated_network() -> Iterator[str]:
    """A new network namespace with ``lo`` up, entered for the block's duration."""
    name = f"sip-failover-test-{secrets.token_hex(4)}"
    subprocess.run([IP, "netns", "add", name], check=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        subprocess.run([IP, "netns", "exec", name, IP, "link", "set", "lo", "up"], check=True)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield name
        finally:
            _setns(home)
    finally:
        os.close(home)
        subprocess.run([IP, "netns", "delete", name], check=False)
