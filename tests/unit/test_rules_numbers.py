"""Numbers in the forms trunks send and admins write, routed and logged as E.164."""

from __future__ import annotations

import io
import textwrap
from typing import TYPE_CHECKING

import pytest

from gateway.cli.rules import explain
from gateway.core.numbers import dial_form, e164, number_key, prefix_key
from gateway.core.rules import Rules, RulesError, parse_rules

if TYPE_CHECKING:
    from pathlib import Path

SITE = """\
version: 1
country: BE
targets:
  office-mobile: {number: "0470 00 00 01"}
  abroad: {number: "0033 6 12 34 56 78"}
  anna: {number: "+32480000002"}
routes:
  - name: family
    match: {to: "02 555 01 00", from: ["047*", "0480 00 00 02"]}
    steps: [{ring: anna}]
  - name: main-line
    match: {to: "025550100"}
    steps: [{ring: office-mobile}, {ring: abroad}]
"""


def rules(text: str = SITE) -> Rules:
    return parse_rules(textwrap.dedent(text), "rules.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        rules(text)
    return [str(problem) for problem in caught.value.problems]


@pytest.mark.parametrize(
    "sent",
    ["+3225550100", "025550100", "3225550100", "003225550100", "tel:+32-2-555-01-00",
     "sip:025550100@trunk.example.net;user=phone", "<sip:+3225550100@192.0.2.1>"],
)  # fmt: skip
def test_every_form_a_trunk_sends_is_the_same_number(sent: str) -> None:
    assert e164(sent, "BE") == "+3225550100"
    route = rules().route_for(sent, "+32499999999")
    assert route is not None
    assert route.name == "main-line"


def test_national_callers_match_national_patterns() -> None:
    parsed = rules()
    for caller in ("0470 12 34 56", "32470123456", "+32470123456", "0480000002"):
        route = parsed.route_for("025550100", caller)
        assert route is not None
        assert route.name == "family", caller


def test_numbers_in_the_rules_are_stored_as_e164() -> None:
    parsed = rules()
    assert parsed.target("office-mobile").address == "+32470000001"
    assert parsed.target("abroad").address == "+33612345678"
    assert parsed.public_numbers() == {"+3225550100"}
    assert parsed.routes[0].match.from_ == ("+3247*", "+32480000002")
    assert parsed.number("0470000001") == "+32470000001"
    assert parsed.number("anonymous") == "anonymous"


def test_a_trunk_prefix_in_brackets_is_not_dialled() -> None:
    # "+32 (0)470…" is how the number is printed on cards: the (0) is not dialled.
    text = SITE.replace('"0470 00 00 01"', '"+32 (0)470 00.00-01"')
    assert rules(text).target("office-mobile").address == "+32470000001"


def test_a_national_number_without_a_country_is_refused_at_its_line() -> None:
    text = SITE.replace("country: BE\n", "")
    found = problems(text)
    assert found[0] == (
        "rules.yaml:3: targets.office-mobile.number: '0470 00 00 01' is in national form: "
        "set country at the top of the rules (e.g. country: BE) to read it"
    )
    # office-mobile and both routes' to; callers are compared as written without a country
    assert len(found) == 3, found


@pytest.mark.parametrize(
    ("written", "words"),
    [('"+3247"', "'+3247' is not a phone number (too short or too long for its country)"),
     ('"0470"', "'0470' is not a phone number in BE")],
)  # fmt: skip
def test_impossible_numbers_are_refused_at_their_line(written: str, words: str) -> None:
    (problem,) = problems(SITE.replace('"0470 00 00 01"', written))
    assert problem == f"rules.yaml:4: targets.office-mobile.number: {words}"


def test_an_unknown_country_is_refused_at_its_line() -> None:
    found = problems(SITE.replace("country: BE", "country: XY"))
    assert found[0] == (
        "rules.yaml:2: country: unknown country 'XY' (use an ISO 3166 code like BE, DE, FR)"
    )


def test_without_a_country_international_forms_still_work() -> None:
    text = SITE.replace("country: BE\n", "").replace('"0470 00 00 01"', '"+32470000001"')
    text = text.replace('"0033 6 12 34 56 78"', '"0033612345678"')
    text = text.replace('"02 555 01 00"', '"+3225550100"')
    text = text.replace('"025550100"', '"0032 2 555 01 00"')
    text = text.replace('["047*", "0480 00 00 02"]', '["+3247*"]')
    parsed = rules(text)
    assert parsed.route_for("+32 2 555 01 00", "+32470123456").name == "family"  # type: ignore[union-attr]
    assert parsed.route_for("025550100", None) is None  # national: no country to read it in


def test_what_is_not_a_number_is_compared_as_written() -> None:
    assert number_key("anonymous", "BE") == "anonymous"
    assert number_key("+3247", "BE") == "+3247"  # a prefix, too short to be a number
    assert number_key("1234") == "1234"


@pytest.mark.parametrize(
    ("prefix", "region", "key"),
    [("047", "BE", "+3247"), ("+32 47", "BE", "+3247"), ("003247", None, "+3247"),
     ("06", "IT", "+3906"), ("3247", "BE", "3247"), ("047", None, "047")],
)  # fmt: skip
def test_prefixes_become_the_start_of_e164_numbers(
    prefix: str, region: str | None, key: str
) -> None:
    assert prefix_key(prefix, region) == key


@pytest.mark.parametrize(
    ("fmt", "home", "abroad"),
    [("e164", "+32470000001", "+33612345678"),
     ("national", "0470000001", "0033612345678"),
     ("international_00", "0032470000001", "0033612345678")],
)  # fmt: skip
def test_numbers_are_dialled_in_the_form_the_trunk_expects(
    fmt: str, home: str, abroad: str
) -> None:
    assert dial_form("+32470000001", fmt, "BE") == home  # type: ignore[arg-type]
    assert dial_form("+33612345678", fmt, "BE") == abroad  # type: ignore[arg-type]


def test_national_dialling_without_a_country_keeps_e164() -> None:
    assert dial_form("+32470000001", "national", None) == "+32470000001"


def test_explain_finds_the_route_for_a_national_number(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(SITE, encoding="utf-8")
    out = io.StringIO()
    assert explain(path, "025550100", "0499 99 99 99", None, False, out) == 0
    assert "route main-line: 1. ring office-mobile (+32470000001)" in out.getvalue()
    out = io.StringIO()
    assert explain(path, "025550199", None, None, False, out) == 1
    assert "+3225550199 is not a public number here (+3225550100); refused" in out.getvalue()


def test_explain_says_a_national_number_needs_a_country(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\ntargets: {anna: {number: '+32480000002'}}\n"
        "routes: [{name: main, match: {to: '+3225550100'}, steps: [{ring: anna}]}]\n",
        encoding="utf-8",
    )
    out = io.StringIO()
    assert explain(path, "025550100", None, None, False, out) == 1
    assert (
        "025550100 is not a public number here (+3225550100) (numbers without + are read "
        "only with a country in the rules); refused with 404"
    ) in out.getvalue()
