"""Options for the whole suite: which tests run in the parallel pass and which alone.

scripts/test.sh runs the suite in two passes: every test not marked ``alone`` spread
over pytest-xdist workers (``--alone=skip``), then the ``alone`` ones one after another
on a machine left to them (``--alone=only``). A plain ``pytest`` runs everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--alone",
        choices=("run", "skip", "only"),
        default="run",
        help="tests marked 'alone': run them with the rest (default), skip them, "
        "or run only them",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = config.getoption("alone")
    if mode == "run":
        return
    wanted = mode == "only"
    kept = [item for item in items if ("alone" in item.keywords) == wanted]
    dropped = [item for item in items if ("alone" in item.keywords) != wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
