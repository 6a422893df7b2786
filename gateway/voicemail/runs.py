"""The answering machine's runs for the switchboard: one task per call in voicemail.

The switchboard starts a run when a session says ``StartVoicemail``; whatever
happens to the task (a message stored, a hang-up, an error, a box that cannot
take one), the session hears exactly one ``VoicemailEnded`` for the call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from gateway.core.events import VoicemailEnded

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from gateway.core.rules import VoicemailBox
    from gateway.voicemail.machine import AnsweringMachine, VoicemailCall


class VoicemailRuns:
    """Recordings in progress; each one's end goes to ``ended(call_id, event)``.

    Args:
        loop: The running loop (tasks and deferred calls).
        machine: The answering machine; None: no box answers.
        ended: Takes each run's ``VoicemailEnded``, on the loop, never inside ``start``.
        hang_up: Ends the caller's side when a run failed with an error.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        machine: AnsweringMachine | None,
        ended: Callable[[str, VoicemailEnded], None],
        hang_up: Callable[[str], None],
    ) -> None:
        self.loop = loop
        self.machine = machine
        self._ended = ended
        self._hang_up = hang_up
        self._tasks: set[asyncio.Task[VoicemailEnded]] = set()

    def start(self, taking: VoicemailCall, box: VoicemailBox | None) -> None:
        """Take ``taking`` into ``box`` (None: the rules name no such box)."""
        call_id = taking.call_id
        if self.machine is None or box is None:
            logger.error("call {}: voicemail box {} is not available", call_id, taking.box)
            unavailable = VoicemailEnded("unavailable", stored=False)
            self.loop.call_soon(self._ended, call_id, unavailable)
            return
        task = self.loop.create_task(self.machine.take(taking, box), name=f"voicemail.{call_id}")
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._task_done(call_id, t))

    def _task_done(self, call_id: str, task: asyncio.Task[VoicemailEnded]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.opt(exception=error).error("call {}: voicemail failed", call_id)
            self._hang_up(call_id)
        ended = VoicemailEnded("error", stored=False) if error else task.result()
        self._ended(call_id, ended)
