"""The durable voicemail spool: a recording is never lost once it is committed.

Layout under the root (``<state_dir>/voicemail``)::

    tmp/<id>.wav          being recorded (a reservation), or a commit cut short
    tmp/<id>.json.part    metadata being written
    queue/<id>.json       a message waiting for the mail server, with its retry state
    queue/<id>.wav        its audio
    failed/<id>.json      given up (refused, or past its lifetime): kept, never deleted
    failed/<id>.wav       (alone: a recording that could not be queued, see the log)

Where a message's JSON file is, the message is: ``queue/`` or ``failed/``. The
audio follows its JSON; every move writes the JSON first, so a crash between
two renames leaves a state ``pending()`` completes on the next start (audio
still in tmp/ after its JSON reached queue/, a JSON in both queue/ and
failed/, a queue/ audio file whose JSON was removed after delivery).

Every write is fsync'd, then renamed, then its directory fsync'd (rename is
atomic on POSIX; the directory fsync makes the rename itself durable).
``commit()`` returns only after all of that: only then may anyone announce the
message. Every OS error becomes a ``SpoolError``: the caller must report it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from loguru import logger

from gateway.voicemail.record import (
    SpooledMessage,
    VoicemailMeta,
    now_utc,
    read_record,
    record_json,
)
from gateway.voicemail.retry import RetryState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

class SpoolError(Exception):
    """The spool could not be read or written (disk full, permissions, I/O error).

    A voicemail may be at stake: whoever catches this must tell the admin.
    """


@dataclass(frozen=True)
class Reservation:
    """A place to record into, not yet a message.

    Attributes:
        id: the id the message will have.
        call_id: the call being recorded.
        path: where the recorder writes the WAV.
    """

    id: str
    call_id: str
    path: Path


class Spool:
    """Voicemail files on disk: reserve, commit, list, deliver, fail.

    Safe to call from the event loop and from worker threads at once (one lock).
    """

    def __init__(
        self,
        root: Path,
        *,
        clock: Callable[[], datetime] = now_utc,
        stale_after: timedelta = timedelta(minutes=10),
    ) -> None:
        """Open (and create) the spool under ``root``.

        Raises:
            SpoolError: the folders cannot be created.
        """
        self.root = root
        self._tmp, self._queue, self._failed = root / "tmp", root / "queue", root / "failed"
        self._clock = clock
        self._stale_after = stale_after
        self._lock = threading.Lock()
        self._reported: set[Path] = set()
        with _errors(f"cannot create the voicemail spool in {root}"):
            for folder in (self._tmp, self._queue, self._failed):
                folder.mkdir(parents=True, exist_ok=True)

    def ready(self) -> bool:
        """Whether a message could be recorded now: the folder for recordings is usable."""
        return self._tmp.is_dir() and os.access(self._tmp, os.W_OK | os.X_OK)

    def reserve(self, call_id: str) -> Reservation:
        """A new id and the temporary path to record the call into."""
        now = self._clock().astimezone(UTC)
        # 48 random bits: the processes of a pool record into one spool.
        spool_id = f"{now:%Y%m%dT%H%M%S}-{now.microsecond:06d}-{secrets.token_hex(6)}"
        return Reservation(spool_id, call_id, self._tmp / f"{spool_id}.wav")

    def commit(self, reservation: Reservation, meta: VoicemailMeta) -> SpooledMessage:
        """Make a finished recording durable and queue it for mail.

        Only after this returns may the voicemail be announced.

        Raises:
            SpoolError: the audio is missing or could not be made durable.
            ValueError: ``meta`` is not about this reservation.
        """
        if meta.id != reservation.id:
            raise ValueError(f"metadata {meta.id} does not belong to {reservation.id}")
        retry = RetryState(queued_at=self._clock())
        with self._lock, _errors(f"cannot commit voicemail {meta.id} in {self.root}"):
            _fsync_file(reservation.path)
            self._write_record(self._queue, meta, retry)
            _move_audio(reservation.path, self._queue / f"{meta.id}.wav")
            _fsync_dir(self._queue)
            _fsync_dir(self._tmp)
        logger.info("voicemail {} from {} queued for {}", meta.id, meta.caller, meta.recipients)
        return SpooledMessage(meta, retry, self._queue / f"{meta.id}.wav")

    def commit_notice(self, meta: VoicemailMeta) -> SpooledMessage:
        """Queue a mail that has no recording (an alert) with the same guarantees.

        Only after this returns may the alert be announced as queued.

        Raises:
            SpoolError: it could not be made durable.
        """
        retry = RetryState(queued_at=self._clock())
        with self._lock, _errors(f"cannot queue notice {meta.id} in {self.root}"):
            self._write_record(self._queue, meta, retry)
        logger.info("{} {} queued for {}", meta.kind, meta.id, meta.recipients)
        return SpooledMessage(meta, retry, self._queue / f"{meta.id}.wav")

    def keep(self, reservation: Reservation) -> Path:
        """Keep a recording that cannot become a queued message in failed/, durably.

        Raises:
            SpoolError: it could not be moved (it is still in tmp/).
        """
        kept = self._failed / reservation.path.name
        with self._lock, _errors(f"cannot keep {reservation.path} in {self._failed}"):
            _fsync_file(reservation.path)
            reservation.path.replace(kept)
            _fsync_dir(self._failed)
            _fsync_dir(self._tmp)
        return kept

    def discard(self, reservation: Reservation) -> None:
        """Drop a recording that will not be kept (e.g. too short to be a message)."""
        with self._lock, _errors(f"cannot remove {reservation.path}"):
            reservation.path.unlink(missing_ok=True)

    def pending(self) -> list[SpooledMessage]:
        """Messages waiting for the mail server, oldest first.

        Completes moves a crash cut short, and reports (in the log, once)
        recordings left in tmp/ for longer than ``stale_after``.

        Raises:
            SpoolError: the queue cannot be read or repaired.
        """
        with self._lock, _errors(f"cannot read the voicemail queue in {self.root}"):
            self._repair()
            self._report_leftovers()
            found = [self._read(path) for path in sorted(self._queue.glob("*.json"))]
        return [message for message in found if message is not None]

    def failed(self) -> list[SpooledMessage]:
        """Messages given up on, oldest first (for status and manual resend)."""
        with self._lock, _errors(f"cannot read {self._failed}"):
            found = [self._read(path) for path in sorted(self._failed.glob("*.json"))]
        return [message for message in found if message is not None]

    def update(self, message: SpooledMessage, retry: RetryState) -> SpooledMessage:
        """Persist a queued message's new retry state (atomic rewrite).

        Raises:
            SpoolError: the state could not be written.
        """
        with self._lock, _errors(f"cannot save the retry state of voicemail {message.id}"):
            self._write_record(self._queue, message.meta, retry)
        return SpooledMessage(message.meta, retry, message.audio)

    def delivered(self, message: SpooledMessage) -> None:
        """Remove a message the mail server accepted (2xx to DATA), and only then.

        Raises:
            SpoolError: the files could not be removed (the message may be sent again).
        """
        with self._lock, _errors(f"cannot remove delivered voicemail {message.id}"):
            (self._queue / f"{message.id}.json").unlink(missing_ok=True)
            (self._queue / f"{message.id}.wav").unlink(missing_ok=True)
            _fsync_dir(self._queue)

    def fail(self, message: SpooledMessage, retry: RetryState) -> SpooledMessage:
        """Move a message given up on to failed/, with its final state. Kept, never deleted.

        Raises:
            SpoolError: the move could not be made durable.
        """
        with self._lock, _errors(f"cannot move voicemail {message.id} to {self._failed}"):
            self._write_record(self._failed, message.meta, retry)
            self._finish_failing(message.id)
        logger.error("voicemail {} kept in {}: {}", message.id, self._failed, retry.last_error)
        return SpooledMessage(message.meta, retry, self._failed / f"{message.id}.wav")

    def leftovers(self) -> list[Path]:
        """Files in tmp/ older than ``stale_after``: recordings whose call never finished."""
        limit = (self._clock() - self._stale_after).timestamp()
        with _errors(f"cannot read {self._tmp}"):
            return sorted(path for path in self._tmp.iterdir() if path.stat().st_mtime < limit)

    def _write_record(self, folder: Path, meta: VoicemailMeta, retry: RetryState) -> None:
        record = record_json(meta, retry)
        scratch = self._tmp / f"{meta.id}.json.part"
        with scratch.open("w", encoding="utf-8") as file:
            json.dump(record, file, indent=1, ensure_ascii=False)
            file.flush()
            os.fsync(file.fileno())
        scratch.replace(folder / f"{meta.id}.json")
        _fsync_dir(folder)

    def _finish_failing(self, spool_id: str) -> None:
        (self._queue / f"{spool_id}.json").unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self._queue / f"{spool_id}.wav").replace(self._failed / f"{spool_id}.wav")
        _fsync_dir(self._failed)
        _fsync_dir(self._queue)

    def _repair(self) -> None:
        """Complete the moves a crash cut short (see the module docstring)."""
        for record in self._queue.glob("*.json"):
            spool_id = record.stem
            audio, recording = self._queue / f"{spool_id}.wav", self._tmp / f"{spool_id}.wav"
            if (self._failed / record.name).exists():
                self._finish_failing(spool_id)
            elif not audio.exists() and recording.exists():
                recording.replace(audio)
                _fsync_dir(self._queue)
                logger.warning("voicemail {}: finished a commit cut short", spool_id)
        for audio in self._queue.glob("*.wav"):
            if (self._failed / f"{audio.stem}.json").exists():
                self._finish_failing(audio.stem)
            elif not (self._queue / f"{audio.stem}.json").exists():
                # Its JSON goes first on delivery: this one was accepted by the server.
                audio.unlink()
                logger.info("voicemail {}: removed audio left after delivery", audio.stem)

    def _report_leftovers(self) -> None:
        for path in self.leftovers():
            if path not in self._reported:
                self._reported.add(path)
                logger.warning("voicemail spool: {} was never committed (call cut short?)", path)

    def _read(self, record: Path) -> SpooledMessage | None:
        """One message, or ``None`` (logged, and kept in failed/) when unreadable."""
        try:
            meta, retry = read_record(record.read_text(encoding="utf-8"))
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("voicemail spool: {} is unreadable ({}), moved to failed/", record, exc)
            if record.parent == self._queue:
                record.replace(self._failed / record.name)
                self._finish_failing(record.stem)
            return None
        audio = record.with_suffix(".wav")
        if meta.kind == "voicemail" and not audio.exists():  # a notice has no audio by design
            logger.error("voicemail {}: audio {} is missing; mailing the details", meta.id, audio)
        return SpooledMessage(meta, retry, audio)


@contextlib.contextmanager
def _errors(action: str) -> Iterator[None]:
    """Turn an OS error into a ``SpoolError`` that says what could not be done."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        raise SpoolError(f"{action}: {reason}{where}") from exc


def _move_audio(recording: Path, queued: Path) -> None:
    """The commit's second rename. In a pool, another process's mailer may have
    seen the record first and finished the move itself (``_repair``): then the
    audio is already where it belongs."""
    try:
        recording.replace(queued)
    except FileNotFoundError:
        if not queued.exists():
            raise


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
