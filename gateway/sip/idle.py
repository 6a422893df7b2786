"""What the engine costs when no call is up: RTP is read only while legs are.

Measured on an idle gateway (``benchmarks/memory.py --cpu-window 60``, per
thread from /proc/PID/task), most of its CPU went to pjmedia's worker thread:
it polls the media I/O queue (RTP and RTCP sockets) with a 10 ms timeout,
calls or not (``worker_proc`` in pjmedia/endpoint.c), 0.3 % of a core. The
conference bridge's clock is not one of the costs: pjsua closes its null
sound device 1 s after the last port left (``sndAutoCloseTime``).

``medConfig.threadCnt = 0`` does not remove that thread (pjsua2 2.15 still
starts one), so ``MediaPoller`` stops it (``pjmedia_endpt_stop_threads``, the
call pjsua's shutdown makes) and polls the same I/O queue the same way, on a
thread of ours, only while a leg is up and ``POLL_LINGER_S`` after the last one
(pjlib frees a closed socket's slot only in a poll, 500 ms after it closed).
A leg is in the registry before any of its RTP can arrive (an incoming INVITE
before it is answered, an outgoing leg before its 183 or 200 is even sent),
and the poller is woken on the pump's first look at it.

The pump's tick is the other part (``transactions``): fast while pjsip has a
SIP transaction, slow otherwise (``gateway/sip/pump.py``).

Memory: a call's transactions and dialog outlive it in pjsip, each in pools
malloc'd from the C heap, until timer J or D ends them (32 s over UDP): about
55 kB a call, 17 MB after 300 calls at 10 a second. glibc keeps the pages they
free, so the heap stayed at its high mark. ``QuietHeap`` gives them back once
pjsip has nothing left in progress (``malloc_trim``): measured after 300 calls,
the heap went from 30 MB back to 12 MB (10.5 MB fresh).
"""

from __future__ import annotations

import ctypes
import functools
import threading
from typing import TYPE_CHECKING

from loguru import logger

from gateway.sip.engine_limits import engine_library

if TYPE_CHECKING:
    from collections.abc import Callable

POLL_LINGER_S = 2.0  # RTP is read this long after the last leg ended
POLL_TIMEOUT_MS = 10  # pjmedia's own worker: pj_ioqueue_poll with 10 ms
_THREAD_DESC_LONGS = 64  # PJ_THREAD_DESC_SIZE: pj_thread_desc is long[64]


class _TimeVal(ctypes.Structure):
    _fields_ = (("sec", ctypes.c_long), ("msec", ctypes.c_long))  # pj_time_val


class MediaPoller:
    """Reads pjmedia's I/O queue (RTP, RTCP) on its own thread while legs are up.

    Args:
        library: pjsua2's extension module, loaded with ctypes; None: the one installed.
    """

    def __init__(self, library: ctypes.CDLL | None = None) -> None:
        self._lib = library
        self._needed = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._last_leg_at: float | None = None

    @property
    def polling(self) -> bool:
        """Whether RTP is being read now."""
        return self._needed.is_set()

    def start(self) -> bool:
        """Take over from pjmedia's worker (after ``libInit``, before any call).

        The new thread polls once ``follow`` sees a leg.

        Returns:
            False (logged) when the engine lacks a function this needs: then
            pjmedia's own worker goes on polling.
        """
        lib = self._lib or engine_library()
        if lib is None:
            logger.warning("RTP stays polled by pjmedia's own thread: no engine library")
            return False
        try:
            _declare(lib)
        except AttributeError as missing:
            logger.warning("RTP stays polled by pjmedia's own thread: {}", missing)
            return False
        media = lib.pjsua_get_pjmedia_endpt()
        if not media:
            return False
        lib.pjmedia_endpt_stop_threads(media)  # its worker polled every 10 ms, always
        ioqueue = lib.pjmedia_endpt_get_ioqueue(media)
        self._thread = threading.Thread(target=self._run, args=(lib, ioqueue),
                                        name="media.poll", daemon=True)  # fmt: skip
        self._thread.start()
        return True

    def follow(self, legs: int, now: float) -> None:
        """Poll while a leg is up, and ``POLL_LINGER_S`` after the last one ended."""
        if legs:
            self._last_leg_at = now
            if not self._needed.is_set():
                self._needed.set()
                logger.debug("media poll on")
        elif self._needed.is_set() and (
            self._last_leg_at is None or now - self._last_leg_at >= POLL_LINGER_S
        ):
            self._needed.clear()
            logger.debug("media poll off: no leg is up")

    def stop(self) -> None:
        """End the thread (before ``libDestroy``, which destroys the I/O queue)."""
        self._stopping = True
        self._needed.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self, lib: ctypes.CDLL, ioqueue: int) -> None:
        # pjlib asserts on a thread it does not know: register this one, with
        # its descriptor alive as long as the thread polls.
        desc = (ctypes.c_long * _THREAD_DESC_LONGS)()
        handle = ctypes.c_void_p()
        lib.pj_thread_register(b"media.poll", desc, ctypes.byref(handle))
        timeout = _TimeVal(0, POLL_TIMEOUT_MS)
        while True:
            self._needed.wait()
            if self._stopping:
                return
            lib.pj_ioqueue_poll(ioqueue, ctypes.byref(timeout))  # the GIL is released


def _declare(lib: ctypes.CDLL) -> None:
    """The C signatures ``MediaPoller`` calls (AttributeError: one is missing)."""
    lib.pjsua_get_pjmedia_endpt.restype = ctypes.c_void_p
    lib.pjmedia_endpt_get_ioqueue.restype = ctypes.c_void_p
    lib.pjmedia_endpt_get_ioqueue.argtypes = [ctypes.c_void_p]
    lib.pjmedia_endpt_stop_threads.argtypes = [ctypes.c_void_p]
    lib.pj_thread_register.argtypes = [ctypes.c_char_p, ctypes.c_void_p,
                                       ctypes.POINTER(ctypes.c_void_p)]  # fmt: skip
    lib.pj_ioqueue_poll.argtypes = [ctypes.c_void_p, ctypes.POINTER(_TimeVal)]


class QuietHeap:
    """Gives the C heap's free pages back when the engine falls quiet.

    Quiet: no call, no leg and no SIP transaction (the pump's slow tick). A
    call's transactions end up to 32 s after it; only then is what they held
    free, so a trim when the last leg ends returned 2 MB of 20.

    Args:
        trim: gives the free pages back (default: ``trim_heap``).
    """

    def __init__(self, trim: Callable[[], None] | None = None) -> None:
        self._trim = trim or trim_heap
        self._busy = False

    def follow(self, busy: bool) -> bool:
        """Trim once each time the engine goes from busy to quiet; True when it did."""
        quietened = self._busy and not busy
        self._busy = busy
        if quietened:
            self._trim()
        return quietened


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        function = ctypes.CDLL(None).malloc_trim  # not in musl: then nothing is trimmed
    except (AttributeError, OSError):
        return None
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_size_t]
    return function


def transactions() -> int | None:
    """pjsip's SIP transactions in progress; None when it cannot be told.

    pjsua2 does not wrap ``pjsip_tsx_layer_get_tsx_count``; the extension
    module exports it, as it does the other pjsip functions.
    """
    count = _tsx_count()
    return int(count()) if count is not None else None


@functools.cache
def _tsx_count() -> Callable[[], int] | None:
    lib = engine_library()
    if lib is None or not hasattr(lib, "pjsip_tsx_layer_get_tsx_count"):
        return None
    function = lib.pjsip_tsx_layer_get_tsx_count
    function.restype = ctypes.c_uint
    function.argtypes = []
    return function
