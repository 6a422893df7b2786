"""Read the installed SIP engine's limits (pjsua2 is imported here lazily).

Call slots: pjsua keeps ``min(maxCalls, PJSUA_MAX_CALLS)`` and pjsua2's
``UaConfig()`` defaults ``maxCalls`` to ``PJSUA_MAX_CALLS`` itself, so it tells
the compiled limit without an endpoint. Once the library is initialised,
``pjsua_call_get_max_count()`` (not wrapped by pjsua2, reached through ctypes in
the same extension module) says what pjsua really kept. The I/O queue's name
(``pj_ioqueue_name``) and the TLS library (``OpenSSL_version``/``SSLeay_version``)
come the same way. pjlib does not export ``PJ_IOQUEUE_MAX_HANDLES``: it is
inferred from the queue: select() is the wheel's 64; an epoll queue is a build
of its own (1024 with deploy/pjsua2/config_site.h) and is reported as unknown.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import replace
from typing import TYPE_CHECKING

from gateway.sip.limits import WHEEL, EngineLimits

if TYPE_CHECKING:
    import pjsua2 as pj  # imported where used: check/explain run without the engine


def planned_limits() -> EngineLimits:
    """The limits to plan with before the engine starts (no endpoint needed).

    Returns:
        The installed pjsua2's call slots, or the wheel's where pjsua2 is not
        installed (``check`` on a machine without the engine).
    """
    try:
        import pjsua2  # noqa: PLC0415 - the engine is optional for check/explain
    except ImportError:
        return WHEEL
    return replace(WHEEL, call_slots=int(pjsua2.UaConfig().maxCalls), io_queue="unknown",
                   io_handles=None)  # fmt: skip


def running_limits(endpoint: pj.Endpoint) -> EngineLimits:
    """The limits of an initialised endpoint (after ``libInit``)."""
    lib = engine_library()
    slots = _call(lib, "pjsua_call_get_max_count", ctypes.c_uint)
    queue = _call(lib, "pj_ioqueue_name", ctypes.c_char_p)
    # "select", or "epoll[0x3]" (the epoll flags it detected).
    name = queue.decode().split("[", 1)[0] if isinstance(queue, bytes) else "unknown"
    return EngineLimits(
        call_slots=int(slots) if slots is not None else planned_limits().call_slots,
        io_queue=name,
        io_handles=_handles(name),
        tls=_tls_version(lib),
        tls_ciphers=_cipher_count(endpoint),
    )


@functools.cache
def engine_library() -> ctypes.CDLL | None:
    """pjsua2's extension module, the C library itself, for what pjsua2 does not wrap
    (None: no engine installed)."""
    try:
        import pjsua2  # noqa: PLC0415

        return ctypes.CDLL(pjsua2._pjsua2.__file__)  # noqa: SLF001 - the C library itself
    except (ImportError, AttributeError, OSError):
        return None


def _call(
    lib: ctypes.CDLL | None, name: str, restype: type[ctypes.c_uint | ctypes.c_char_p]
) -> int | bytes | None:
    """Call a C function of no arguments, if the library exports it."""
    function = getattr(lib, name, None) if lib is not None else None
    if function is None:
        return None
    function.restype = restype
    function.argtypes = []
    result: int | bytes | None = function()  # ctypes gives c_uint as int, c_char_p as bytes
    return result


def _handles(queue: str) -> int | None:
    # pjlib does not export PJ_IOQUEUE_MAX_HANDLES. A select() queue is the
    # wheel's (pjproject's default, 64); an epoll queue is a build of its own,
    # whose number only its config_site.h knows (1024 in ours).
    return WHEEL.io_handles if queue == "select" else None


def _tls_version(lib: ctypes.CDLL | None) -> str | None:
    for name in ("OpenSSL_version", "SSLeay_version"):
        function = getattr(lib, name, None) if lib is not None else None
        if function is not None:
            function.restype = ctypes.c_char_p
            function.argtypes = [ctypes.c_int]
            value = function(0)
            return value.decode() if isinstance(value, bytes) else None
    return None


def _cipher_count(endpoint: pj.Endpoint) -> int | None:
    try:
        return len(endpoint.utilSslGetAvailableCiphers())
    except Exception:  # noqa: BLE001 - pjsua2 raises its own Error when TLS is absent
        return 0
