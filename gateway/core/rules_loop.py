"""The rules' ``loop_test`` section: call the public number, expect it back."""

from __future__ import annotations

from pydantic import Field

from gateway.core.loop_test import LoopConfig
from gateway.core.rules_mail import Strict

# pydantic reads these annotations at run time: the imports must stay outside TYPE_CHECKING.
from gateway.core.rules_values import Dialled, Duration, PublicNumber, ScheduleRef  # noqa: TC001


class LoopTestRule(Strict):
    """An inbound loop test (docs/health.md "Inbound loop test")."""

    call: PublicNumber = Field(description="the public number to call through the trunk")
    from_: Dialled | None = Field(
        default=None,
        alias="from",
        description="the caller number the test's call presents (a test number or a second "
        "line of yours); absent: the public number itself, which trunks often refuse as a loop",
    )
    every: Duration = Field(default=6 * 3600.0, description="time between tests")
    only: ScheduleRef | None = Field(default=None, description="test only while it is open")
    within: Duration = Field(
        default=10.0,
        le=60.0,
        description="the call must come back within this (8-15 s is usual); up to twice "
        "this it is late, after that it never came",
    )

    def config(self) -> LoopConfig:
        """The pure core's view: numbers in E.164, times in seconds."""
        return LoopConfig(call=self.call, caller=self.from_ or self.call, within=self.within)
