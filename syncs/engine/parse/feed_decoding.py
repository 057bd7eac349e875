"""A feed's bytes into text: the one place that knows how portals encode their calendars.

Pure: no database, no HTTP, no Django. ``syncs.engine.fetch`` owns the bytes (and unpacks them); this
module tells both of them what a body looks like, and turns it into the text the parser reads
(``feed_text``): refused when it is not a calendar, is cut off, or holds more than a feed can,
before icalendar sees it. ``FeedParseError`` is the parser's one exception.

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
from dataclasses import dataclass, field

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

# The work of reading a feed is bounded before icalendar sees it: its cost grows with the
# content lines, with the values and parameters in them (each comma or semicolon may start one:
# a line of two million CATEGORIES took 15 s) and with the components. Real feeds stay far
# below: 5,000 Airbnb events are about 50,000 lines and 20,000 separators.
MAX_LINES = 200_000
MAX_SEPARATORS = 300_000
MAX_COMPONENTS_PER_EVENT = 4  # a VEVENT with its alarms, and the zones around them
_TEXT_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class FeedParseError(Exception):
    """The only exception that leaves the parser for a problem of the feed.

    A Celery soft time limit and MemoryError are not the feed's problem to classify: they pass
    through every handler here untouched.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        # "not_ical" | "parse_error" | "too_large" | "too_complex" | "too_slow"
        self.code = code
        self.message = message

    def __reduce__(self):
        return FeedParseError, (self.code, self.message)


@dataclass(frozen=True)
class Notice:
    """Something the operator should know about a feed that was read all the same, as a code
    and parameters (``syncs.explain.describe_notice`` words it): kept on the sync run."""

    code: str  # "duplicate_uids" | "decoded_as_windows_1252" | "control_characters" | "far_end_cut"
    params: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"code": self.code, "params": self.params}


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


def feed_text(body: bytes, *, max_events: int, warnings: list[str]) -> tuple[str, list[Notice]] | None:
    """The body as the text icalendar is to read (unfolded, decoded, its blank lines dropped,
    its doubled parameter semicolons repaired), with what the operator should know of its
    encoding; None for an empty calendar. Raises FeedParseError for a body that is not a
    calendar, is cut off, or holds more than a feed can (checked before icalendar sees it)."""
    kind = sniff(body)
    if kind == EMPTY:
        # Booking.com answers an empty calendar with a 0-byte body: that is news, not an error.
        return None
    if kind != CALENDAR:
        raise _not_ical(kind)
    decoded = decode_feed(body)
    notices = _decoding_notices(decoded, warnings)
    text = _clean_lines(decoded.text, warnings)
    _check_size(text, max_events)
    return text, notices


def _not_ical(kind: str) -> FeedParseError:
    if kind == HTML:
        message = (
            "The address returned a web page (HTML), not a calendar — often a login page: "
            "the link was copied wrong."
        )
    elif kind == JSON:
        message = (
            "The address returned JSON data, not a calendar: it is probably not the "
            "portal's calendar link."
        )
    else:
        message = "The address did not return a calendar (it does not start with BEGIN:VCALENDAR)."
    return FeedParseError("not_ical", message)


def _decoding_notices(decoded: DecodedFeed, warnings: list[str]) -> list[Notice]:
    notices = []
    if decoded.fallback:
        notices.append(Notice("decoded_as_windows_1252"))
        warnings.append("The calendar is not valid UTF-8: it was read as Windows-1252.")
    if decoded.control_characters:
        notices.append(Notice("control_characters", {"count": decoded.control_characters}))
        warnings.append(f"Removed {decoded.control_characters} control character(s) from the calendar.")
    return notices


def _clean_lines(text: str, warnings: list[str]) -> str:
    """Drop blank lines, repair doubled parameter semicolons, and refuse a cut-off feed."""
    lines = [line for line in _TEXT_LINE_BREAK.split(text) if line.strip()]
    if ";;" in text or ";:" in text:  # else no line has an empty parameter (most feeds)
        lines = [_repair_parameters(line) for line in lines]
    # The last END:VCALENDAR, searched from the end: it is the last line of most feeds.
    end = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].strip().upper() == "END:VCALENDAR"), None)
    trailing = lines[end + 1 :] if end is not None else []
    if end is None or any(line.lstrip().upper().startswith("BEGIN:") for line in trailing):
        # A feed cut off mid-way would read as a wave of cancellations: never accept it.
        raise FeedParseError(
            "parse_error",
            "The calendar is incomplete (it does not end with END:VCALENDAR): "
            "the download was probably cut off.",
        )
    if trailing:
        # Caches and proxies sometimes append a comment after the calendar: the calendar is whole.
        warnings.append(f"Ignored {len(trailing)} line(s) after the end of the calendar.")
    return "\r\n".join(lines[: end + 1]) + "\r\n"


def _repair_parameters(line: str) -> str:
    """Drop empty parameters: icalendar silently drops a line like ``DTSTART;;VALUE=DATE:...``."""
    if line[:1] in (" ", "\t"):
        return line  # a folded continuation: value text, not parameters
    name_and_parameters, colon, value = line.partition(":")
    if ";;" not in name_and_parameters and not name_and_parameters.endswith(";"):
        return line
    return ";".join(part for part in name_and_parameters.split(";") if part) + colon + value


def _check_size(text: str, max_events: int) -> None:
    """Refuse, before icalendar parses it, a calendar whose reading would cost more than any
    real feed's. Lines are unfolded by now, so a folded BEGIN line counts like any other; the
    count of events made from what icalendar parsed (_check_components) is the final word."""
    upper = text.upper()
    count = upper.count("\nBEGIN:VEVENT")
    if count > max_events:
        raise FeedParseError("too_large", f"The calendar has {count} events; the limit is {max_events}.")
    lines = text.count("\n")
    separators = text.count(",") + text.count(";")
    components = upper.count("\nBEGIN:")
    if lines > MAX_LINES or separators > MAX_SEPARATORS or components > (max_events + 1) * MAX_COMPONENTS_PER_EVENT:
        raise FeedParseError(
            "too_complex",
            f"The calendar holds more than a feed can ({lines} lines, {separators} values, "
            f"{components} components).",
        )
