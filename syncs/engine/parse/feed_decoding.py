"""A feed's bytes into text: the one place that knows how portals encode their calendars.

Pure: no database, no HTTP, no Django. ``syncs.engine.fetch`` owns the bytes (and unpacks them); this
module turns them into text for the parser, and tells both of them what a body looks like.

What feeds send: UTF-8 with or without a BOM, the BOM sometimes twice (a file saved by one
program and exported by another); UTF-16 with its BOM (Outlook and Windows tools); and text in
Windows-1252 from old exporters, which is not valid UTF-8. Folding may split a UTF-8 character
between two lines (Airbnb folds at 75 octets in the middle of words), so lines are unfolded
before the bytes are decoded. Control characters (a NUL in a SUMMARY or a UID) have no meaning
in a calendar and PostgreSQL refuses a NUL in text: they are removed.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from syncs.clean_text import without_control_characters

# Longest first: the UTF-32 LE BOM begins with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# UTF-16 without a BOM still shows itself: "BE" of BEGIN with a zero byte beside each letter.
_BOMLESS_UTF16 = ((b"B\x00E\x00", "utf-16-le"), (b"\x00B\x00E", "utf-16-be"))
# A line break (CR, LF or CRLF, blank lines included, as icalendar reads them) followed by a space
# or a tab: the continuation of a folded line.
_FOLD = re.compile(rb"[\r\n]+[ \t]")
_TEXT_FOLD = re.compile(r"[\r\n]+[ \t]")
# The C0 controls and DEL as bytes; a C1 control in UTF-8 starts with 0xC2.
_C0_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
# How much of a body is enough to tell what it is.
_HEAD_BYTES = 4096

CALENDAR, EMPTY, HTML, JSON, OTHER = "calendar", "empty", "html", "json", "other"


@dataclass(frozen=True)
class DecodedFeed:
    text: str  # unfolded lines, no BOM, no control characters but tabs and line breaks
    encoding: str  # "utf-8", "utf-16-le", "windows-1252"...
    fallback: bool  # not valid in its encoding: read as Windows-1252
    control_characters: int  # how many were removed


def decode_feed(body: bytes) -> DecodedFeed:
    """The body as unfolded text; never fails (bytes no encoding explains become U+FFFD)."""
    encoding, start = _encoding(body)
    fallback = False
    if encoding == "utf-8":
        data = _unfold(body[start:].lstrip())
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text, encoding, fallback = data.decode("windows-1252", errors="replace"), "windows-1252", True
        # Most feeds have no control character at all: a look at the bytes is much cheaper.
        maybe_controls = fallback or b"\xc2" in data or len(data.translate(None, _C0_BYTES)) != len(data)
    else:
        text = _TEXT_FOLD.sub("", body[start:].decode(encoding, errors="replace").lstrip("\ufeff").lstrip())
        maybe_controls = True
    removed = 0
    if maybe_controls:
        text, removed = without_control_characters(text)
    return DecodedFeed(text=text, encoding=encoding, fallback=fallback, control_characters=removed)


def _unfold(data: bytes) -> bytes:
    """Folded lines joined again, before decoding (a fold may split a UTF-8 character)."""
    if b"\n\n" in data or b"\n\r" in data or b"\r\r" in data:
        return _FOLD.sub(b"", data)  # blank lines before a continuation: icalendar joins them too
    if b"\n" in data:
        return data.replace(b"\r\n ", b"").replace(b"\r\n\t", b"").replace(b"\n ", b"").replace(b"\n\t", b"")
    return data.replace(b"\r ", b"").replace(b"\r\t", b"")


def _encoding(body: bytes) -> tuple[str, int]:
    """The encoding the body announces (by its BOMs, or UTF-16's zero bytes), and where the text
    starts: after every UTF-8 BOM, however many."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            if encoding != "utf-8":
                return encoding, len(bom)
            start = len(bom)
            while body.startswith(codecs.BOM_UTF8, start):
                start += len(codecs.BOM_UTF8)
            return encoding, start
    head = body.lstrip()[:4]
    for marker, encoding in _BOMLESS_UTF16:
        if head.startswith(marker):
            return encoding, len(body) - len(body.lstrip())
    return "utf-8", 0


def sniff(body: bytes) -> str:
    """What the body is, from its first few kilobytes: CALENDAR, EMPTY (nothing but BOMs and
    blank space: Booking.com's empty calendar), HTML, JSON or OTHER."""
    encoding, start = _encoding(body)
    if encoding == "utf-8":
        rest = body[start:].lstrip()
        if not rest:
            return EMPTY
        text = rest[:_HEAD_BYTES].decode("utf-8", errors="replace")
    else:
        head = body[start : start + _HEAD_BYTES]
        text = head[: len(head) - len(head) % 4].decode(encoding, errors="replace").lstrip("\ufeff").lstrip()
        if not text:
            return EMPTY if len(body) - start <= _HEAD_BYTES else OTHER
    if text[:15].upper() == "BEGIN:VCALENDAR":
        return CALENDAR
    lowered = text[:1024].lower()
    if lowered.startswith("<!doctype html") or "<html" in lowered:
        return HTML
    if lowered.startswith(("{", "[")):
        return JSON
    return OTHER
