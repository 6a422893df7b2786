"""One check's result: what was checked, whether it passed, what it saw, how to fix it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one ``doctor`` check.

    Attributes:
        name: what was checked (``engine``, ``smtp``, …).
        ok: passed (also when there was nothing to check, or it cannot be told).
        detail: what was seen, in one line; never a secret.
        fix: what the admin should do, for a failure.
    """

    name: str
    ok: bool
    detail: str
    fix: str = ""

    @classmethod
    def passed(cls, name: str, detail: str) -> CheckResult:
        return cls(name, ok=True, detail=detail)

    @classmethod
    def failed(cls, name: str, detail: str, fix: str) -> CheckResult:
        return cls(name, ok=False, detail=detail, fix=fix)
