"""The gateway's log, for people and for machines.

Three formats of the same records, all on stderr:

- ``text``: a timestamp, the level and the message, for a terminal;
- ``journal``: under systemd, each line starts with its syslog priority
  (``<3>`` error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug; sd-daemon(3))
  and carries no timestamp: journald adds the time and keeps the priority,
  so ``journalctl -p warning`` shows only what needs a look;
- ``json``: one JSON object per line (time, level, message, extra) for log
  shippers.

``auto`` (the default) picks ``journal`` when stderr is the stream systemd
named in ``JOURNAL_STREAM`` (its ``device:inode``), else ``text``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Literal, TextIO

from loguru import logger

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from loguru import Message

LogFormat = Literal["auto", "text", "json", "journal"]
TEXT_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSSSSS} {level: <7} {message}"

# Loguru levels to syslog priorities (sd-daemon(3), RFC 5424 6.2.1).
_PRIORITY = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "SUCCESS": 5, "WARNING": 4, "ERROR": 3}
_CRITICAL = 2


def journal_priority(level: str) -> int:
    """The syslog priority journald should record for a loguru level."""
    return _PRIORITY.get(level, _CRITICAL)


def under_journal(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when ``stream`` is the journal stream systemd connected (JOURNAL_STREAM)."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not device.isdigit() or not inode.isdigit():
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def resolve_format(
    chosen: LogFormat, stream: TextIO, environ: Mapping[str, str]
) -> Literal["text", "json", "journal"]:
    """The format ``auto`` stands for here; any other choice as it is."""
    if chosen != "auto":
        return chosen
    return "journal" if under_journal(stream, environ) else "text"


def configure(
    level: str,
    chosen: LogFormat = "auto",
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Send the log to ``stream`` (stderr) in the chosen format; replaces other sinks."""
    out = stream if stream is not None else sys.stderr
    fmt = resolve_format(chosen, out, os.environ if environ is None else environ)
    logger.remove()
    if fmt == "text":
        logger.add(out, level=level.upper(), format=TEXT_FORMAT)
    elif fmt == "journal":
        logger.add(_journal_sink(out), level=level.upper(), format="{message}")
    else:
        logger.add(_json_sink(out), level=level.upper(), format="{message}")


def _journal_sink(out: TextIO) -> Callable[[Message], None]:
    def write(message: Message) -> None:
        # Every line gets the priority: a traceback's lines stay errors in journald.
        prefix = f"<{journal_priority(message.record['level'].name)}>"
        text = str(message).rstrip("\n")
        out.write("".join(f"{prefix}{line}\n" for line in text.split("\n")))
        out.flush()

    return write


def _json_sink(out: TextIO) -> Callable[[Message], None]:
    def write(message: Message) -> None:
        record = message.record
        entry: dict[str, object] = {
            "time": record["time"].isoformat(timespec="microseconds"),
            "level": record["level"].name,
            "message": record["message"],
            "extra": record["extra"],
        }
        if record["exception"] is not None:
            entry["exception"] = str(message).rstrip("\n").partition("\n")[2]
        out.write(json.dumps(entry, default=str, ensure_ascii=False) + "\n")
        out.flush()

    return write
