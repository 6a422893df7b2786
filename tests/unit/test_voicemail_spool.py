"""The durable voicemail spool: layout, restarts, crash repair, failures kept."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.voicemail.record import VoicemailMeta
from gateway.voicemail.retry import RetryState
from gateway.voicemail.spool import Reservation, Spool, SpoolError

T0 = datetime(2026, 3, 14, 10, 15, 30, tzinfo=UTC)
AUDIO = b"RIFF fake wav for the spool, which never looks inside"


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def meta_for(reservation: Reservation, caller: str = "+32470000001") -> VoicemailMeta:
    return VoicemailMeta(
        id=reservation.id,
        call_id=reservation.call_id,
        caller=caller,
        called="+3225550100",
        started_at=T0,
        duration=42.4,
        route="main-line",
        box="main",
        why="main line unassigned, backups no answer",
        recipients=("office@example.com",),
    )


def record(spool: Spool, call_id: str = "call-1") -> Reservation:
    reservation = spool.reserve(call_id)
    reservation.path.write_bytes(AUDIO)
    return reservation


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spool(tmp_path: Path, clock: Clock) -> Spool:
    return Spool(tmp_path / "voicemail", clock=clock)


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_commit_leaves_audio_and_metadata_in_the_queue_only(spool: Spool) -> None:
    reservation = record(spool)
    assert reservation.path.parent == spool.root / "tmp"
    message = spool.commit(reservation, meta_for(reservation))
    assert names(spool.root / "queue") == [f"{reservation.id}.json", f"{reservation.id}.wav"]
    assert names(spool.root / "tmp") == []
    assert message.audio.read_bytes() == AUDIO
    on_disk = json.loads((spool.root / "queue" / f"{reservation.id}.json").read_text())
    assert on_disk["meta"]["caller"] == "+32470000001"
    assert on_disk["retry"]["attempts"] == 0
    assert message.retry.queued_at == T0


def test_a_restarted_spool_finds_every_pending_message_oldest_first(
    tmp_path: Path, spool: Spool, clock: Clock
) -> None:
    committed = []
    for n in range(3):
        reservation = record(spool, f"call-{n}")
        committed.append(spool.commit(reservation, meta_for(reservation)))
        clock.now += timedelta(milliseconds=1)
    again = Spool(tmp_path / "voicemail", clock=clock)
    assert [m.id for m in again.pending()] == [m.id for m in committed]
    assert again.pending()[0].meta == committed[0].meta


def test_ids_sort_by_time(spool: Spool, clock: Clock) -> None:
    ids = []
    for seconds in (0, 0.000001, 1, 3600, 86400 * 40):
        clock.now = T0 + timedelta(seconds=seconds)
        ids.append(spool.reserve("call").id)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_retry_state_survives_a_restart(tmp_path: Path, spool: Spool, clock: Clock) -> None:
    reservation = record(spool)
    message = spool.commit(reservation, meta_for(reservation))
    later = RetryState(T0, attempts=2, next_attempt_at=T0 + timedelta(minutes=3), last_error="x")
    spool.update(message, later)
    (found,) = Spool(tmp_path / "voicemail", clock=clock).pending()
    assert found.retry == later
    assert names(spool.root / "tmp") == []


def test_delivered_message_is_gone_and_not_found_after_restart(
    tmp_path: Path, spool: Spool, clock: Clock
) -> None:
    reservation = record(spool)
    spool.delivered(spool.commit(reservation, meta_for(reservation)))
    assert names(spool.root / "queue") == []
    assert Spool(tmp_path / "voicemail", clock=clock).pending() == []


def test_failed_message_is_kept_with_its_reason(tmp_path: Path, spool: Spool, clock: Clock) -> None:
    reservation = record(spool)
    message = spool.commit(reservation, meta_for(reservation))
    kept = spool.fail(message, replace(message.retry, attempts=1, last_error="550 no such user"))
    assert spool.pending() == []
    assert kept.audio.read_bytes() == AUDIO
    assert names(spool.root / "failed") == [f"{message.id}.json", f"{message.id}.wav"]
    (found,) = Spool(tmp_path / "voicemail", clock=clock).failed()
    assert found.retry.last_error == "550 no such user"


def test_discard_drops_a_recording_that_is_not_a_message(spool: Spool) -> None:
    reservation = record(spool)
    spool.discard(reservation)
    spool.discard(reservation)  # twice is harmless: a hang-up may race the recorder
    assert names(spool.root / "tmp") == []


def test_old_tmp_leftovers_are_reported_and_left_alone(spool: Spool, clock: Clock) -> None:
    stale = record(spool, "crashed-call")
    old = (T0 - timedelta(minutes=30)).timestamp()
    os.utime(stale.path, (old, old))
    fresh = record(spool, "still-recording")
    recent = (T0 - timedelta(minutes=1)).timestamp()
    os.utime(fresh.path, (recent, recent))
    assert spool.leftovers() == [stale.path]
    assert spool.pending() == []
    assert stale.path.exists()
    assert fresh.path.exists()


def test_commit_refuses_metadata_of_another_recording(spool: Spool) -> None:
    one, other = record(spool, "a"), record(spool, "b")
    with pytest.raises(ValueError, match="does not belong"):
        spool.commit(one, meta_for(other))


def test_commit_without_a_recording_raises_spool_error(spool: Spool) -> None:
    reservation = spool.reserve("call")
    with pytest.raises(SpoolError, match=reservation.id):
        spool.commit(reservation, meta_for(reservation))


def test_disk_full_raises_spool_error_and_keeps_the_recording(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    reservation = record(spool)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("gateway.voicemail.spool.os.fsync", full)
    with pytest.raises(SpoolError, match="No space left on device"):
        spool.commit(reservation, meta_for(reservation))
    assert reservation.path.read_bytes() == AUDIO
    assert not (spool.root / "queue" / f"{reservation.id}.json").exists()


def test_a_spool_that_cannot_be_created_raises_spool_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SpoolError, match="cannot create"):
        Spool(tmp_path / "file" / "voicemail")


def test_commit_cut_short_before_the_audio_moved_is_finished(spool: Spool, tmp_path: Path) -> None:
    reservation = record(spool)
    message = spool.commit(reservation, meta_for(reservation))
    message.audio.replace(reservation.path)  # as if the crash came between the two renames
    (found,) = Spool(tmp_path / "voicemail").pending()
    assert found.audio.read_bytes() == AUDIO
    assert names(spool.root / "tmp") == []


def test_failing_cut_short_is_finished(spool: Spool, tmp_path: Path) -> None:
    reservation = record(spool)
    message = spool.commit(reservation, meta_for(reservation))
    queued_json = spool.root / "queue" / f"{message.id}.json"
    copy = queued_json.read_bytes()
    spool.fail(message, message.retry)
    queued_json.write_bytes(copy)  # as if the crash came before the queue copy went
    (spool.root / "failed" / f"{message.id}.wav").replace(message.audio)
    assert Spool(tmp_path / "voicemail").pending() == []
    assert names(spool.root / "failed") == [f"{message.id}.json", f"{message.id}.wav"]


def test_audio_left_after_delivery_is_cleaned(spool: Spool) -> None:
    reservation = record(spool)
    message = spool.commit(reservation, meta_for(reservation))
    (spool.root / "queue" / f"{message.id}.json").unlink()  # delivered, crash before the wav
    assert spool.pending() == []
    assert names(spool.root / "queue") == []


def test_unreadable_metadata_is_moved_to_failed_not_deleted(spool: Spool) -> None:
    reservation = record(spool)
    message = spool.commit(reservation, meta_for(reservation))
    (spool.root / "queue" / f"{message.id}.json").write_text("{ torn")
    assert spool.pending() == []
    assert names(spool.root / "failed") == [f"{message.id}.json", f"{message.id}.wav"]


def test_metadata_must_be_aware_and_addressed() -> None:
    reservation = Reservation("id", "call", Path("x.wav"))
    good = meta_for(reservation)
    with pytest.raises(ValueError, match="aware"):
        replace(good, started_at=T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="recipients"):
        replace(good, recipients=())
    assert VoicemailMeta.from_json(json.loads(json.dumps(good.to_json()))) == good


def test_a_worker_commits_while_the_mailer_of_another_process_reads_the_spool(
    spool: Spool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pool: workers record into one spool, the control process mails from
    # it. Its mailer may look between the commit's two renames (record, then
    # audio) and finish the move itself, as after a crash.
    mailer = Spool(tmp_path / "voicemail")
    seen: list[int] = []
    write_record = Spool._write_record

    def record_then_mailer_looks(self: Spool, *args: object) -> None:
        write_record(self, *args)  # type: ignore[arg-type]
        if self is spool:
            seen.append(len(mailer.pending()))

    monkeypatch.setattr(Spool, "_write_record", record_then_mailer_looks)
    reservation = record(spool)
    message = spool.commit(reservation, meta_for(reservation))
    assert seen == [1]
    assert message.audio.read_bytes() == AUDIO
    assert names(spool.root / "tmp") == []
    (found,) = mailer.pending()
    assert found.meta.id == reservation.id


def test_two_processes_reserving_at_the_same_instant_get_different_files(
    tmp_path: Path, clock: Clock
) -> None:
    one, two = (Spool(tmp_path / "voicemail", clock=clock) for _ in range(2))
    paths = {spool.reserve("a").path for spool in (one, two) for _ in range(500)}
    assert len(paths) == 1000
