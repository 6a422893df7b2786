"""The rules file on disk: read it, check it, write its JSON schema.

The file-system edge of ``gateway.core.rules`` (which is pure).
``python -m gateway.rules.load --write-schema rules/rules.schema.json``
regenerates the schema editors use; a unit test fails when it is stale.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from typing import TYPE_CHECKING

from gateway.core.rules import Problem, Rules, RulesError, parse_rules, rules_json_schema
from gateway.sip.engine_limits import planned_limits

if TYPE_CHECKING:
    from pathlib import Path


def load_rules(path: Path, *, call_legs: int | None = None) -> Rules:
    """Read and check a rules file (UTF-8), and the greeting files it names.

    Args:
        path: the rules file; greetings are relative to its folder.
        call_legs: the call legs the SIP engine gives calls; default: the
            installed engine's, read from pjsua2 (``planned_limits``).

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
    greetings = partial(greeting_problem, path.parent)
    legs = planned_limits().call_legs if call_legs is None else call_legs
    return parse_rules(text, str(path), call_legs=legs, check_greeting=greetings)


def greeting_problem(folder: Path, greeting: str) -> str | None:
    """What stops the answering machine from playing ``greeting``; None: nothing.

    Resolved as the answering machine does: relative to the rules file's folder.
    """
    where = folder / greeting
    try:
        with where.open("rb") as file:
            head = file.read(12)
    except FileNotFoundError:
        return f"greeting file '{greeting}' not found ({where})"
    except IsADirectoryError:
        return f"greeting '{greeting}' is a folder, not a WAV file ({where})"
    except OSError as error:
        return f"greeting file '{greeting}' cannot be read: {error.strerror or error} ({where})"
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return f"greeting file '{greeting}' is not a WAV file ({where})"
    return None


def schema_text() -> str:
    """The JSON schema as committed in rules/rules.schema.json."""
    return json.dumps(rules_json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(path: Path) -> None:
    """Write the rules JSON schema to ``path``."""
    path.write_text(schema_text(), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """``python -m gateway.rules.load --write-schema PATH``."""
    from pathlib import Path  # noqa: PLC0415 - only the command line needs it at run time

    parser = argparse.ArgumentParser(description="rules file tools")
    parser.add_argument("--write-schema", type=Path, required=True, metavar="PATH")
    args = parser.parse_args(argv)
    write_schema(args.write_schema)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
