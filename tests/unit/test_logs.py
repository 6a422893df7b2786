"""The log's three formats: text for a terminal, journal priorities, JSON lines."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest
from loguru import logger

from gateway.service import logs

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "stderr"
    yield path
    logger.remove()


def emit_all() -> None:
    logger.debug("probe sent")
    logger.info("ready listen=127.0.0.1:5060")
    logger.warning("refused source 192.0.2.7: not the trunk (1 INVITEs)")
    try:
        int("boom")
    except ValueError:
        logger.exception("error handling a signal")


def written(path: Path, chosen: logs.LogFormat, environ: dict[str, str] | None = None) -> str:
    with path.open("w", encoding="utf-8") as stream:
        logs.configure("DEBUG", chosen, stream, environ or {})
        emit_all()
    return path.read_text(encoding="utf-8")


def test_text_has_time_and_level(log_file: Path) -> None:
    lines = written(log_file, "text").splitlines()
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} INFO    ready ", lines[1])


def test_journal_lines_carry_the_syslog_priority_and_no_time(log_file: Path) -> None:
    lines = written(log_file, "journal").splitlines()
    assert lines[:3] == [
        "<7>probe sent",
        "<6>ready listen=127.0.0.1:5060",
        "<4>refused source 192.0.2.7: not the trunk (1 INVITEs)",
    ]
    traceback = lines[3:]
    assert traceback[0] == "<3>error handling a signal"
    assert len(traceback) > 2, "the traceback is missing"
    assert all(line.startswith("<3>") for line in traceback), "a traceback line lost its priority"
    assert not re.search(r"\d\d:\d\d:\d\d", "\n".join(lines[:3]))


def test_auto_is_journal_only_when_stderr_is_the_journal_stream(log_file: Path) -> None:
    log_file.touch()
    info = log_file.stat()
    assert written(log_file, "auto", {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}).startswith(
        "<7>"
    )
    other = f"{info.st_dev}:{info.st_ino + 1}"
    assert re.match(r"^\d{4}-", written(log_file, "auto", {"JOURNAL_STREAM": other}))
    assert re.match(r"^\d{4}-", written(log_file, "auto", {}))


def test_json_is_one_object_per_line(log_file: Path) -> None:
    with log_file.open("w", encoding="utf-8") as stream:
        logs.configure("DEBUG", "json", stream, {})
        emit_all()
        logger.bind(call_id="c1").info("call c1 ended")
    entries = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [e["level"] for e in entries] == ["DEBUG", "INFO", "WARNING", "ERROR", "INFO"]
    assert entries[1]["message"] == "ready listen=127.0.0.1:5060"
    assert set(entries[1]) == {"time", "level", "message", "extra"}
    assert "ValueError: invalid literal" in entries[3]["exception"]
    assert entries[4]["extra"] == {"call_id": "c1"}
    assert entries[0]["time"] < entries[4]["time"]


def test_priorities_follow_sd_daemon() -> None:
    assert [logs.journal_priority(level) for level in
            ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")] == [7, 6, 4, 3, 2]  # fmt: skip
