"""Where a problem is in the admin's rules file, said in the admin's words.

The rules file is read with ruamel.yaml's round-trip loader because it keeps,
for every mapping and sequence, the line of each key and item. A pydantic
error's ``loc`` (``("routes", 0, "steps", 1, "RingStep", "timeout")``) is
walked down that tree to the line the admin must edit; union tags in the loc
(the step and target model names) are not in the file and are skipped.
Pydantic's own messages are rewritten to say what is expected.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError

from gateway.core.rules_indent import colon_in_value, indentation

if typing.TYPE_CHECKING:
    from pydantic_core import ErrorDetails

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a rules file: ``file:line: message``.

    ``line`` is 1-based; 0 means the file as a whole (it could not be read).
    ``message`` begins with the field path, e.g. ``routes[0].steps[1].timeout``.
    """

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RulesError(Exception):
    """The admin's rules file is wrong; ``problems`` says where, sorted by line."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(
            sorted(problems, key=lambda p: (p.file, p.line, p.message))
        )
        super().__init__("\n".join(map(str, self.problems)))


# --- YAML text -> tree with lines ------------------------------------------------


def load_tree(text: str, source: str) -> object:
    """Parse YAML text into a round-trip tree (mappings and sequences know their lines).

    Raises:
        RulesError: on a syntax error, a duplicate key, a tab in the indentation
            or a control character.
    """
    try:
        return YAML(typ="rt").load(text)
    except MarkedYAMLError as error:
        problem = _yaml_problem(error, source, text)
        # "end of stream" is marked after the last line break: name the last line.
        last = max(1, len(text.splitlines()))
        raise RulesError([Problem(source, min(problem.line, last), problem.message)]) from None
    except ReaderError as error:  # a control character: the reader stops before parsing
        line = text.count("\n", 0, max(0, error.position)) + 1
        message = f"(top): character #x{error.character:04x} is not allowed in a YAML file"
        raise RulesError([Problem(source, line, message)]) from None


def _yaml_problem(error: MarkedYAMLError, source: str, text: str) -> Problem:
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark is not None else 1
    problem = str(error.problem or error.context or error).strip()
    words = _in_words(problem, text, line, mark.column if mark is not None else -1)
    if words is not None:
        return Problem(source, line, words)
    if isinstance(error, DuplicateKeyError):
        first = error.context_mark.line + 1 if error.context_mark is not None else line
        key = problem.split('"')[1] if problem.count('"') >= 2 else "?"
        message = (
            f"{key}: duplicate key (the mapping starts on line {first}; a key may appear once)"
        )
        return Problem(source, line, message)
    if "'\\t'" in problem:
        return Problem(source, line, "tab character: YAML indents with spaces only")
    context = ""
    if error.context and error.context_mark:
        context = f" ({error.context} on line {error.context_mark.line + 1})"
    return Problem(source, line, f"invalid YAML: {problem}{context}")


def _in_words(problem: str, text: str, line: int, column: int) -> str | None:
    """The parser's words for a mis-indented line or a colon in a value, said plainly."""
    if problem == "mapping values are not allowed here":
        return colon_in_value(text, line, column) or indentation(text, line)
    if problem.startswith(("expected <block end>", "expected '<document start>'")):
        return indentation(text, line)
    return None


def plain(node: object) -> object:
    """The tree as plain dicts, lists, str, int, float and bool, for validation."""
    if isinstance(node, Mapping):
        return {plain(key): plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [plain(item) for item in node]
    for kind in (bool, str, int, float):
        if isinstance(node, kind):
            return kind(node)
    return node


# --- pydantic loc -> line ----------------------------------------------------------


def line_of(tree: object, loc: Loc, tags: Mapping[str, type[BaseModel]]) -> int:
    """The 1-based line of the deepest node of ``loc`` found in ``tree``.

    A value's line is its key's line; a missing key's line is its parent's.
    """
    node = tree
    line = _start(tree)
    for part in loc:
        if isinstance(part, str) and part in tags:
            continue
        if isinstance(node, CommentedMap) and part in node:
            line, node = node.lc.key(part)[0] + 1, node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, node = node.lc.item(part)[0] + 1, node[part]
        else:
            break
    return line


def _start(node: object) -> int:
    if isinstance(node, CommentedMap | CommentedSeq):
        return int(node.lc.line) + 1
    return 1


def path_of(loc: Loc, tags: Mapping[str, type[BaseModel]]) -> str:
    """``routes[0].steps[1].timeout`` for a pydantic loc."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in tags and part != "[key]":
            path += f".{part}" if path else part
    return path


# --- pydantic error -> words -------------------------------------------------------


def problems_of(
    errors: Iterable[ErrorDetails],
    tree: object,
    source: str,
    root: type[BaseModel],
    tags: Mapping[str, type[BaseModel]],
) -> list[Problem]:
    """One Problem per pydantic error, each at its line and in plain words."""
    problems = []
    for error in errors:
        if _follows_from_others(error):
            continue
        loc = tuple(error["loc"]) + tuple(error.get("ctx", {}).get("sub_loc", ()))
        words = _words(error, _keys_at(root, loc[:-1], tags))
        message = f"{path_of(loc, tags) or '(top)'}: {words}"
        problems.append(Problem(source, line_of(tree, loc, tags), message))
    return problems


def _follows_from_others(error: ErrorDetails) -> bool:
    """Pydantic counts a tuple's length after its items: bad items make it "too short"."""
    value, ctx = error.get("input"), error.get("ctx", {})
    too_short = error["type"] == "too_short"
    return too_short and isinstance(value, Sized) and len(value) >= ctx["min_length"]


_EXPECTED = {
    "string_type": "expected text",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "frozen_set_type": "expected a list",
    "set_type": "expected a list",
    "bool_type": "expected true or false",
    "float_type": "expected a number",
    "int_type": "expected a whole number",
}


def _words(error: ErrorDetails, keys: list[str]) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx", {})
    fixed = {
        "missing": "required, but missing",
        "extra_forbidden": f"unknown key (expected one of: {', '.join(keys)})",
        "too_short": "must not be empty",
        "invalid_key": f"keys must be text, got {describe(value)}",
        "value_error": str(ctx.get("error", error["msg"])),
    }
    if kind in fixed:
        return fixed[kind]
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {describe(value)}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {describe(value)}"
    if kind == "literal_error":
        return f"expected {ctx['expected']}, got {describe(value)}"
    if kind.endswith("_kind"):  # no (or several) discriminating keys in a step or target
        found = ", ".join(map(str, value)) if isinstance(value, Mapping) else ""
        return f"{error['msg']} ({f'found: {found}' if found else f'got {describe(value)}'})"
    return error["msg"]


def describe(value: object) -> str:
    """A YAML value as the admin wrote it, for 'expected X, got Y'."""
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"'{value}'"


def _keys_at(root: type[BaseModel], loc: Loc, tags: Mapping[str, type[BaseModel]]) -> list[str]:
    """The keys a mapping at ``loc`` may have, following the models' annotations."""
    current: object = root
    for part in loc:
        if isinstance(part, str) and part in tags:
            current = tags[part]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            fields = {f.alias or name: f for name, f in current.model_fields.items()}
            current = fields[str(part)].annotation if str(part) in fields else None
        else:
            current = _element(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _element(annotation: object) -> object:
    """The type of an item of a tuple/list/dict annotation (Annotated unwrapped)."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = typing.get_args(annotation)
    if not args or typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return None
    return args[-1] if typing.get_origin(annotation) is dict else args[0]
