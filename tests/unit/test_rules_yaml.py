"""YAML mistakes in a rules file, said in words: indentation, a colon in a value."""

from __future__ import annotations

import textwrap

import pytest

from gateway.core.rules import RulesError, parse_rules

CASES = {
    "a list item further in than the one above": (
        """\
        version: 1
        routes:
          - name: a
            steps:
              - ring: anna
               - voicemail: main
        """,
        6,
        "the list item '- voicemail: main' is indented more than the list item on line 5",
    ),
    "a list item between two columns": (
        """\
        version: 1
        routes:
          - name: a
            steps:
              - ring: anna
             - voicemail: main
        """,
        6,
        ("the list item '- voicemail: main' is indented less than the list item on line 5 "
         "above it, yet lines up with no list item before it"),
    ),
    "a top-level key one space in": (
        """\
        version: 1
        targets:
          anna: {number: "+32480000002"}
         routes: []
        """,
        4,
        "'routes' is indented less than 'anna' on line 3 above it, yet lines up with no key",
    ),
    "a key under one that has a value": (
        """\
        version: 1
        timezone: UTC
          mode: closed
        """,
        3,
        "'mode' is indented more than 'timezone' on line 2 above it",
    ),
    "a key further in after a flow mapping": (
        """\
        version: 1
        targets:
          anna: {number: "+32480000002"}
           bert: {number: "+32480000003"}
        """,
        4,
        "'bert' is indented more than 'anna' on line 3 above it",
    ),
    "a colon in a plain value": (
        """\
        version: 1
        timezone: Europe: Brussels
        """,
        2,
        "timezone: a value containing ': ' must be quoted",
    ),
}


@pytest.mark.parametrize(("text", "line", "words"), CASES.values(), ids=list(CASES))
def test_a_yaml_mistake_is_said_in_words_at_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(textwrap.dedent(text), "rules.yaml")
    (problem,) = caught.value.problems
    assert problem.line == line, problem
    assert words in problem.message, problem
    assert "<block" not in problem.message, "parser words reached the admin"


def test_the_rule_is_said_with_the_mistake() -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules("version: 1\ntimezone: UTC\n  mode: closed\n", "rules.yaml")
    assert "keys of one mapping start in the same column" in str(caught.value)
