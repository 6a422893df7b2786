"""The rules file on disk: read it, check it, write its JSON schema.

The file-system edge of ``gateway.core.rules`` (which is pure).
``python -m gateway.rules_file --write-schema rules/rules.schema.json``
regenerates the schema editors use; a unit test fails when it is stale.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from gateway.core.rules import Problem, Rules, RulesError, parse_rules, rules_json_schema

if TYPE_CHECKING:
    from pathlib import Path


def load_rules(path: Path) -> Rules:
    """Read and check a rules file (UTF-8).

    Raises:
        RulesError: the file cannot be read, is not UTF-8, or has problems.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        reason = error.strerror or str(error)
        raise RulesError([Problem(str(path), 0, f"cannot read the file: {reason}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        message = f"(top): not UTF-8 text (byte {error.start}); save the file as UTF-8"
        raise RulesError([Problem(str(path), line, message)]) from None
    return parse_rules(text, str(path))


def schema_text() -> str:
    """The JSON schema as committed in rules/rules.schema.json."""
    return json.dumps(rules_json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(path: Path) -> None:
    """Write the rules JSON schema to ``path``."""
    path.write_text(schema_text(), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python -m gateway.rules_file --write-schema PATH``."""
    from pathlib import Path  # noqa: PLC0415 - only the command line needs it at run time

    parser = argparse.ArgumentParser(description="rules file tools")
    parser.add_argument("--write-schema", type=Path, required=True, metavar="PATH")
    args = parser.parse_args(argv)
    write_schema(args.write_schema)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
