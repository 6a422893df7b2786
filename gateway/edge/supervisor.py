"""The supervisor: Kamailio as the edge, N gateway workers behind it.

``sip-failover run --workers N`` and ``sip-failover edge`` run this. It
writes the edge's configuration into ``<state>/edge/``, starts Kamailio in
the foreground and the workers on loopback ports, and keeps them running:
a worker that exits is started again at once (well within 5 s); if the edge
exits, everything stops and the supervisor exits non-zero, so that systemd
restarts the whole pool. SIGTERM stops the workers first (they finish their
calls within the grace period), then the edge.
"""

from __future__ import annotations

import asyncio
import functools
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from loguru import logger

from gateway.config import sip_uri_hostport
from gateway.edge.channel import as_int
from gateway.edge.children import Child, clean_env, kamailio_argv, rpc, worker_argv
from gateway.edge.kamailio_cfg import POOL_FULL_MARK, EdgeLayout, edge_files
from gateway.json_types import as_object
from gateway.service import systemd

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.config import Settings
    from gateway.json_types import JsonObject
    from gateway.status.bus import StatusSink

RESTART_DELAY_S = 0.2  # a worker that dies is started again after this
REG_POLL_S = 2.0  # how often the edge's trunk registration is read
WORKER_RTP_PORTS = 40  # RTP ports per worker: 4 legs x RTP + RTCP, with room
_WILDCARD = {"0.0.0.0", "::", ""}  # noqa: S104 - listen addresses, not a bind


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def local_layout(settings: Settings, workers: int) -> EdgeLayout:
    """The edge on the listen address, ``workers`` workers on the next ports."""
    host, port = settings.sip.host, settings.sip.port
    worker_host = "127.0.0.1" if host in _WILDCARD else host
    first = settings.edge.worker_port or port + 1
    pool = tuple((worker_host, first + n) for n in range(workers))
    return EdgeLayout((host, port), pool, settings.state_dir / "edge")


def remote_layout(settings: Settings) -> EdgeLayout:
    """The edge alone: its workers are at ``SIP_FAILOVER_EDGE__WORKERS``."""
    pool = tuple(sip_uri_hostport(f"sip:{address}") for address in settings.edge.workers)
    return EdgeLayout((settings.sip.host, settings.sip.port), pool, settings.state_dir / "edge")


def write_edge_files(settings: Settings, layout: EdgeLayout) -> None:
    """The configuration folder, readable by us only (it holds the trunk password)."""
    layout.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(layout.folder, 0o700)  # noqa: PTH101
    for name, text in edge_files(settings, layout).items():
        path = layout.folder / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)


def registration_state(info: JsonObject | None) -> tuple[str, int, str, int]:
    """``uac.reg_info``'s flags as (state, code, reason, expires) for ``trunk/registration``.

    Flags (uac module): 1 disabled, 2 in progress, 4 succeeded, 8 in
    progress with authentication, 16 initialised.
    """
    if info is None:
        return "unknown", 0, "the edge did not answer", 0
    flags = as_int(info.get("flags", 0))
    expires = as_int(info.get("expires", 0))
    if flags & 1:
        return "disabled", 0, "registration turned off", 0
    if flags & 4:
        return "registered", 200, "OK", expires
    if flags & (2 | 8):
        return "registering", 0, "in progress", expires
    return "failed", 0, "not registered; retried by the edge", 0


@dataclass
class PoolEvents:
    """Where the supervisor reports: a status sink and the pool-full callers."""

    notify: StatusSink
    pool_full: Callable[[dict[str, str]], None]


class Supervisor:
    """Runs the edge and (on one machine) the workers until stopped."""

    def __init__(self, settings: Settings, layout: EdgeLayout, local_workers: bool,
                 events: PoolEvents, worker_env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.layout = layout
        self.events = events
        self.stopping = asyncio.Event()
        self.restarts = 0
        self._ready: set[str] = set()
        self._all_ready = asyncio.Event()
        self.edge = Child("edge", kamailio_argv(settings.edge.kamailio, layout.folder /
                          "kamailio.cfg", settings.edge.shm_mb, settings.edge.pkg_mb),
                          clean_env({}), self._edge_line)  # fmt: skip
        self.workers: list[Child] = []
        if local_workers:
            self.workers = [self._worker(n, worker_env or {}) for n in range(len(layout.workers))]
        self._registration = ""

    @property
    def edge_address(self) -> str:
        """Where workers send legs: the edge's listen address (loopback if wildcard)."""
        host, port = self.layout.listen
        return _hostport("127.0.0.1" if host in _WILDCARD else host, port)

    def _worker(self, n: int, extra: dict[str, str]) -> Child:
        host, port = self.layout.workers[n]
        env = {
            "SIP_FAILOVER_SIP__LISTEN": _hostport(host, port),
            "SIP_FAILOVER_EDGE__ADDRESS": self.edge_address,
            "SIP_FAILOVER_EDGE__WORKER_INDEX": str(n + 1),
            # The pool's one spool: workers record into it, only the control
            # process (this one) mails; the call log and status are ours too.
            "SIP_FAILOVER_STATE_DIR": str(self.settings.state_dir),
            **extra,
        }
        rtp = self.settings.sip.rtp_port
        if rtp:
            env["SIP_FAILOVER_SIP__RTP_PORT"] = str(rtp + n * WORKER_RTP_PORTS)
            env["SIP_FAILOVER_SIP__RTP_PORT_RANGE"] = str(WORKER_RTP_PORTS)
        name = f"worker{n + 1}"
        watch = functools.partial(self._worker_line, name)
        return Child(name, worker_argv(), clean_env(env), watch)

    # -- output watchers ----------------------------------------------------------

    def _edge_line(self, line: str) -> None:
        if POOL_FULL_MARK in line:
            words = line.split(POOL_FULL_MARK, 1)[1].split()
            self.events.pool_full(dict(w.split("=", 1) for w in words if "=" in w))

    def _worker_line(self, name: str, line: str) -> None:
        if " ready listen=" in line and name not in self._ready:
            self._ready.add(name)
            if len(self._ready) == len(self.workers):
                self._all_ready.set()

    # -- running --------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until SIGTERM (exit 0) or until the edge dies (exit 1)."""
        write_edge_files(self.settings, self.layout)
        await self.edge.start()
        logger.info("edge started: kamailio pid {} listen={}", self.edge.pid,
                    _hostport(*self.layout.listen))  # fmt: skip
        async with asyncio.TaskGroup() as tasks:
            edge_watch = tasks.create_task(self._watch_edge(), name="edge.watch")
            background = [
                *(tasks.create_task(self._keep_running(w), name=f"{w.name}.keep")
                  for w in self.workers),
                tasks.create_task(self._poll_registration(), name="edge.registration"),
                tasks.create_task(self._announce_ready(), name="pool.ready"),
            ]  # fmt: skip
            await self.stopping.wait()
            await self._stop_all()
            for task in background:
                task.cancel()
        failed = edge_watch.result()
        logger.info("stopped")
        return 1 if failed else 0

    async def _announce_ready(self) -> None:
        if self.workers:
            await self._all_ready.wait()
        await self._wait_rpc()
        logger.info("ready listen={} workers={}", _hostport(*self.layout.listen),
                    ",".join(_hostport(*w) for w in self.layout.workers))  # fmt: skip
        systemd.notify("READY=1")

    async def _wait_rpc(self) -> None:
        while not self.layout.rpc_socket.exists():  # noqa: ASYNC110 - Kamailio makes it
            await asyncio.sleep(0.05)

    async def _watch_edge(self) -> bool:
        code = await self.edge.wait()
        if self.stopping.is_set():
            return False
        logger.error("the edge (kamailio) exited with {}: stopping the pool", code)
        self.stopping.set()
        return True

    async def _keep_running(self, worker: Child) -> None:
        while not self.stopping.is_set():
            await worker.start()
            logger.info("{} started: pid {}", worker.name, worker.pid)
            code = await worker.wait()
            if self.stopping.is_set():
                return
            self.restarts += 1
            logger.warning("{} exited with {}: restarting", worker.name, code)
            self.events.notify("pool.worker", {"worker": worker.name, "state": "restarting",
                                               "exit_code": code})  # fmt: skip
            await asyncio.sleep(RESTART_DELAY_S)

    async def _poll_registration(self) -> None:
        reply = self.layout.folder / f"rpc-reply-{os.getpid()}.sock"
        while not self.stopping.is_set():
            info = await rpc(self.layout.rpc_socket, reply, "uac.reg_info", ["l_uuid", "trunk"])
            self._publish_registration(as_object(info))
            await asyncio.sleep(REG_POLL_S)

    def _publish_registration(self, info: JsonObject | None) -> None:
        if not self.settings.trunk.register_enabled:
            return
        state, code, reason, expires = registration_state(info)
        if state == self._registration:
            return
        self._registration = state
        logger.info("trunk registration: {} ({} {})", state, code, reason)
        self.events.notify("trunk.registration", {
            "state": state, "code": code, "reason": reason, "expires": expires,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        })  # fmt: skip

    async def _stop_all(self) -> None:
        grace = self.settings.shutdown_grace + 5.0
        await asyncio.gather(*(worker.stop(grace) for worker in self.workers))
        await self.edge.stop(5.0)

    def request_stop(self) -> None:
        self.stopping.set()
