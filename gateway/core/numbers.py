"""Phone numbers in the forms trunks and admins write them, read as E.164.

Trunks send the called and calling numbers in many forms: E.164
(``+3225550100``), national (``025550100``), international without the ``+``
(``3225550100``) or with the ``00`` prefix (``0032…``), inside ``tel:`` URIs or
``sip:025550100@host;user=phone``. Routes, the call log and the feed speak
E.164 only; the rules' ``country`` is the region a number without ``+`` is read
in. The trunk may want numbers dialled in another form (``dial_form``).

Pure: Google's libphonenumber metadata (the ``phonenumbers`` package), no I/O.
"""

from __future__ import annotations

import functools
import re
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat

DialFormat = Literal["e164", "national", "international_00"]
DIAL_FORMATS: tuple[DialFormat, ...] = ("e164", "national", "international_00")

_SEPARATORS = re.compile(r"[\s.\-()]")
_DIGITS = re.compile(r"\+?\d+")
# RFC 3966 tel: and RFC 3261 19.1.1 sip:user@host: the number is the user part.
_URI_USER = re.compile(r"<?\s*(?:sips?|tel):([^@;>?]+)", re.IGNORECASE)


def plain(text: str) -> str:
    """``text`` as routes compared numbers before E.164: a URI's user part,
    separators removed, a leading ``00`` read as ``+``."""
    uri = _URI_USER.match(text.strip())
    number = _SEPARATORS.sub("", uri.group(1) if uri else text)
    return "+" + number[2:] if number.startswith("00") else number


def is_region(code: str) -> bool:
    """Whether ``code`` is an ISO 3166 region with a numbering plan (``BE``, ``DE``)."""
    return code in phonenumbers.SUPPORTED_REGIONS


@functools.lru_cache(maxsize=4096)
def e164(text: str, region: str | None = None) -> str | None:
    """The phone number ``text`` in E.164, or None when it cannot be one.

    Args:
        text: as written or sent: ``+32 2 555 01 00``, ``025550100``,
            ``3225550100``, ``0032…``, ``tel:…``, ``sip:025550100@host;user=phone``.
        region: where a number without ``+`` is dialled (the rules' ``country``);
            None: only international forms are read.

    Returns:
        ``+3225550100``, or None: not digits, or no number of that length exists.
    """
    number = plain(text)
    if not _DIGITS.fullmatch(number):
        return None
    if number.startswith("+"):
        found = _parsed(number, None)
        possible = found is not None and phonenumbers.is_possible_number(found)
        return _formatted(found) if found is not None and possible else None
    if region is None:
        return None
    # A number valid as national wins; then one valid with its country code
    # but no "+" (3225550100); then a national one merely of a possible length
    # (a range newer than the metadata).
    national, international = _parsed(number, region), _parsed("+" + number, None)
    for found, test in ((national, phonenumbers.is_valid_number),
                        (international, phonenumbers.is_valid_number),
                        (national, phonenumbers.is_possible_number)):  # fmt: skip
        if found is not None and test(found):
            return _formatted(found)
    return None


def number_key(text: str, region: str | None = None) -> str:
    """How routes compare a number: E.164 when it is one, else as ``plain``."""
    return e164(text, region) or plain(text)


def prefix_key(prefix: str, region: str | None = None) -> str:
    """A caller prefix (``+3247``, ``047``, ``003247``) as the start of E.164 numbers.

    A national prefix (``047`` in BE) becomes ``+3247``; in a country whose
    numbers keep their leading 0 (IT) ``06`` becomes ``+3906``. Another prefix
    stays as written (``plain``).
    """
    number = plain(prefix)
    if number.startswith("+") or region is None or not _DIGITS.fullmatch(number):
        return number
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    code = phonenumbers.country_code_for_region(region)
    national = metadata.national_prefix if metadata is not None else None
    if national and number.startswith(national):
        return f"+{code}{number[len(national):]}"
    return number if national else f"+{code}{number}"


def dial_form(number: str, dial_format: DialFormat, region: str | None) -> str:
    """An E.164 number as the trunk wants it dialled.

    ``national``: ``0470000001`` for a number in ``region``, ``0033612345678``
    for one abroad (what a phone in ``region`` dials); without a region the
    number stays E.164. ``international_00``: ``0032470000001``.
    """
    if dial_format == "e164" or not number.startswith("+"):
        return number
    if dial_format == "international_00":
        return "00" + number[1:]
    found = _parsed(number, None)
    if region is None or found is None:
        return number
    return re.sub(r"[^\d+]", "", phonenumbers.format_out_of_country_calling_number(found, region))


def _parsed(number: str, region: str | None) -> PhoneNumber | None:
    try:
        return phonenumbers.parse(number, region)
    except NumberParseException:
        return None


def _formatted(number: PhoneNumber) -> str:
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)
