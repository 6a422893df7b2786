"""Where a stuck or dying gateway was: every thread's Python stack, in the log.

A gateway whose loop stops (a deadlock between pjsua's media thread and
ours, a blocking call) is restarted by systemd's watchdog with SIGABRT; a
pjlib assert aborts the process with the same signal. Either way the admin
is left with "killed", unless the process says where each thread was.
``faulthandler`` writes that straight to stderr (the journal) from the
signal handler, with no help from the loop, so it works when the loop is
stuck. SIGUSR1 asks a running gateway for the same dump and lets it run on.
"""

from __future__ import annotations

import faulthandler
import signal
import sys

DUMP_SIGNAL = signal.SIGUSR1


def enable_stack_dumps() -> bool:
    """Dump every thread's stack on a fatal signal (SIGABRT, SIGSEGV …) and on SIGUSR1.

    The dump goes to the process's own standard error (a descriptor, as a
    signal handler needs), even where ``sys.stderr`` was replaced by an
    object without one. False, and nothing set, when there is none.
    """
    stream = sys.__stderr__
    try:
        if stream is None or stream.fileno() < 0:
            return False
    except (OSError, ValueError):  # closed, or not a file
        return False
    faulthandler.enable(file=stream, all_threads=True)
    faulthandler.register(DUMP_SIGNAL, file=stream, all_threads=True)
    return True
