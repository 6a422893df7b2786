"""The types of JSON documents the gateway writes and reads.

MQTT payloads, the status file, the edge's line protocol and the rules' JSON
schema are JSON: these aliases say so, so that ``mypy --strict`` checks what
goes into them instead of letting every value through. typeshed types
``json.loads`` as returning any type at all; :func:`loads` gives its result
the honest type, and :func:`as_object` / :func:`as_array` narrow a value read
from outside before its fields are used.

``JsonObject`` is a ``dict`` (invariant): build it from a literal or annotate
the variable, e.g. ``payload: JsonObject = {"state": "up"}``. A function that
only reads an object takes ``JsonMapping``, which also accepts a
``dict[str, str]``. A pydantic model's field takes ``pydantic.JsonValue``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TypeAlias

JsonScalar: TypeAlias = str | int | float | bool | None
JsonValue: TypeAlias = JsonScalar | list["JsonValue"] | dict[str, "JsonValue"]
JsonArray: TypeAlias = list[JsonValue]
JsonObject: TypeAlias = dict[str, JsonValue]
JsonMapping: TypeAlias = Mapping[str, JsonValue]


def loads(text: str | bytes) -> JsonValue:
    """Parse JSON text.

    Args:
        text: a JSON document.

    Returns:
        The parsed value: with the default decoder it is built only of dict,
        list, str, int, float, bool and None, which is what ``JsonValue`` says.

    Raises:
        ValueError: the text is not JSON (``json.JSONDecodeError``).
    """
    value: JsonValue = json.loads(text)
    return value


def as_object(value: JsonValue) -> JsonObject | None:
    """The value if it is a JSON object, else None."""
    return value if isinstance(value, dict) else None


def as_array(value: JsonValue) -> JsonArray | None:
    """The value if it is a JSON array, else None."""
    return value if isinstance(value, list) else None
