"""The documentation a user follows: its links lead somewhere, its commands run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"```(?:sh|console|bash)\n(.*?)```", re.DOTALL)


def relative_links(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    return [link for link in LINK.findall(text) if not re.match(r"[a-z]+:|#", link)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_leads_to_a_file(page: Path) -> None:
    for link in relative_links(page):
        target = (page.parent / link.split("#", 1)[0]).resolve()
        assert target.exists(), f"{page.relative_to(ROOT)}: the link {link} leads nowhere"


def test_no_page_sends_the_reader_to_a_design_file_the_project_does_not_ship() -> None:
    for page in PAGES:
        assert "DESIGN.md" not in page.read_text(encoding="utf-8"), page.name


def test_the_operations_commands_call_the_installed_program_by_its_path() -> None:
    """sip-failover lives in the install's venv, not on root's or anyone's PATH."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    commands = [line for block in FENCE.findall(text) for line in block.splitlines()]
    commands += re.findall(r"`([^`]*sip-failover [a-z]+[^`]*)`", text)
    program = r"(^|[\s;&|(])sip-failover (run|demo|check|explain|calls|status|probe|doctor)\b"
    bare = [line for line in commands if re.search(program, line)]
    assert bare == []
