"""Indentation mistakes in a rules file, said in words.

The YAML parser reports a mis-indented line in its own terms ("mapping values
are not allowed here", "expected <block end>, but found '<block mapping
start>'"). What the admin did is nearly always one of two things: a line
indented further than the key above it (a key under a key that already has
its value), or a line that lines up with no key of the blocks still open
above it. Read from the text itself, that is said with the keys named.
"""

from __future__ import annotations

from dataclasses import dataclass

_KEYS_RULE = (
    "keys of one mapping start in the same column, and only a key with nothing after "
    "its colon can have keys under it"
)
_ITEMS_RULE = "items of one list start in the same column"


@dataclass(frozen=True, slots=True)
class _Line:
    """A line with content: where its list dash (if any) and its key start."""

    number: int  # 1-based
    column: int  # of the first character: the dash of an item, else the key
    text: str  # stripped

    @property
    def item(self) -> bool:
        return self.text == "-" or self.text.startswith("- ")

    @property
    def key_column(self) -> int:
        """Where the mapping on this line starts (after ``- `` for an item)."""
        if not self.item:
            return self.column
        rest = self.text[1:]
        return self.column + 1 + len(rest) - len(rest.lstrip(" "))

    @property
    def key(self) -> str:
        return self.text.removeprefix("-").strip().split(":", 1)[0].strip()

    def words(self, *, as_item: bool) -> str:
        """The line as the admin sees it: its key, or its whole list item."""
        if as_item or ":" not in self.text:
            shown = self.text if len(self.text) <= 40 else f"{self.text[:37]}..."
            return f"the list item '{shown}'" if self.item else f"'{shown}'"
        return f"'{self.key}'"


def _content(lines: list[str]) -> list[_Line]:
    found = []
    for index, raw in enumerate(lines):
        text = raw.strip()
        if text and not text.startswith("#"):
            found.append(_Line(index + 1, len(raw) - len(raw.lstrip(" ")), text))
    return found


def colon_in_value(text: str, line: int, column: int) -> str | None:
    """Words for "mapping values are not allowed here" caused by ``key: a: b``.

    None when the colon the parser stopped at is the line's own key's colon
    (then the line is mis-indented: see ``indentation``).
    """
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return None
    raw = lines[line - 1]
    found = [c for c in _content([raw]) if c.text]
    if not found or raw.find(":", found[0].key_column) == column:
        return None
    return f"{found[0].key}: a value containing ': ' must be quoted, e.g. \"a: b\""


def indentation(text: str, line: int) -> str | None:
    """What is wrong with the indentation of ``line`` (1-based), or None if nothing.

    The line is compared with the line above it, and with the blocks still
    open there (the keys and list items it could line up with).
    """
    content = _content(text.splitlines())
    here = next((c for c in content if c.number == line), None)
    above = [c for c in content if c.number < line]
    if here is None or not above:
        return None
    previous = above[-1]
    if here.column in _open_columns(above):
        return None
    rule = _ITEMS_RULE if here.item else _KEYS_RULE
    compared = previous.column if here.item and previous.item else previous.key_column
    who = f"{here.words(as_item=here.item)} is indented"
    if here.item and previous.item:
        than = f"the list item on line {previous.number} above it"
    else:
        than = f"{previous.words(as_item=False)} on line {previous.number} above it"
    if here.column > compared:
        return f"{who} more than {than}: {rule}"
    kind = "list item" if here.item else "key"
    return f"{who} less than {than}, yet lines up with no {kind} before it: {rule}"


def _open_columns(above: list[_Line]) -> set[int]:
    """The columns of the blocks still open after the last line of ``above``."""
    columns: set[int] = set()
    limit = above[-1].key_column + 1
    for line in reversed(above):
        if line.column < limit:
            columns |= {line.column, line.key_column}
            limit = line.column
    return columns
