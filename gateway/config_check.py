"""Settings as the admin sees them: every problem named by its variable.

pydantic-settings reports a wrong value as a validation error about a field
path (``trunk.registrar``), a value that is not JSON as an error about a
whole section (``trunk``), and it ignores a misspelt variable. Here each
problem becomes ``SIP_FAILOVER_TRUNK__REGISTRAR: what is wrong`` (never the
value: it may be a secret), and each ``SIP_FAILOVER_*`` variable of the
environment or the ``.env`` file that names no setting becomes a warning with
the nearest real name.
"""

from __future__ import annotations

import json
import os
import re
import typing
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dotenv import dotenv_values
from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError as UndecodableError

from gateway.config import SECRETS_DIR_ENV, Settings

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from pydantic.fields import FieldInfo
    from pydantic_core import ErrorDetails

PREFIX = "SIP_FAILOVER_"
_DELIMITER = "__"


def checked_settings(err: TextIO) -> Settings | None:
    """The settings, or None after printing to ``err`` what is wrong with them.

    Each problem and each warning about an unknown variable is one line:
    ``settings: SIP_FAILOVER_TRUNK__REGISTRAR: required, but not set (...)``,
    ``settings: warning: SIP_FAILOVER_TRUNK_REGISTRAR is no setting ...``.
    """
    for warning in unknown_variables(os.environ, _dot_env()):
        print(f"settings: warning: {warning}", file=err)
    try:
        return Settings()  # type: ignore[call-arg] # the trunk comes from the environment
    except ValidationError as error:
        problems = [problem for details in error.errors() for problem in _named(details)]
    except UndecodableError as error:
        problems = _undecodable(str(error))
    for problem in problems:
        print(f"settings: {problem}", file=err)
    return None


def variable(loc: tuple[int | str, ...]) -> str:
    """``SIP_FAILOVER_TRUNK__REGISTRAR`` for the field path ``("trunk", "registrar")``."""
    return PREFIX + _DELIMITER.join(str(part) for part in loc).upper()


# --- problems ----------------------------------------------------------------------


def _named(error: ErrorDetails) -> list[str]:
    loc = tuple(error["loc"])
    if error["type"] == "missing":
        return [f"{variable(where)}: required, but not set ({what})"
                for where, what in _required_under(Settings, loc)]  # fmt: skip
    message = error["msg"].removeprefix("Value error, ")
    return [f"{variable(loc)}: {message}"]


def _required_under(
    model: type[BaseModel], loc: tuple[int | str, ...]
) -> Iterator[tuple[tuple[int | str, ...], str]]:
    """Every required setting at or under ``loc``, with its description.

    A section of which no variable is set at all (no ``SIP_FAILOVER_TRUNK__*``)
    is reported missing as a whole: name the variables it needs.
    """
    field = _field(model, loc)
    section = _model_of(field.annotation) if field is not None else None
    if section is None:
        yield loc, (field.description if field is not None else None) or "no default"
        return
    for name, inner in section.model_fields.items():
        if inner.is_required():
            yield from _required_under(model, (*loc, inner.alias or name))


def _field(model: type[BaseModel], loc: tuple[int | str, ...]) -> FieldInfo | None:
    field = None
    current: type[BaseModel] | None = model
    for part in loc:
        fields = _fields_by_name(current) if current is not None else {}
        field = fields.get(str(part))
        current = _model_of(field.annotation) if field is not None else None
    return field


def _undecodable(error: str) -> list[str]:
    """pydantic-settings reads list settings as JSON and names only the section."""
    found = re.search(r'field "(\w+)"', error)
    section = (found.group(1) if found else "").upper()
    bad = [f"{name}: {why}" for name, value in _set_variables() if name.startswith(PREFIX + section)
           for why in [_not_json(name, value)] if why]  # fmt: skip
    return bad or [f"{variable((section,))}: {error}"]


def _not_json(name: str, value: str) -> str | None:
    """Why a list (or section) setting's value is not the JSON it must be; None: it is."""
    field = _field(Settings, tuple(name.removeprefix(PREFIX).lower().split(_DELIMITER)))
    if field is None or not _read_as_json(field.annotation):
        return None
    try:
        json.loads(value)
    except ValueError as error:
        return f'expected a JSON list, e.g. ["198.51.100.10"] ({error.args[0].split(":")[0]})'
    return None


def _read_as_json(annotation: object) -> bool:
    """pydantic-settings decodes lists, sets, mappings and sections as JSON."""
    kinds = (list, set, frozenset, tuple, dict)
    origin = typing.get_origin(annotation)
    return origin in kinds or annotation in kinds or _model_of(annotation) is not None


def _set_variables() -> Iterator[tuple[str, str]]:
    for name, value in (*_dot_env().items(), *os.environ.items()):
        if name.upper().startswith(PREFIX) and value is not None:
            yield name.upper(), value


# --- unknown variables ---------------------------------------------------------------


def known_variables() -> tuple[frozenset[str], list[str]]:
    """Every variable a setting is read from, and the documented spellings among them.

    A field with an alias (``trunk.register``, ``smtp.from``) is read under both
    names; the alias is the one documented and suggested.
    """
    known: set[str] = {SECRETS_DIR_ENV}
    spelled: list[str] = [SECRETS_DIR_ENV]
    for where, field in _walk(Settings, ()):
        known.add(variable(where))
        if _model_of(field.annotation) is None:
            spelled.append(variable((*where[:-1], field.alias or where[-1])))
    return frozenset(known), spelled


def _walk(
    model: type[BaseModel], loc: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    """Every field at any depth (``trunk.tls.ca_file``), sections included."""
    for name, field in _fields(model):
        yield (*loc, name), field
        section = _model_of(field.annotation)
        if section is not None:
            yield from _walk(section, (*loc, name))


def unknown_variables(environ: Mapping[str, str], dot_env: Mapping[str, str | None]) -> list[str]:
    """A warning for each ``SIP_FAILOVER_*`` variable that names no setting, sorted."""
    known, spelled = known_variables()
    found = {name.upper(): " (in .env)" for name in dot_env}
    found |= {name.upper(): "" for name in environ}  # the environment wins over .env
    warnings = []
    for name, where in sorted(found.items()):
        if name.startswith(PREFIX) and name not in known:
            import difflib  # noqa: PLC0415 - only for a misspelt name, not in every gateway

            close = difflib.get_close_matches(name, spelled, n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.append(f"{name}{where} is no setting and is ignored{hint}")
    return warnings


def _dot_env() -> dict[str, str | None]:
    path = Path(str(Settings.model_config.get("env_file") or ".env"))
    return dotenv_values(path) if path.is_file() else {}


def _fields(model: type[BaseModel]) -> list[tuple[str, FieldInfo]]:
    """Each field under its name, and again under its alias when it has one."""
    named = [(name, field) for name, field in model.model_fields.items()]
    return named + [(field.alias, field) for _, field in named if field.alias]


def _fields_by_name(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return dict(_fields(model))


def _model_of(annotation: object) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
