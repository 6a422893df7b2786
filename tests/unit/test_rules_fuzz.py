"""Mutated rules files: each loads or is rejected with a line inside it; none crashes.

The corpus is made here from every example under rules/ with a fixed seed, so a
failure names a mutation that can be replayed.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.core.rules import Problem, RulesError, parse_rules
from gateway.rules.load import load_rules

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "rules").glob("*.yaml"))
SEED = 20260504
PER_EXAMPLE = 120
TOKENS = ["", "[", "]", "{", "}", ":", "- ", "\t", "'", '"', "&a", "*a", "!!binary", "~",
          "yes", "20x", "-5s", "0", "1e999", "+32", "anonymous", "mon-fry", "25:00",
          "2026-13-01", "nobody", "ring", "voicemail", "when", "unless", "mode", "force-backup",
          "é", "\x00", "..", "office-hours", "main", "true", "null", "[]", "{}",
          "99999999999999999999999"]  # fmt: skip


def mutate(lines: list[str], rng: random.Random) -> list[str]:
    """One random edit of the kind an admin (or a bad merge) makes."""
    lines = list(lines)
    at = rng.randrange(len(lines))
    kind = rng.randrange(7)
    if kind == 0:
        del lines[at]
    elif kind == 1:
        lines.insert(at, lines[rng.randrange(len(lines))])
    elif kind == 2:
        other = rng.randrange(len(lines))
        lines[at], lines[other] = lines[other], lines[at]
    elif kind == 3:
        lines[at] = (
            " " * rng.randrange(5) + lines[at].lstrip() if rng.random() < 0.5 else lines[at][1:]
        )
    elif kind == 4:
        words = lines[at].split(" ")
        words[rng.randrange(len(words))] = rng.choice(TOKENS)
        lines[at] = " ".join(words)
    elif kind == 5:
        cut = rng.randrange(len(lines[at]) + 1)
        lines[at] = lines[at][:cut] + rng.choice(TOKENS) + lines[at][cut:]
    else:
        lines = [*lines[:at], lines[at][: rng.randrange(len(lines[at]) + 1)]]
    return lines


def corpus() -> list[tuple[str, str]]:
    rng = random.Random(SEED)
    made = []
    for example in EXAMPLES:
        lines = example.read_text(encoding="utf-8").splitlines()
        for index in range(PER_EXAMPLE):
            mutated = lines
            for _ in range(rng.randint(1, 3)):
                mutated = mutate(mutated, rng) or ["x"]
            made.append((f"{example.stem}-{index}", "\n".join(mutated) + "\n"))
    return made


CORPUS = corpus()


def test_the_corpus_is_big_and_mostly_rejected() -> None:
    assert len(CORPUS) >= 200
    rejected = 0
    for name, text in CORPUS:
        try:
            load_text(name, text)
        except RulesError:
            rejected += 1
    assert rejected > len(CORPUS) // 3, "the mutations hardly change anything"


def load_text(name: str, text: str) -> None:
    parse_rules(text, name)


@pytest.mark.parametrize(("name", "text"), CORPUS, ids=[name for name, _ in CORPUS])
def test_mutated_file_loads_or_names_a_line_inside_it(name: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    lines = max(1, len(text.splitlines()))
    problems: tuple[Problem, ...] = ()
    try:
        load_rules(path)
    except RulesError as error:
        problems = error.problems or (Problem(str(path), 0, "rejected without a problem"),)
    for problem in problems:
        assert problem.file == str(path)
        assert 1 <= problem.line <= lines, f"{problem} (file has {lines} lines)\n{text}"
        assert problem.message.strip(), problem
