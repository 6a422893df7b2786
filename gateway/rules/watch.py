"""Hot reload: watch the rules file and ask for a reload when its content changes.

The folder is watched, not the file: editors save by writing a new file and
renaming it over the old one (vim, VS Code), and Kubernetes swaps a ConfigMap
by re-pointing a symlink; a watch on the file itself would follow the old
inode and miss every save after the first. A change in the folder, once
quiet for ``debounce_ms``, leads to a look at the file's content: only a new
content (its SHA-256 differs from the last one seen) calls ``on_change``,
so touching the file, or saving it unchanged, reloads nothing.

``on_change`` (``Gateway.reload_rules``) does the checking: a broken file is
reported and the running rules stay.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from loguru import logger
from watchfiles import awatch

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

DEBOUNCE_MS = 300  # an editor's write + rename arrive as one batch
# How often watchfiles' thread wakes to look at what inotify gathered (and at its
# stop flag). Its default, 50 ms, was a third of an idle gateway's CPU; a save
# is now seen up to half a second later.
STEP_MS = 500


def content_digest(path: Path) -> str | None:
    """The SHA-256 of the file's bytes; None when it cannot be read (being replaced)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


async def watch_rules(
    path: Path, on_change: Callable[[], None], *, debounce_ms: int = DEBOUNCE_MS
) -> None:
    """Call ``on_change`` each time the rules file's content changes, until cancelled.

    Args:
        path: the rules file.
        on_change: called on the event loop after the content changed.
        debounce_ms: how long the folder must be quiet before the file is read.

    A folder that cannot be watched is logged and the watch ends (SIGHUP and
    ``cmd/reload`` still work); an error in ``on_change`` is logged and the
    watch goes on.
    """
    folder = path.parent  # "." for a bare file name
    last = content_digest(path)
    try:
        async for _changes in awatch(folder, debounce=debounce_ms, step=STEP_MS, recursive=False):
            digest = content_digest(path)
            if digest == last:
                continue
            last = digest
            logger.info("rules file {} changed on disk: reloading", path)
            _call(on_change)
    except OSError as error:  # the folder vanished, or inotify limits are reached
        logger.error("rules file {} no longer watched ({}); use SIGHUP to reload", path, error)


def _call(on_change: Callable[[], None]) -> None:
    try:
        on_change()
    except Exception:  # noqa: BLE001 - a failed reload must not end the watch
        logger.exception("rules reload failed")
