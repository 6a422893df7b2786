"""At most one log line per refused source per minute, with the count of INVITEs."""

from __future__ import annotations

from gateway.service.refusals import NOT_THE_TRUNK, OVER_LIMIT, STOPPING, RefusedSources, reason_for


def test_first_refusal_is_told_at_once_then_once_a_minute_with_the_count() -> None:
    report = RefusedSources()
    said = [report.refused("192.0.2.7", NOT_THE_TRUNK, t / 10) for t in range(1300)]
    lines = [line for line in said if line is not None]
    assert lines == [
        "refused source 192.0.2.7: not the trunk (1 INVITEs)",
        "refused source 192.0.2.7: not the trunk (600 INVITEs)",
        "refused source 192.0.2.7: not the trunk (600 INVITEs)",
    ]


def test_each_source_has_its_own_minute() -> None:
    report = RefusedSources()
    assert report.refused("192.0.2.7", NOT_THE_TRUNK, 0.0) is not None
    assert report.refused("192.0.2.8", NOT_THE_TRUNK, 1.0) is not None
    assert report.refused("192.0.2.7", NOT_THE_TRUNK, 2.0) is None


def test_a_flood_from_many_addresses_keeps_memory_bounded() -> None:
    report = RefusedSources(max_sources=100)
    for n in range(10_000):
        report.refused(f"10.0.{n // 256}.{n % 256}", NOT_THE_TRUNK, n / 1000)
    assert len(report._tally) <= 100


def test_only_strangers_are_not_the_trunk() -> None:
    trunk = frozenset({"198.51.100.10"})
    assert reason_for("192.0.2.7", trunk, accepting=True) == NOT_THE_TRUNK
    assert reason_for("198.51.100.10", trunk, accepting=True) == OVER_LIMIT
    assert reason_for("198.51.100.10", trunk, accepting=False) == STOPPING
