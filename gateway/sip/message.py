"""Reading the few things we need from a raw SIP message pjsua hands us.

pjsua2 exposes a received message as its whole text (``SipRxData.wholeMsg``);
these functions pull out a status code, a header value or a URI's user part
without a SIP parser of our own: pjsip has already parsed and validated the
message before any callback sees it, we only read fields it does not expose.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import unquote

from gateway.core.presentation import CallerId

# RFC 3261 7.3.3: compact forms of the headers we read.
_COMPACT = {"content-type": "c", "from": "f", "to": "t", "call-id": "i"}
_STATUS_LINE = re.compile(r"^SIP/2\.0\s+(\d{3})\b")
_URI_USER = re.compile(r"<?\s*(?:sips?|tel):([^@;>?\s]+)", re.IGNORECASE)
_DISPLAY = re.compile(r'^\s*(?:"((?:[^"\\]|\\.)*)"|([^"<]*?))\s*<')
_BLANK_LINE = re.compile(r"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n[ \t]+")


def head_of(raw: str) -> str:
    """The start line and headers, without the body."""
    blank = _BLANK_LINE.search(raw)
    return raw[: blank.start()] if blank else raw


def status_of(raw: str) -> int | None:
    """The status code of a response, or None for a request."""
    match = _STATUS_LINE.match(raw)
    return int(match.group(1)) if match else None


def header(raw: str, name: str) -> str | None:
    """The first value of a header (long or compact name), unfolded.

    Args:
        raw: the whole message text.
        name: the header's long name, any case.

    Returns:
        The value with surrounding white space stripped, or None.
    """
    # One search of the head, not a walk over its lines: this runs several
    # times between a final response arriving and the next leg's INVITE.
    blank = _BLANK_LINE.search(raw)
    end = blank.start() if blank else len(raw)
    start = raw.find("\n", 0, end)  # the start line is not a header
    if start < 0:
        return None
    found = _header_line(name.lower()).search(raw, start, end)
    if found is None:
        return None
    # RFC 3261 7.3.1: a line starting with white space continues the previous one.
    return _FOLD.sub(" ", found.group(1)).strip()


@lru_cache(maxsize=64)
def _header_line(name: str) -> re.Pattern[str]:
    """A header line (and its continuation lines) by its long or compact name."""
    names = [re.escape(name)]
    if name in _COMPACT:
        names.append(re.escape(_COMPACT[name]))
    return re.compile(
        rf"\n(?:{'|'.join(names)})[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE
    )


def has_sdp(raw: str) -> bool:
    """True when the message carries an SDP body (early media on a 183)."""
    content_type = header(raw, "Content-Type") or ""
    parts = re.split(r"\r?\n\r?\n", raw, maxsplit=1)
    body = parts[1] if len(parts) > 1 else ""
    return "application/sdp" in content_type.lower() and "m=" in body


def uri_user(value: str | None) -> str | None:
    """The user part of the first sip:/sips:/tel: URI in a header value."""
    if not value:
        return None
    match = _URI_USER.search(value)
    return match.group(1) if match else None


def source_ip(address: str) -> str:
    """The IP of ``1.2.3.4:5060`` or ``[::1]:5060`` (pjsua's srcAddress)."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    return address.rsplit(":", 1)[0] if address.count(":") == 1 else address


def display_name(value: str | None) -> str | None:
    """The display name of a name-addr: ``"Alice B" <sip:…>`` or ``Alice <sip:…>``."""
    match = _DISPLAY.match(value or "")
    if match is None:
        return None
    quoted, token = match.groups()
    name = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else token
    return name.strip() or None


def caller_id(raw: str) -> CallerId:
    """Who an INVITE from the trunk says is calling (RFC 3261 From, RFC 3325, RFC 3323)."""
    from_ = header(raw, "From")
    from_user = uri_user(from_)
    number = uri_user(header(raw, "P-Asserted-Identity")) or from_user
    privacy = tuple(
        v.strip().lower() for v in re.split(r"[;,]", header(raw, "Privacy") or "") if v.strip()
    )
    return CallerId(
        number=unquote(number) if number else None,
        name=display_name(from_),
        privacy=privacy,
        from_user=unquote(from_user) if from_user else None,
    )


_STATIC_AUDIO = {"0": "PCMU", "8": "PCMA", "9": "G722", "18": "G729", "3": "GSM"}


def offered_codecs(raw: str) -> tuple[str, ...]:
    """The audio codecs an SDP offer lists, in its order of preference (``PCMA``, ``PCMU`` …).

    RFC 3264 5.1: the offerer lists its formats most preferred first; a
    static payload type needs no ``rtpmap`` (RFC 3551 6), a dynamic one does.
    """
    parts = re.split(r"\r?\n\r?\n", raw, maxsplit=1)
    body = parts[1] if len(parts) > 1 else ""
    audio = re.search(r"^m=audio \S+ \S+ ([\d ]+)", body, re.MULTILINE)
    if audio is None:
        return ()
    names = dict(_STATIC_AUDIO)
    names.update(re.findall(r"^a=rtpmap:(\d+) ([\w.-]+)/", body, re.MULTILINE))
    return tuple(dict.fromkeys(names[pt] for pt in audio.group(1).split() if pt in names))
