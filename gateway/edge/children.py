"""Child processes of the pool: Kamailio and the workers, their output prefixed.

Each child runs in the foreground (Kamailio with ``-DD -E``: no daemon, its
log on stderr), its stdout and stderr read line by line by the supervisor
and written to our stderr behind the child's name, so one journal holds the
whole pool. A line may also be handed to a watcher (the ``ready`` line of a
worker, the edge's ``pool-full`` lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loguru import logger

from gateway.json_types import as_object, loads

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from pathlib import Path

    from gateway.json_types import JsonArray, JsonValue



@dataclass
class Child:
    """One child process, restartable.

    Args:
        name: the prefix of its lines (``edge``, ``worker1``).
        argv: its command line.
        env: its whole environment.
        on_line: sees every line of its output (after it is written out).
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    on_line: Callable[[str], None] = lambda _line: None
    process: asyncio.subprocess.Process | None = field(default=None, init=False)
    _reader: asyncio.Task[None] | None = field(default=None, init=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        """Start the process; its output is copied to our stderr, prefixed."""
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=dict(self.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches the supervisor only: it stops us in order
        )
        self._reader = asyncio.create_task(self._copy_output(), name=f"{self.name}.output")

    async def _copy_output(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            sys.stderr.write(f"{self.name}| {line}\n")
            try:
                self.on_line(line)
            except Exception:  # noqa: BLE001 - a watcher's bug must not stop the copying
                logger.opt(exception=True).error("{}: line watcher failed", self.name)

    async def wait(self) -> int:
        """Wait until it exits (its output copied to the end); return its exit code."""
        assert self.process is not None
        code = await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2.0)
        return code

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            logger.warning("{} did not stop within {:.0f} s: killed", self.name, grace)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


def worker_argv() -> list[str]:
    """How a worker is started: this Python, this package, ``run``."""
    return [sys.executable, "-m", "gateway", "run"]


def kamailio_argv(binary: Path, cfg: Path, shm_mb: int, pkg_mb: int) -> list[str]:
    """Kamailio in the foreground, logging to stderr, with small memory pools."""
    return [str(binary), "-DD", "-E", "-m", str(shm_mb), "-M", str(pkg_mb), "-f", str(cfg)]


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Our environment with ``extra`` over it."""
    return {**os.environ, **extra}


async def rpc(sock_path: Path, reply_path: Path, method: str, params: JsonArray) -> JsonValue:
    """One JSON-RPC call to Kamailio's jsonrpcs datagram socket.

    Returns:
        The ``result`` member, or None when Kamailio did not answer in 1 s
        or answered with an error.
    """
    loop = asyncio.get_running_loop()
    request = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    with _reply_socket(reply_path) as sock:
        try:
            sock.sendto(json.dumps(request).encode(), str(sock_path))
            data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 1.0)
        except (OSError, TimeoutError):
            return None
    try:
        reply = as_object(loads(data))
    except ValueError:
        return None
    return reply.get("result") if reply is not None else None


@contextlib.contextmanager
def _reply_socket(path: Path) -> Iterator[socket.socket]:
    """A Unix datagram socket bound at ``path`` (Kamailio answers to its address)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        sock.setblocking(False)
        yield sock
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
