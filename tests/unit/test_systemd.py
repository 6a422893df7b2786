"""sd_notify: what systemd receives on its notify socket."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from gateway.service import systemd

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_ready_reaches_the_notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert systemd.notify("READY=1")
        assert listener.recv(64) == b"READY=1"


def test_outside_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not systemd.notify("READY=1")


def test_a_vanished_socket_is_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert not systemd.notify("WATCHDOG=1")


def test_watchdog_is_fed_at_half_its_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert systemd.watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert systemd.watchdog_interval() is None


def test_the_watchdog_hears_from_the_loop_every_half_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        watchdog = systemd.Watchdog(now=100.0)
        fed = [now for now in (100.0, 114.9, 115.0, 120.0, 129.9, 130.0) if watchdog.feed(now)]
        assert fed == [115.0, 130.0]
        assert [listener.recv(64), listener.recv(64)] == [b"WATCHDOG=1", b"WATCHDOG=1"]


def test_outside_systemd_the_watchdog_is_never_fed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    watchdog = systemd.Watchdog(now=0.0)
    assert not any(watchdog.feed(now) for now in (0.0, 15.0, 3600.0))
