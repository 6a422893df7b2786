"""A tapped leg's frames are read out of pjsua2 in one copy, never byte by byte."""

from __future__ import annotations

import pjsua2 as pj
import pytest

from gateway.sip import tap


def _frame(data: bytes) -> pj.MediaFrame:
    frame = pj.MediaFrame()
    frame.buf = pj.ByteVector(data)
    frame.size = len(data)
    return frame  # frame.buf points into it: it must outlive the read


def _read(frame: pj.MediaFrame) -> bytes:
    return tap.frame_bytes(frame.buf)


@pytest.mark.parametrize("size", [2, 160, 320, 640])
def test_a_frame_reads_as_its_bytes(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tap, "_direct_read", None)
    data = bytes((n * 7 + 3) % 256 for n in range(size))
    assert _read(_frame(data)) == data
    assert _read(_frame(data[::-1])) == data[::-1]  # and the next one, read directly


def test_an_empty_frame_reads_as_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tap, "_direct_read", None)
    assert _read(_frame(b"")) == b""


def test_after_the_first_check_frames_are_not_iterated(monkeypatch: pytest.MonkeyPatch) -> None:
    # SWIG's iteration took 0.15-0.3 ms a frame, holding the GIL the loop's SIP work needs.
    monkeypatch.setattr(tap, "_direct_read", None)
    first = bytes(n % 256 for n in range(100, 420))
    assert _read(_frame(first)) == first

    def no_iteration(self: pj.ByteVector) -> None:
        raise AssertionError("iterated byte by byte")

    monkeypatch.setattr(pj.ByteVector, "__iter__", no_iteration)
    monkeypatch.setattr(pj.ByteVector, "__getitem__", no_iteration)
    second = bytes(n % 256 for n in range(7, 327))
    assert _read(_frame(second)) == second
