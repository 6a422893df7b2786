"""When to try a voicemail mail again, and when to stop: a pure schedule.

Nothing here reads a clock or a socket. The mailer passes the time, the
server's verdict and a jitter draw in [0, 1); the schedule answers with the
next state. The shape follows an MTA queue (Postfix's
``minimal_backoff_time`` .. ``maximal_backoff_time`` and
``maximal_queue_lifetime``): the first retry comes within a minute, the delay
doubles up to a cap, and a message is given up after its lifetime. Jitter keeps
a queue that filled during an outage from hitting the server in one burst when
it comes back.

Invariants:
- A message is never given up without an attempt at or after its expiry, so
  a gateway that was off for the whole lifetime still tries once.
- The next attempt never lies beyond the expiry: the last retry is made at
  the expiry itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, timedelta


class Verdict(enum.Enum):
    """What the mail server's answer means for a voicemail."""

    ACCEPTED = "accepted"  # 2xx to DATA: the server owns the message now
    TEMPORARY = "temporary"  # 4xx, refused connection, timeout: try again later
    PERMANENT = "permanent"  # 5xx: this message will never be accepted as is
    CREDENTIALS = "credentials"  # the admin's login is wrong: alarm, keep trying


# RFC 4954 section 6: 530 authentication required, 534 mechanism too weak,
# 535 credentials invalid; RFC 4954 section 4: 538 encryption required.
_CREDENTIAL_CODES = frozenset({530, 534, 535, 538})


def classify_reply(code: int) -> Verdict:
    """Classify an SMTP reply code (RFC 5321 section 4.2.1).

    Args:
        code: the three-digit reply code.

    Returns:
        The verdict. Codes outside 2xx/4xx/5xx are treated as temporary: a
        confused server is no reason to drop a voicemail.
    """
    if 200 <= code < 300:
        return Verdict.ACCEPTED
    if code in _CREDENTIAL_CODES:
        return Verdict.CREDENTIALS
    if 500 <= code < 600:
        return Verdict.PERMANENT
    return Verdict.TEMPORARY


@dataclass(frozen=True)
class RetryState:
    """Where one voicemail stands in the mail queue (persisted with it).

    Attributes:
        queued_at: when the message entered the queue; its lifetime counts from here.
        attempts: delivery attempts made so far.
        next_attempt_at: when to try next; ``None`` means as soon as possible.
        last_error: the last failure, as told to the admin, or ``None``.
    """

    queued_at: datetime
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None

    def is_due(self, now: datetime) -> bool:
        """Whether an attempt should be made at ``now``."""
        return self.next_attempt_at is None or self.next_attempt_at <= now


class Step(enum.Enum):
    """What the mailer does with a message after an attempt."""

    DONE = "done"  # accepted: remove it from the queue
    RETRY = "retry"  # keep it queued until ``next_attempt_at``
    GIVE_UP = "give_up"  # move it to failed/, keep the file


@dataclass(frozen=True)
class Decision:
    """The schedule's answer to one attempt.

    Attributes:
        step: what to do with the message.
        state: the state to persist (or to record in failed/).
        alarm: whether the admin must be told (a ``voicemail.failed`` event).
        permanent: whether the failure is final (the event's ``permanent``).
    """

    step: Step
    state: RetryState
    alarm: bool
    permanent: bool


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter and a lifetime.

    Attributes:
        first: the delay before the first retry (at most; jitter shortens it).
        cap: the longest delay between two attempts.
        lifetime: how long after queueing a message is given up.
    """

    first: timedelta = timedelta(minutes=1)
    cap: timedelta = timedelta(hours=1)
    lifetime: timedelta = timedelta(days=5)

    def __post_init__(self) -> None:
        if self.first <= timedelta(0) or self.cap < self.first:
            raise ValueError("need 0 < first <= cap")
        if self.lifetime <= timedelta(0):
            raise ValueError("lifetime must be positive")

    def delay(self, attempts: int, jitter: float) -> timedelta:
        """Delay after the ``attempts``-th failed attempt (1-based).

        Args:
            attempts: failed attempts so far, at least 1.
            jitter: a draw in [0, 1); the delay is between half and all of
                the nominal one, so the cap and "within a minute" both hold.

        Returns:
            ``first * 2**(attempts-1)``, capped, scaled into [1/2, 1].
        """
        exponent = min(max(attempts, 1) - 1, 32)  # 2**32 minutes is past any cap
        nominal = min(self.cap, self.first * (1 << exponent))
        return nominal * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))

    def expires_at(self, state: RetryState) -> datetime:
        """When ``state``'s message is given up."""
        return state.queued_at + self.lifetime

    def decide(
        self, state: RetryState, verdict: Verdict, error: str | None, now: datetime, jitter: float
    ) -> Decision:
        """Decide what follows an attempt made at ``now``.

        Args:
            state: the message's state before the attempt.
            verdict: how the server answered.
            error: the failure as text (ignored when accepted).
            now: when the attempt ended (aware).
            jitter: a draw in [0, 1).

        Returns:
            The next step, the state to persist, and whether to alarm.
        """
        tried = replace(state, attempts=state.attempts + 1, last_error=error)
        if verdict is Verdict.ACCEPTED:
            return Decision(
                Step.DONE, replace(tried, last_error=None), alarm=False, permanent=False
            )
        if verdict is Verdict.PERMANENT:
            return Decision(Step.GIVE_UP, tried, alarm=True, permanent=True)
        expiry = self.expires_at(state)
        if now >= expiry:
            text = f"gave up after {_span(self.lifetime)}: {error}"
            return Decision(
                Step.GIVE_UP, replace(tried, last_error=text), alarm=True, permanent=True
            )
        later = min(now + self.delay(tried.attempts, jitter), expiry)
        # Credentials only the admin can fix: tell them each time they are still
        # wrong. A passing outage is told once, and again when its cause changes.
        alarm = verdict is Verdict.CREDENTIALS or error != state.last_error
        return Decision(Step.RETRY, replace(tried, next_attempt_at=later), alarm, permanent=False)


def _span(delta: timedelta) -> str:
    """``5 days``, ``12 h``, ``30 min`` — for messages to the admin."""
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day" if days == 1 else f"{days} days"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"
