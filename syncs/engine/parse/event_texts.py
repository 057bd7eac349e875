"""Cut a calendar's text into the text of each event and the text around them, and name each
event's text by a digest, so that an event already read once is not parsed again.

A changed feed usually differs from the last one by one or two events; parsing the other
forty-odd again was most of a changed sync's time. The reading of an event whose dates are
days (not times) is a function of its own text, of the calendar around it (PRODID and so the
portal's labels), of the reading's settings (the labels, our export's UID domain), and of the
code that reads it. The digest covers all of these, so the same digest always means the same
reading. It leaves out one kind of line: a DTSTAMP in its plain UTC form with a real date and
time (``DTSTAMP:20261124T101010Z``), the moment the portal wrote the text, which Airbnb and
Booking.com set to the time of every fetch. No reading looks at it, and icalendar reads such a
line without error; a DTSTAMP written any other way stays in the digest. (Events with times are always parsed: their reading also depends on the time zone
database, which changes under us.)

Pure: no database, no HTTP, no Django. Works on the text ``ical._clean_lines`` gives back (CRLF
lines, no blank lines, ending with END:VCALENDAR). Whenever the text is not laid out in the
plain way that lets it be cut without doubt, ``split_events`` answers None and the whole calendar
is parsed as usual.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# Properties that tie events together (a series and its exceptions): there, an event's reading
# depends on other events, so nothing is reused. Checked on unfolded lines.
_SERIES_LINE = re.compile(r"^(?:RRULE|RDATE|EXRULE|EXDATE|RECURRENCE-ID)[;:]", re.IGNORECASE | re.MULTILINE)
_DIGEST_CHARS = 32  # 128 bits
# Year, month, day, hour, minute, second of a DTSTAMP in its plain UTC form.
_PLAIN_STAMP = re.compile(r"DTSTAMP:(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z")
_REFUSED = ("", "")


@dataclass(frozen=True)
class EventTexts:
    """A calendar cut in three: what comes before the events, each event, what comes after."""

    head: list[str]
    events: list[list[str]]
    tail: list[str]

    def text(self, *, keep: Collection[int] | None = None) -> str:
        """The calendar again, with only the events whose index is in ``keep`` (all by default)."""
        lines = list(self.head)
        for index, event in enumerate(self.events):
            if keep is None or index in keep:
                lines += event
        lines += self.tail
        return "\r\n".join(lines) + "\r\n"


def split_events(text: str) -> EventTexts | None:
    """The calendar cut into its top-level events, or None when it cannot be cut safely: more
    than one calendar, anything but the events between the first and the last event, a BEGIN or
    END line with parameters, a folded one, or repeating events."""
    if _SERIES_LINE.search(text.replace("\r\n ", "").replace("\r\n\t", "")):
        return None
    lines = text.split("\r\n")
    if lines[-1] == "":
        lines.pop()
    head: list[str] = []
    events: list[list[str]] = []
    tail: list[str] = []
    open_components: list[str] = []
    current: list[str] | None = None
    for position, line in enumerate(lines):
        structure = _structure(line)
        if structure is _REFUSED:
            return None
        if structure is not None and position + 1 < len(lines) and lines[position + 1][:1] in (" ", "\t"):
            return None  # a folded BEGIN or END line
        if structure == ("BEGIN", "VCALENDAR") and position > 0:
            return None
        if not open_components and structure != ("BEGIN", "VCALENDAR"):
            return None  # something outside the calendar
        if structure is not None and structure[0] == "BEGIN":
            open_components.append(structure[1])
            if structure[1] == "VEVENT" and len(open_components) == 2:
                if tail:
                    return None  # something other than events between two events
                current = []
                events.append(current)
        elif structure is not None:  # END
            if not open_components or open_components[-1] != structure[1]:
                return None
            open_components.pop()
        if current is not None:
            current.append(line)
            if structure == ("END", "VEVENT") and len(open_components) == 1:
                current = None
        elif events:
            tail.append(line)
        else:
            head.append(line)
    if open_components or not events:
        return None
    return EventTexts(head=head, events=events, tail=tail)


def _structure(line: str) -> tuple[str, str] | None:
    """("BEGIN" or "END", component name) for a plain BEGIN/END line, None for any other line,
    _REFUSED for a BEGIN or END line with parameters or spaces (odd enough not to guess)."""
    if line[:1] not in "BbEe":
        return None  # most lines: not worth splitting
    name, colon, value = line.partition(":")
    keyword = name.upper()
    if not colon or keyword.split(";")[0].strip() not in ("BEGIN", "END"):
        return None
    if keyword not in ("BEGIN", "END") or value != value.strip() or not value:
        return _REFUSED
    return (keyword, value.upper())


def event_digests(texts: EventTexts, *, reading: tuple) -> list[str]:
    """A digest per event: its text, the calendar around it, and ``reading``: the reading's
    settings (the property's zone, labels, UID domain) and the ``reader_version``."""
    around = hashlib.sha256()
    for part in (repr(reading), "\r\n".join(texts.head), "\r\n".join(texts.tail)):
        around.update(part.encode("utf-8", errors="surrogatepass"))
        around.update(b"\0")
    digests = []
    stamps: dict[str, bool] = {}  # a feed's events mostly share one stamp: each line judged once
    for event in texts.events:
        digest = around.copy()
        kept = [line for line in event if not (line.startswith("DTSTAMP:") and _is_plain_stamp(line, stamps))]
        digest.update("\r\n".join(kept).encode("utf-8", errors="surrogatepass"))
        digests.append(digest.hexdigest()[:_DIGEST_CHARS])
    return digests


def _is_plain_stamp(line: str, judged: dict[str, bool]) -> bool:
    """Whether ``line`` is a DTSTAMP in the plain UTC form whose date and time exist: what
    icalendar reads without an error (it builds the same ``datetime``). ``judged``: the lines
    judged before, with their answers."""
    if line not in judged:
        match = _PLAIN_STAMP.fullmatch(line)
        try:
            judged[line] = match is not None and bool(datetime(*(int(part) for part in match.groups()), tzinfo=UTC))
        except ValueError:
            judged[line] = False
    return judged[line]


def reader_version(*sources: str) -> str:
    """Names the code that reads events: the given source files (our parser, the portal labels,
    this module) and the libraries under them. Taken when the parser is imported, so that it
    names the code running, and any change gives every digest a new value: no reading made by
    other code is ever reused."""
    version = hashlib.sha256()
    for source in (*sources, __file__):
        version.update(Path(source).read_bytes())
    for library in ("icalendar", "x-wr-timezone"):
        try:
            version.update(f"{library} {importlib.metadata.version(library)}".encode())
        except importlib.metadata.PackageNotFoundError:
            version.update(f"{library} absent".encode())
    return version.hexdigest()
