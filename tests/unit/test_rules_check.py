"""`check` and `explain` as an admin sees them: file:line problems, route in words."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.rules import check, explain
from gateway.core.rules import RulesError
from gateway.rules.load import load_rules, schema_text
from gateway.sip.limits import WHEEL

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "rules" / "example.yaml"
BROKEN = sorted((ROOT / "tests" / "data" / "rules" / "broken").glob("*.yaml"))
EXPECT = re.compile(r"# expect: (\d+): (.+)")



@pytest.fixture(autouse=True)
def wheel_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """`check` plans with the installed engine: pin it to the wheel these files are sized for."""
    monkeypatch.setattr("gateway.rules.load.planned_limits", lambda: WHEEL)

def expectations(path: Path) -> list[tuple[int, str]]:
    """The `# expect: LINE: fragment` comments at the top of a broken file."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = EXPECT.fullmatch(line.strip())
        if not match:
            break
        found.append((int(match.group(1)), match.group(2)))
    return found


def run_check(*paths: Path) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = check(list(paths), out)
    return code, out.getvalue().splitlines()


def test_there_are_enough_broken_files() -> None:
    assert len(BROKEN) >= 12
    assert all(expectations(path) for path in BROKEN)


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_file_reports_exactly_its_problems(path: Path) -> None:
    code, lines = run_check(path)
    assert code == 1
    expected = expectations(path)
    assert len(lines) == len(expected), lines
    for printed, (line, fragment) in zip(lines, sorted(expected), strict=True):
        assert printed.startswith(f"{path}:{line}: "), printed
        assert fragment in printed, printed


def test_example_is_ok() -> None:
    code, lines = run_check(EXAMPLE)
    assert code == 0
    assert lines == [f"{EXAMPLE}: ok (1 route, 3 targets)"]


def test_one_bad_file_among_good_ones_fails_the_check() -> None:
    code, lines = run_check(EXAMPLE, BROKEN[0])
    assert code == 1
    assert lines[0].endswith(": ok (1 route, 3 targets)")
    assert lines[1].startswith(f"{BROKEN[0]}:")


def test_missing_file_is_a_problem_at_line_0(tmp_path: Path) -> None:
    missing = tmp_path / "rules.yaml"
    code, lines = run_check(missing)
    assert code == 1
    assert lines == [f"{missing}:0: cannot read the file: No such file or directory"]


def test_non_utf8_file_points_at_the_line_of_the_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(
        "version: 1\ntargets:\n  caf\xe9: {number: '+32480000002'}\n".encode("latin-1")
    )
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    (problem,) = caught.value.problems
    assert problem.line == 3
    assert "not UTF-8" in problem.message


def test_committed_schema_is_up_to_date() -> None:
    committed = (ROOT / "rules" / "rules.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(), (
        "rules/rules.schema.json is stale: "
        "python -m gateway.rules.load --write-schema rules/rules.schema.json"
    )


def test_example_names_its_schema_on_the_first_line() -> None:
    first = EXAMPLE.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=./rules.schema.json"


def run_explain(path: Path, to: str, from_: str | None = None, *, as_json: bool = False,
                at: datetime | None = None) -> tuple[int, str]:  # fmt: skip
    out = io.StringIO()
    code = explain(path, to, from_, at, as_json, out)
    return code, out.getvalue()


def test_explain_says_the_route_in_words() -> None:
    at = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
    code, text = run_explain(EXAMPLE, "+32 2 555 01 00", "+32470999999", at=at)
    assert code == 0
    assert text.strip() == (
        "at Mon 2026-05-04 11:30 (Europe/Brussels), mode normal (from file): route main-line: "
        "1. ring office-mobile (+32470000001) for 20s, "
        "fail over on unassigned, busy, no_answer, unreachable; "
        "2. ring anna (+32480000002) and desk (sip:desk@192.0.2.10) at once for 25s; "
        "3. voicemail main"
    )


def test_explain_json_has_the_same_content() -> None:
    at = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
    code, text = run_explain(EXAMPLE, "003225550100", None, as_json=True, at=at)
    assert code == 0
    report = json.loads(text)
    assert report["route"] == "main-line"
    assert report["at"] == "2026-05-04T11:30:00+02:00"
    assert (report["mode"], report["mode_source"]) == ("normal", "file")
    assert [step["kind"] for step in report["steps"]] == ["ring", "ring_all", "voicemail"]
    first, second, last = report["steps"]
    assert first["targets"] == [{"name": "office-mobile", "address": "+32470000001"}]
    assert first["skipped"] == []
    assert first["timeout"] == 20.0
    assert first["failover_on"] == ["unassigned", "busy", "no_answer", "unreachable"]
    assert second["timeout"] == 25.0
    assert second["early_media_timeout"] == 8.0
    assert [t["name"] for t in second["targets"]] == ["anna", "desk"]
    assert last == {"kind": "voicemail", "box": "main"}
    assert "route main-line: 1. ring" in report["text"]


def test_explain_without_a_route_exits_1_and_says_the_call_is_refused() -> None:
    code, text = run_explain(EXAMPLE, "+3225550199")
    assert code == 1
    assert "+3225550199 is not a public number here (+3225550100)" in text
    assert "404" in text


def test_explain_on_a_broken_file_prints_its_problems() -> None:
    path = next(p for p in BROKEN if p.stem == "bad_duration")
    code, text = run_explain(path, "+3225550100")
    assert code == 2
    assert text.startswith(f"{path}:12: routes[0].steps[1].timeout: invalid duration")


def test_every_example_checks_without_warnings() -> None:
    for example in sorted(EXAMPLE.parent.glob("*.yaml")):
        code, lines = run_check(example)
        assert code == 0
        assert len(lines) == 1, lines
        assert example.read_text(encoding="utf-8").startswith(
            "# yaml-language-server: $schema=./rules.schema.json\n"
        )


def test_check_warns_about_shadowed_routes_uncaught_calls_and_dead_schedules(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nmode: force-backup\ntargets: {anna: {number: '+32480000002'}}\n"
        "schedules:\n  office: {mon-sun: '00:00-24:00'}\n  holidays: {closed: 2026-12-25}\n"
        "routes:\n"
        "  - {name: office, match: {to: '+3225550100', when: office}, steps: [{ring: anna}]}\n"
        "  - {name: night, match: {to: '+3225550100', unless: office}, steps: [{ring: anna}]}\n"
        "  - {name: vip, match: {to: '+3225550100', from: '+3247*'}, steps: [{ring: anna}]}\n",
        encoding="utf-8",
    )
    code, lines = run_check(path)
    assert code == 0, "warnings do not fail the check"
    warnings = [line.removeprefix(f"{path}: warning: ") for line in lines[1:]]
    assert warnings == [
        "schedule 'holidays' has no opening hours: it is never open",
        (
            "no route takes every call to +3225550100 (none without from, when or unless): "
            "the calls no route takes are refused with 404"
        ),
        (
            "route 'night' never matches: routes above it take all its calls "
            "(tried every 15 minutes for a week, with the callers the rules name)"
        ),
        (
            "route 'vip' never matches: routes above it take all its calls "
            "(tried every 15 minutes for a week, with the callers the rules name)"
        ),
        "mode is force-backup: the main line is left out of every route",
    ]


def test_explain_applies_schedules_mode_and_health() -> None:
    office = EXAMPLE.parent / "office-hours.yaml"
    monday_10 = datetime(2026, 5, 4, 10, 0)  # noqa: DTZ001 - naive: the rules' time zone
    out = io.StringIO()
    code = explain(
        office, "+3225550100", None, monday_10, False, out, {"anna": "down"}, "force-backup"
    )
    assert code == 0
    assert (
        out.getvalue()
        .strip()
        .endswith(
            "1. ring anna (+32480000002), then bert (+32480000003), 15s each; "
            "2. voicemail main; office-mobile left out (main line, mode force-backup); "
            "anna is down but has no probe: rung anyway (only probed targets are skipped)"
        )
    )
    _, text = run_explain(office, "+3225550100", at=datetime(2026, 12, 25, 10, 0, tzinfo=UTC))
    assert "route closed: 1. voicemail main" in text
    _, text = run_explain(office, "+32 2 555 01 00", "+32471119999", as_json=True, at=monday_10)
    report = json.loads(text)
    assert report["route"] == "vip"
    assert report["schedules"] == {"office-hours": True, "lunch": False}
    out = io.StringIO()
    explain(office, "+3225550100", None, monday_10, True, out, None, "closed")
    assert json.loads(out.getvalue())["steps"] == [{"kind": "voicemail", "box": "main"}]


RING_THREE = """\
version: 1
targets:
  anna: {number: "+32480000002"}
  bert: {number: "+32480000003"}
  carl: {number: "+32480000004"}
routes:
  - name: main
    match: {to: "+3225550100"}
    steps: [{ring_all: [anna, bert, carl]}]
"""


def test_how_many_targets_ring_at_once_follows_the_engine_given(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RING_THREE, encoding="utf-8")
    with pytest.raises(RulesError) as caught:
        load_rules(path, call_legs=WHEEL.call_legs)  # 4 slots, 1 kept free, 1 the caller's
    assert "can ring at most 2 at once" in str(caught.value)
    bigger = load_rules(path, call_legs=4)  # a pjsua2 built with more legs
    assert bigger.routes[0].steps[0].names == ("anna", "bert", "carl")


def test_explain_refuses_a_step_the_engine_cannot_carry_out(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RING_THREE, encoding="utf-8")
    code, text = run_explain(path, "+3225550100")
    assert code == 2
    assert "ring anna" not in text
    assert text.startswith(f"{path}:9: routes[0].steps[0].ring_all: 3 targets at once")


def write_rules_with_greeting(folder: Path, greeting: str) -> Path:
    path = folder / "rules.yaml"
    path.write_text(
        f"version: 1\ntargets: {{anna: {{number: '+32480000002'}}}}\n"
        f"voicemail:\n  main: {{greeting: {greeting}, email: office@example.com}}\n"
        "routes:\n  - {name: main, match: {to: '+3225550100'}, steps: [{voicemail: main}]}\n",
        encoding="utf-8",
    )
    return path


def test_a_greeting_is_found_next_to_the_rules_file(tmp_path: Path) -> None:
    (tmp_path / "greetings").mkdir()
    (tmp_path / "greetings" / "main.wav").write_bytes(
        (ROOT / "gateway" / "assets" / "greeting.wav").read_bytes()
    )
    code, lines = run_check(write_rules_with_greeting(tmp_path, "greetings/main.wav"))
    assert (code, len(lines)) == (0, 1), lines


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: None, "greeting file 'greetings/main.wav' not found"),
        (lambda p: p.mkdir(), "greeting 'greetings/main.wav' is a folder, not a WAV file"),
        (lambda p: p.write_text("hello"), "greeting file 'greetings/main.wav' is not a WAV file"),
    ],
)
def test_a_greeting_that_cannot_be_played_is_a_problem_at_its_line(
    tmp_path: Path, make: Any, words: str
) -> None:
    (tmp_path / "greetings").mkdir()
    make(tmp_path / "greetings" / "main.wav")
    path = write_rules_with_greeting(tmp_path, "greetings/main.wav")
    code, lines = run_check(path)
    assert code == 1
    assert lines[0].startswith(f"{path}:4: voicemail.main.greeting: {words}"), lines
    assert "leave greeting out to play the built-in one" in lines[0]


def test_explain_skips_only_probed_targets_as_the_gateway_does() -> None:
    office = EXAMPLE.parent / "office-hours.yaml"  # office-mobile has a probe, anna none
    monday_10 = datetime(2026, 5, 4, 10, 0)  # noqa: DTZ001 - naive: the rules' time zone
    out = io.StringIO()
    health = {"office-mobile": "unassigned", "anna": "down"}
    assert explain(office, "+3225550100", None, monday_10, True, out, health) == 0
    report = json.loads(out.getvalue())
    assert [[t["name"] for t in step.get("targets", [])] for step in report["steps"]] == [
        ["anna", "bert"],
        [],
    ]
    assert report["steps"][0]["skipped"] == []
    assert "office-mobile left out (health unassigned)" in report["text"]
    assert "anna is down but has no probe: rung anyway" in report["text"]


def test_explain_refuses_health_for_a_target_the_rules_do_not_have() -> None:
    out = io.StringIO()
    code = explain(EXAMPLE, "+3225550100", None, None, False, out, {"bobb": "down"})
    assert code == 2
    assert out.getvalue().strip() == (
        "--health bobb=down: no target 'bobb' in the rules (targets: anna, desk, office-mobile)"
    )
