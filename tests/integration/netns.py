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


EDGE_ADDRESS = "10.77.0.1"  # the edge's own address, on the loopback of its namespace


def worker_address(n: int) -> str:
    """Worker ``n``'s address (1-based), in its own namespace."""
    return f"10.77.{n}.2"


@contextmanager
def worker_hosts(edge: str, count: int) -> Iterator[list[str]]:
    """``count`` more namespaces, each a "machine" linked to ``edge`` by a veth pair.

    The edge's namespace gets `EDGE_ADDRESS` on its loopback and
    ``10.77.n.1`` on the n-th link; worker n has `worker_address` and a
    default route through its link, so it reaches the edge and whatever runs
    there (the trunk, the callers). Nothing is forwarded between workers, and
    nothing leaves the edge's namespace. Yields the workers' namespace names.
    """
    names = [f"{edge}-w{n}" for n in range(1, count + 1)]
    try:
        _ip(edge, "addr", "add", f"{EDGE_ADDRESS}/32", "dev", "lo")
        for n, name in enumerate(names, start=1):
            subprocess.run([IP, "netns", "add", name], check=True)
            subprocess.run([IP, "-n", edge, "link", "add", f"e{n}", "type", "veth", "peer",
                            "name", f"w{n}", "netns", name], check=True)  # fmt: skip
            _ip(edge, "addr", "add", f"10.77.{n}.1/24", "dev", f"e{n}")
            _ip(edge, "link", "set", f"e{n}", "up")
            _ip(name, "link", "set", "lo", "up")
            _ip(name, "addr", "add", f"{worker_address(n)}/24", "dev", f"w{n}")
            _ip(name, "link", "set", f"w{n}", "up")
            _ip(name, "route", "add", "default", "via", f"10.77.{n}.1")
        yield names
    finally:
        for name in names:
            subprocess.run([IP, "netns", "delete", name], check=False)


def _ip(namespace: str, *args: str) -> None:
    subprocess.run([IP, "-n", namespace, *args], check=True)


def run_in(namespace: str) -> list[str]:
    """The command prefix that runs a program in ``namespace``."""
    return [IP, "netns", "exec", namespace]
