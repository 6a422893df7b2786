"""Fixtures for tests that run real peers (SIPp, the gateway) on loopback.

tests/integration has no ``__init__.py``: pytest puts this folder on
``sys.path`` (rootdir-relative "prepend" import mode), so tests import the
plain modules ``sipp`` and ``gateway_process`` directly.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

import pytest
from mailserver import MailServer
from mosquitto import Mosquitto
from sipp import Sipp, free_media_port, sipp_available

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class SippFactory(Protocol):
    def __call__(self, scenario: str, **options: object) -> Sipp: ...


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SippFactory]:
    """Make :class:`Sipp` runners logging under the test's tmp folder.

    Every runner made here is stopped when the test ends, pass or fail.
    """
    if not sipp_available():
        pytest.skip("needs /usr/bin/sipp and root (raw sockets for pcap play)")
    made: list[Sipp] = []

    def make(scenario: str, **options: object) -> Sipp:
        runner = Sipp(scenario, tmp_path / "sipp", **options)  # type: ignore[arg-type]
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.stop()


@pytest.fixture
def media_port() -> int:
    """A free even RTP base port (SIPp's two sockets plus the test's sink)."""
    return free_media_port()


@pytest.fixture
def gateway_dir(tmp_path: Path) -> Path:
    """Where a test's gateway keeps its rules, state and log."""
    return tmp_path / "gateway"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto of the test's own, on 127.0.0.1."""
    folder = tmp_path / "broker"
    folder.mkdir()
    with Mosquitto(folder) as running:
        yield running


@pytest.fixture
def mail() -> Iterator[MailServer]:
    """A real SMTP server (aiosmtpd) on a free loopback port; start it in the test."""
    server = MailServer()
    yield server
    server.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``chroot`` take minutes: only when asked (scripts/test.sh under CI)."""
    if os.environ.get("SIP_FAILOVER_TEST_CHROOT") == "1":
        return
    skip = pytest.mark.skip(
        reason="a fresh Debian chroot takes minutes: set SIP_FAILOVER_TEST_CHROOT=1 "
        "(scripts/test.sh does when CI=true)"
    )
    for item in items:
        if "chroot" in item.keywords:
            item.add_marker(skip)
