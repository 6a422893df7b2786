"""`sip-failover status` and `calls --since`: what they conclude, with time passed in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from gateway.cli.state import parse_since
from gateway.status.statusfile import STALE_AFTER, NotRunningError, read_status

if TYPE_CHECKING:
    from pathlib import Path

NOW = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)


def write(path: Path, **document: object) -> Path:
    base = {"state": "running", "pid": 4242, "updated_at": NOW.isoformat()}
    path.write_text(json.dumps({**base, **document}), encoding="utf-8")
    return path


def alive(pid: int) -> bool:
    return pid == 4242


def test_a_fresh_file_of_a_live_pid_is_a_running_gateway(tmp_path: Path) -> None:
    doc = read_status(write(tmp_path / "status.json"), NOW, alive)
    assert doc["pid"] == 4242


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ({"state": "stopped", "stopped_at": "2026-03-14T09:59:00+00:00"}, "stopped at"),
        ({"pid": 9999}, "pid 9999 is gone"),
        ({"updated_at": (NOW - timedelta(seconds=STALE_AFTER + 1)).isoformat()}, "has not updated"),
    ],
)
def test_a_gateway_that_is_not_serving_is_reported_as_such(
    tmp_path: Path, document: dict[str, object], says: str
) -> None:
    with pytest.raises(NotRunningError, match=says):
        read_status(write(tmp_path / "status.json", **document), NOW, alive)


def test_no_file_means_not_running(tmp_path: Path) -> None:
    with pytest.raises(NotRunningError, match="not running"):
        read_status(tmp_path / "status.json", NOW, alive)


def test_a_torn_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    path.write_text('{"state": "run', encoding="utf-8")
    with pytest.raises(NotRunningError, match="cannot read"):
        read_status(path, NOW, alive)


@pytest.mark.parametrize(
    ("text", "ago"),
    [("30m", timedelta(minutes=30)), ("24h", timedelta(hours=24)), ("7d", timedelta(days=7)),
     ("2w", timedelta(weeks=2)), (" 12H ", timedelta(hours=12))],
)  # fmt: skip
def test_since_relative(text: str, ago: timedelta) -> None:
    assert parse_since(text, NOW) == NOW - ago


def test_since_iso_with_and_without_zone() -> None:
    assert parse_since("2026-03-01T08:00:00+01:00", NOW) == datetime(2026, 3, 1, 7, tzinfo=UTC)
    local = parse_since("2026-03-01T08:00:00", NOW)
    assert local.tzinfo is not None  # the machine's local time, made explicit


@pytest.mark.parametrize("text", ["yesterday", "5y", "", "-3d"])
def test_since_nonsense_is_refused_with_the_forms_it_takes(text: str) -> None:
    with pytest.raises(ValueError, match="24h, 7d, 30m, 2w or an ISO time"):
        parse_since(text, NOW)
