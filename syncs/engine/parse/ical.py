"""Turn the bytes of an iCal feed into the nights it takes.

Pure: no database, no HTTP, no Django. The sync task hands us a body and the property's time
zone; we hand back events as nights (``docs/domain.md``, "Dates are nights") plus what we skipped
and why. Hostile or broken feeds are normal here, so the one exception that leaves this module is
``FeedParseError``; an event we cannot read is skipped and counted instead of sinking the feed.
"""

from __future__ import annotations

import calendar
import dataclasses
import functools
import hashlib
import re
import time as clock
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

import icalendar
import recurring_ical_events
import x_wr_timezone
from billiard.exceptions import SoftTimeLimitExceeded

from syncs import horizon, portals
from syncs.engine.parse import event_texts, feed_decoding
from syncs.engine.parse.feed_decoding import FeedParseError, Notice

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 8  # VCALENDAR > VEVENT > VALARM is three: deeper nesting is not a calendar
# What a whole reading may take (the parse, zones, rules); checked between events and series,
# whose own work is bounded by the limits here. Well inside the worker's soft time limit.
PARSE_SECONDS = 15.0
# A series listing more dates than this is not expanded (it would only be cut to the budget).
MAX_RDATES = 5000
ONE_DAY = timedelta(days=1)
SUMMARY_MAX_CHARS = 255  # what a block keeps (Block.summary)
UID_MAX_CHARS = 500  # and Block.uid
# dateutil walks from DTSTART to the end of the query, period by period and, inside a period,
# day by day; beyond this many steps a rule costs more than a tenth of a second (and
# FREQ=SECONDLY since 2000 never ends). Daily rules may start as far back as the 1750s.
MAX_RULE_STEPS = 100_000
# A rule whose filters no day can pass makes dateutil walk to the year 9999 (about 2.5 s for
# FREQ=DAILY). The day check below catches the usual ones (February 30th); this budget stops
# a feed from stacking up the rest (BYSETPOS or BYWEEKNO nobody can meet).
MAX_EXPANSION_SECONDS = 2.0
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
# A broken date, duration or rule changes which nights an event takes, so such an event is
# skipped; a broken line elsewhere (an X- property, a bad DTSTAMP) changes no night.
TIMING_PROPERTIES = frozenset({"DTSTART", "DTEND", "DURATION", "RRULE"})
FREQUENCY_SECONDS = {
    "SECONDLY": 1,
    "MINUTELY": 60,
    "HOURLY": 3600,
    "DAILY": 86400,
    "WEEKLY": 7 * 86400,
    "MONTHLY": 28 * 86400,
    "YEARLY": 365 * 86400,
}
TIME_PARTS_SECONDS = (("BYHOUR", 3600), ("BYMINUTE", 60), ("BYSECOND", 1))

# Which code reads events, as loaded now: part of every event text's digest (event_texts).
READER_VERSION = event_texts.reader_version(__file__, portals.__file__)

_URL = re.compile(r"(?:https?://|www\.|mailto:)\S*", re.IGNORECASE)
# Four or more digits, possibly split by the separators people put in phone numbers.
_PHONE_DIGITS = re.compile(r"\+?\d(?:[\s().\-/]*\d){3,}")
_UNPARSED_LINE = re.compile(r"could not be parsed into parts: '([A-Za-z0-9-]+)")


@dataclass(frozen=True)
class ParsedEvent:
    uid: str
    start: date  # first night
    end: date  # exclusive: the check-out day
    kind: str  # portals.RESERVED | portals.BLOCKED | portals.TENTATIVE
    summary: str  # for the operator's eyes only: no phone digits, no links
    recurrence_id: str | None = None
    # Names the text this event was read from, with all that can change its reading
    # (``event_texts``): the same digest later means the same event, with no parse. Empty when
    # the event's reading depends on more than that (times, a series, a line icalendar could
    # not read, no UID).
    text_digest: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True)
class SkippedEvent:
    uid: str | None
    reason: str


# Skip reasons that mean the portal sent a broken event (counted as invalid on the run); the
# others (cancelled, outside the dates we read, our own export) are the feed's normal content.
INVALID_REASONS = frozenset({"end_before_start", "invalid_component", "missing_start", "invalid_rule"})


@dataclass
class ParsedFeed:
    prodid: str | None
    portal: str | None
    events: list[ParsedEvent] = field(default_factory=list)
    skipped: list[SkippedEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Events taken from ``known`` rather than parsed again.
    events_reused: int = 0
    notices: list[Notice] = field(default_factory=list)


# Never turned into a skipped event or a parse error: our own verdict on the feed, and the
# signals of a process that must stop (a broad ``except Exception`` once recorded a soft time
# limit as a successful empty sync).
_PASS_THROUGH = (FeedParseError, MemoryError, SoftTimeLimitExceeded)


class _Budget:
    """The time a reading may take, checked between pieces of bounded work."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires = clock.monotonic() + seconds

    def check(self) -> None:
        if clock.monotonic() > self.expires:
            raise FeedParseError(
                "too_slow", f"The calendar could not be read within {self.seconds:g} seconds."
            )


def known_readings(stored: Iterable) -> dict[str, ParsedEvent]:
    """The blocks we hold (``syncs.engine.diff.StoredBlock``) as the readings of the feed texts
    they were read from, by text digest: the parser takes them instead of parsing those texts
    again (``ParsedEvent.text_digest``)."""
    return {
        block.text_digest: ParsedEvent(
            uid=block.uid, start=block.start, end=block.end, kind=block.kind, summary=block.summary,
            text_digest=block.text_digest,
        )
        for block in stored
        if block.text_digest
    }


def looks_like_ical(body: bytes) -> bool:
    """Whether the body starts like a calendar (after BOMs and blank lines, in any encoding)."""
    return feed_decoding.sniff(body) == feed_decoding.CALENDAR


def parse_feed(
    body: bytes,
    *,
    timezone: str = "UTC",
    labels: dict[str, list[str]] | None = None,
    today: date | None = None,
    horizon_back_days: int = 30,
    horizon_ahead_days: int = 730,
    max_events: int = 5000,
    max_occurrences: int = 1000,
    own_uid_domain: str | None = None,
    known: Mapping[str, ParsedEvent] | None = None,
    deadline: float | None = None,
) -> ParsedFeed:
    """Read a feed body into nights; raise FeedParseError when it is not a usable calendar.

    ``known`` maps text digests to the events read from those texts before (``text_digest`` of
    earlier results): such events are taken as they are instead of being parsed again. The
    result is the same with or without it. ``deadline``: seconds the reading may take, at most
    PARSE_SECONDS, after which it fails as "too_slow" (never as an empty calendar).
    """
    budget = _Budget(PARSE_SECONDS if deadline is None else min(deadline, PARSE_SECONDS))
    if len(body) > MAX_BODY_BYTES:
        raise FeedParseError(
            "too_large",
            f"The calendar is too large ({len(body) / 1024 / 1024:.1f} MiB; the limit is "
            f"{MAX_BODY_BYTES // 1024 // 1024} MiB).",
        )
    warnings: list[str] = []
    read = feed_decoding.feed_text(body, max_events=max_events, warnings=warnings)
    if read is None:
        return ParsedFeed(prodid=None, portal=None)
    text, notices = read
    try:
        # Which events' texts were read before (the same digest is the same reading): those
        # are taken from ``known`` rather than parsed again.
        reading = (READER_VERSION, timezone, labels, own_uid_domain)
        texts = event_texts.split_events(text)
        digests = event_texts.event_digests(texts, reading=reading) if texts is not None else None
        budget.check()
        zone = _property_zone(timezone, warnings)
        today = today or datetime.now(zone).date()
        reader = _FeedReader(
            zone=zone,
            labels=labels,
            window=(
                today - timedelta(days=horizon_back_days),
                today + timedelta(days=horizon_ahead_days),
            ),
            nights=(horizon.earliest_night(today), horizon.latest_checkout(today)),
            max_events=max_events,
            max_occurrences=max_occurrences,
            own_uid_domain=own_uid_domain,
            warnings=warnings,
            notices=notices,
            budget=budget,
        )
        return reader.read_text(text, texts=texts, digests=digests, known=known or {})
    except _PASS_THROUGH:
        raise
    except Exception as exc:
        # icalendar, x-wr-timezone and recurring-ical-events raise an open set of types on
        # hostile input (ValueError, TypeError, OverflowError, KeyError, RecursionError...): the
        # contract is that callers only ever see FeedParseError.
        raise FeedParseError("parse_error", "The calendar could not be read.") from exc


def _check_components(calendar: icalendar.Calendar, max_events: int) -> None:
    """The event cap on what icalendar actually built, and no nesting deeper than a calendar's
    (walked without recursion: libraries that recurse would fail on it)."""
    events = 0
    pending = [(calendar, 1)]
    while pending:
        component, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise FeedParseError("too_complex", f"The calendar nests components more than {MAX_DEPTH} deep.")
        events += component.name == "VEVENT"
        pending.extend((child, depth + 1) for child in component.subcomponents)
    if events > max_events:
        raise FeedParseError("too_large", f"The calendar has {events} events; the limit is {max_events}.")


def _parse_calendar(text: str) -> icalendar.Calendar:
    try:
        return icalendar.Calendar.from_ical(text)
    except _PASS_THROUGH:
        raise
    except Exception as exc:
        raise FeedParseError(
            "parse_error", "The calendar could not be read: it is not valid iCalendar."
        ) from exc


@functools.cache
def _known_zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _zone_named(name: str) -> tzinfo | None:
    # Checking the name first avoids ZoneInfo's file lookups for names like "../../etc".
    return zoneinfo.ZoneInfo(name) if name in _known_zone_names() else None


def _property_zone(name: str, warnings: list[str]) -> tzinfo:
    zone = _zone_named(name)
    if zone is None:
        warnings.append(f"Unknown property time zone '{name}': used UTC")
        return zoneinfo.ZoneInfo("UTC")
    return zone


def _first(value):
    """A property given twice comes back as a list; the first one wins."""
    return value[0] if isinstance(value, list) else value


def _text(value) -> str:
    value = _first(value)
    return "" if value is None else str(value).strip()


class _SeriesSkipped(Exception):
    """A repeating event we decline to expand: the reason code, and what to tell the operator."""

    def __init__(self, reason: str, warning: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.warning = warning


class _FeedReader:
    """Reads one parsed calendar; holds what we found, skipped and warned about on the way."""

    def __init__(
        self,
        *,
        zone: tzinfo,
        labels: dict[str, list[str]] | None,
        window: tuple[date, date],
        nights: tuple[date, date],
        max_events: int,
        max_occurrences: int,
        own_uid_domain: str | None,
        warnings: list[str],
        notices: list[Notice],
        budget: _Budget,
    ):
        self.zone = zone
        self.labels = labels
        self.window_start, self.window_end = window
        # Nights read at all: the first night and the last check-out day (syncs.horizon).
        self.earliest_night, self.latest_checkout = nights
        self.max_events = max_events
        self.notices = notices
        self.budget = budget
        self.max_occurrences = max_occurrences
        self.occurrences_left = max_occurrences
        self.own_suffix = f"@{own_uid_domain}".lower() if own_uid_domain else None
        self.warnings = warnings
        self.skipped: list[tuple[int | None, SkippedEvent]] = []  # with the event's text index
        # (key, event, text index, whether it is an occurrence of a series)
        self.found: list[tuple[tuple, ParsedEvent, int | None, bool]] = []
        self.unknown_zones: list[str] = []
        self.unreadable_lines = 0
        self.expansion_seconds = 0.0
        # When the calendar could be cut into its events' texts: their digests, the events
        # taken from earlier readings by text index, and the texts that must not be reused.
        self.digests: list[str] | None = None
        self.reused: dict[int, ParsedEvent] = {}
        self.not_reusable: set[int] = set()
        self.text_indexes: dict[int, int] = {}  # id(component) -> index of its text

    @functools.cached_property
    def horizon_days(self) -> list[date]:
        # One day of margin each side: a series' own zone may be a day off the property's.
        return [
            self.window_start - ONE_DAY + timedelta(days=offset)
            for offset in range((self.window_end - self.window_start).days + 3)
        ]

    def read_text(
        self, text: str, *, texts: event_texts.EventTexts | None, digests: list[str] | None,
        known: Mapping[str, ParsedEvent],
    ) -> ParsedFeed:
        """Read the calendar, parsing only the events whose texts (``texts``, named by
        ``digests``) have not been read before; all of it when it could not be cut."""
        if texts is None:
            return self.read(_parse_calendar(text))
        reused = {
            index: dataclasses.replace(known[digest], text_digest=digest)
            for index, digest in enumerate(digests)
            if digest in known
        }
        unread = [index for index in range(len(texts.events)) if index not in reused]
        calendar = _parse_calendar(texts.text(keep=set(unread)) if reused else text)
        top = [c for c in calendar.subcomponents if c.name == "VEVENT"]
        if len(top) != len(unread):
            # icalendar saw other events than the cut did: read the whole text, reusing nothing.
            return self.read(calendar if not reused else _parse_calendar(text))
        self.digests, self.reused = digests, reused
        # Components in the order of their texts (no mark in the text: an X- property costs
        # icalendar about 50 µs per event to parse).
        self.text_indexes = {id(component): index for component, index in zip(top, unread, strict=True)}
        return self.read(calendar)

    def read(self, calendar: icalendar.Calendar) -> ParsedFeed:
        self.budget.check()
        _check_components(calendar, self.max_events - len(self.reused))
        prodid = _text(calendar.get("PRODID")) or None
        portal = portals.portal_for_prodid(prodid)
        if self.labels is None:
            self.labels = portal.labels if portal else {}
        # Only top-level events count: a VEVENT nested in another component is not in the feed.
        events = [c for c in calendar.subcomponents if c.name == "VEVENT" and self._screen(c)]
        self.budget.check()
        standard = self._to_standard(calendar, events)
        for before, after in zip(events, standard, strict=True):  # x-wr-timezone copies some
            if after is not before and id(before) in self.text_indexes:
                self.text_indexes[id(after)] = self.text_indexes[id(before)]
        for group in _group_by_uid(standard):
            self.budget.check()
            if _is_series(group):
                self._read_series(group)
            else:
                for component in group:
                    self._take(component, "RECURRENCE-ID" in component)
        found = self.found
        if self.reused:
            # In feed order, as a full reading finds them, so that the same duplicate wins.
            found = sorted(
                [*found, *(((e.uid, None), e, index, False) for index, e in self.reused.items())],
                key=lambda entry: entry[2],
            )
        events = self._deduplicate(self._within_dates(found))
        warnings = self.warnings + [
            f"Unknown time zone '{name}': used {self.zone}" for name in self.unknown_zones
        ]
        if self.unreadable_lines:
            warnings.append(f"Ignored {self.unreadable_lines} unreadable line(s) in events.")
        return ParsedFeed(
            prodid=prodid,
            portal=portal.slug if portal else None,
            events=events,
            skipped=self._skipped_in_order(),
            warnings=list(dict.fromkeys(warnings)),
            events_reused=len(self.reused),
            notices=self.notices,
        )

    def _within_dates(self, found: list) -> list:
        """The events within the nights we read: those that ended before yesterday or start
        past the last check-out day we keep are skipped (occurrences of a series quietly: the
        series is one event of the feed), and those running past it are cut there.

        Done on every event, read or taken from ``known``, because it depends on the day."""
        kept, cut = [], 0
        for key, event, index, expanded in found:
            if event.end <= self.earliest_night or event.start >= self.latest_checkout:
                if not expanded:
                    reason = "in_the_past" if event.end <= self.earliest_night else "too_far_ahead"
                    self.skipped.append((index, SkippedEvent(event.uid, reason)))
                continue
            if event.end > self.latest_checkout:
                # No digest: the cut depends on the day, not on the event's text alone.
                event = dataclasses.replace(event, end=self.latest_checkout, text_digest="")
                cut += 1
            kept.append((key, event, index, expanded))
        if cut:
            self.notices.append(Notice("far_end_cut", {"count": cut, "day": self.latest_checkout.isoformat()}))
            self.warnings.append(
                f"{cut} event(s) ran past {self.latest_checkout.isoformat()}: their nights were kept up to that day."
            )
        return kept

    def _deduplicate(self, found: list) -> list[ParsedEvent]:
        """One event per key, the first in feed order; then sorted by date for stable output.

        Events that share a UID (without RECURRENCE-ID) but not their nights are different stays
        that a portal numbered badly: each keeps its nights, under the UID plus its own dates,
        which is the same at every fetch of the same feed. Their reading depends on the other
        events, so none of them is taken from ``known`` next time (no digest)."""
        unique: dict[tuple, ParsedEvent] = {}
        for key, event, _index, _expanded in found:
            if key[1] is None and key in unique and (unique[key].start, unique[key].end) != (event.start, event.end):
                key = (event.uid, None, event.start, event.end)  # another stay under the same UID
            unique.setdefault(key, event)
        shared = {key[0] for key in unique if len(key) == 4}
        if shared:
            stays = 0
            for key, event in list(unique.items()):
                if key[1] is None and event.uid in shared:
                    unique[key] = dataclasses.replace(
                        event,
                        uid=_kept_uid(f"{event.uid}#{event.start:%Y%m%d}-{event.end:%Y%m%d}"),
                        text_digest="",
                    )
                    stays += 1
            self.notices.append(Notice("duplicate_uids", {"uids": len(shared), "events": stays}))
            self.warnings.append(
                f"{stays} events shared {len(shared)} UID(s) with other nights: each kept its own nights."
            )
        return sorted(unique.values(), key=lambda e: (e.start, e.end, e.uid, e.recurrence_id or ""))

    def _text_index(self, component) -> int | None:
        """Which event text (``event_texts``) the component was read from, if the calendar was cut."""
        return self.text_indexes.get(id(component))

    def _skipped_in_order(self) -> list[SkippedEvent]:
        """In feed order when the calendar was cut into texts: a reading that parses only some
        of them then lists what it skipped as a full reading does (events sharing a UID are
        otherwise read group by group)."""
        if self.digests is None:
            return [skipped for _index, skipped in self.skipped]
        return [skipped for _index, skipped in sorted(self.skipped, key=lambda entry: entry[0])]

    # Screening runs on the components exactly as parsed, before any time zone work: the
    # copies that x-wr-timezone makes lose icalendar's list of errors.

    def _screen(self, event: icalendar.Event) -> bool:
        uid = _text(event.get("UID")) or None
        reason = self._screen_reason(event, uid)
        if reason:
            self.skipped.append((self._text_index(event), SkippedEvent(uid, reason)))
            return False
        if event.errors:
            # Its unreadable lines are counted in the warnings of every reading.
            self.not_reusable.add(self._text_index(event))
        self._pin_unknown_zones(event)
        return True

    def _screen_reason(self, event: icalendar.Event, uid: str | None) -> str | None:
        if uid and self.own_suffix and uid.lower().endswith(self.own_suffix):
            return "own_export"  # our own export came back: an echo, not a booking
        broken = [_broken_property(name, message) for name, message in event.errors]
        self.unreadable_lines += sum(1 for name in broken if name not in TIMING_PROPERTIES)
        if TIMING_PROPERTIES.intersection(broken):
            return "invalid_component"
        if "DTSTART" not in event:
            return "missing_start"
        return None

    def _pin_unknown_zones(self, event: icalendar.Event) -> None:
        """Put times whose TZID nobody could resolve into the property's zone, and say so.

        icalendar leaves such times naive; x-wr-timezone would then take them for floating
        times and move them into X-WR-TIMEZONE, which is not what the domain rules ask for.
        """
        for name in ("DTSTART", "DTEND"):
            prop = _first(event.get(name))
            value = getattr(prop, "dt", None)
            if not isinstance(value, datetime) or value.tzinfo is not None:
                continue
            tzid = prop.params.get("TZID")
            if tzid:
                prop.dt = value.replace(tzinfo=self.zone)
                self.unknown_zones.append(tzid)

    def _to_standard(self, calendar: icalendar.Calendar, events: list) -> list:
        """Give floating times the calendar's X-WR-TIMEZONE (Google), if it names a real zone."""
        name = _text(calendar.get("X-WR-TIMEZONE"))
        if not name:
            return events
        zone = _zone_named(name)
        if zone is None:
            self.warnings.append(f"Unknown time zone '{name}': used {self.zone}")
            return events
        holder = icalendar.Calendar()
        holder.subcomponents = events
        return x_wr_timezone.to_standard(holder, timezone=zone).subcomponents

    def _read_component(self, component, in_series: bool) -> ParsedEvent | SkippedEvent:
        uid = _text(component.get("UID")) or None
        if _is_cancelled(component):
            return SkippedEvent(uid, "cancelled")
        try:
            nights = _nights(*_bounds(component), self.zone)
        except _PASS_THROUGH:
            raise
        except Exception:
            # Values icalendar accepted but calendar arithmetic cannot use (year 1 minus an
            # offset, a period where a date belongs...): lose the event, not the feed.
            return SkippedEvent(uid, "invalid_component")
        if nights is None:
            return SkippedEvent(uid, "end_before_start")
        first, last = nights
        summary = _clean_summary(component.get("SUMMARY"))
        return ParsedEvent(
            uid=_kept_uid(uid) if uid else _derived_uid(first, last, summary),
            start=first,
            end=last,
            kind=portals.classify_summary(summary, self.labels),
            summary=summary,
            recurrence_id=first.isoformat() if in_series else None,
        )

    def _take(self, component, in_series: bool, *, expanded: bool = False) -> None:
        result = self._read_component(component, in_series)
        if isinstance(result, SkippedEvent):
            self.skipped.append((self._text_index(component), result))
            return
        # Feeds without UIDs repeat one date under several summaries (Wimdu): there, the
        # nights and the kind are what identify an event.
        index = self._text_index(component)
        if _text(component.get("UID")):
            key = (result.uid, result.recurrence_id)
            reusable = index is not None and index not in self.not_reusable
            if self.digests is not None and reusable and _days_only(component):
                result = dataclasses.replace(result, text_digest=self.digests[index])
        else:
            key = (result.start, result.end, result.kind)
        self.found.append((key, result, index, expanded))

    # Repeating events: expanded inside the horizon only, within a feed-wide budget.

    def _read_series(self, group: list) -> None:
        masters = [c for c in group if "RECURRENCE-ID" not in c]
        uid = _text(masters[0].get("UID")) or None
        started = clock.monotonic()
        try:
            occurrences, capped = self._expand(group, masters)
        except _SeriesSkipped as skip:
            self.skipped.append((None, SkippedEvent(uid, skip.reason)))
            self.warnings.extend(filter(None, [skip.warning]))
            return
        except _PASS_THROUGH:
            raise
        except Exception:
            # A rule dateutil or recurring-ical-events cannot follow: lose this series only.
            self.skipped.append((None, SkippedEvent(uid, "invalid_component")))
            return
        finally:
            self.expansion_seconds += clock.monotonic() - started
        if capped:
            self.skipped.append((None, SkippedEvent(uid, "too_many_occurrences")))
            self.warnings.append(self._cut_short(masters[0]))
        elif not occurrences:
            self.skipped.append((None, SkippedEvent(uid, "outside_horizon")))
        for occurrence in occurrences:
            self._take(occurrence, True, expanded=True)

    def _expand(self, group: list, masters: list) -> tuple[list, bool]:
        """The occurrences inside the horizon, at most what is left of the feed's budget."""
        self._check_series(masters)
        group = [c if "RECURRENCE-ID" in c else self._without_idle_rules(c) for c in group]
        masters = [c for c in group if "RECURRENCE-ID" not in c]
        query_end, capped = self._query_end(masters)
        if _steps_walked(masters, query_end) > MAX_RULE_STEPS:
            raise _SeriesSkipped(
                "too_many_occurrences",
                f"The repeating event '{_clean_summary(masters[0].get('SUMMARY'))}' repeats "
                "too often since it started to be read: it was ignored.",
            )
        holder = icalendar.Calendar()
        holder.subcomponents = group
        query_start = datetime.combine(self.window_start, time())
        occurrences = recurring_ical_events.of(holder).between(query_start, query_end)
        if len(occurrences) > self.occurrences_left:
            occurrences, capped = occurrences[: self.occurrences_left], True
        self.occurrences_left -= len(occurrences)
        return occurrences, capped

    def _check_series(self, masters: list) -> None:
        if any(_is_cancelled(master) for master in masters):
            raise _SeriesSkipped("cancelled")  # a cancelled master cancels every occurrence
        if any(_interval(rule) < 1 for master in masters for rule in _rules(master)):
            # dateutil repeats DTSTART forever on INTERVAL=0: an invalid rule, whose nights
            # nobody can tell.
            raise _SeriesSkipped(
                "invalid_rule",
                f"The repeating event '{_clean_summary(masters[0].get('SUMMARY'))}' has an invalid "
                "rule (INTERVAL below 1): it was ignored.",
            )
        if sum(_date_count(master) for master in masters) > MAX_RDATES:
            raise _SeriesSkipped(
                "too_many_occurrences",
                f"The repeating event '{_clean_summary(masters[0].get('SUMMARY'))}' lists more than "
                f"{MAX_RDATES} dates: it was ignored.",
            )
        if any(_nights(*_bounds(master), self.zone) is None for master in masters):
            raise _SeriesSkipped("end_before_start")
        if self.occurrences_left <= 0:
            raise _SeriesSkipped("too_many_occurrences", self._cut_short(masters[0]))
        if self.expansion_seconds > MAX_EXPANSION_SECONDS:
            raise _SeriesSkipped(
                "too_many_occurrences",
                f"Stopped reading repeating events after {MAX_EXPANSION_SECONDS:g} seconds: "
                "their rules are too costly to follow.",
            )

    def _without_idle_rules(self, master):
        """The master without the rules that match no day of the horizon.

        Such a rule adds nothing here, and dateutil would walk to the year 9999 looking for a
        match; DTSTART and RDATE still count, as recurring-ical-events reads them.
        """
        rules = _rules(master)
        useful = [rule for rule in rules if _can_match(rule, self.horizon_days)]
        if len(useful) == len(rules):
            return master
        master = master.copy()
        del master["RRULE"]
        if useful:
            master["RRULE"] = useful
        return master

    def _query_end(self, masters: list) -> tuple[datetime, bool]:
        """Where to stop asking for occurrences, and whether that cuts the horizon short.

        Only the stretch that can hold the occurrences we may still take is asked for, so a
        FREQ=SECONDLY rule never builds millions of occurrences before we count them.
        """
        horizon_end = datetime.combine(self.window_end + ONE_DAY, time())
        spacing = min(
            (_min_spacing_seconds(rule) for master in masters for rule in _rules(master)),
            default=None,
        )
        if spacing is None:
            return horizon_end, False  # RDATE only: no more occurrences than the feed lists
        # Naive wall-clock times: recurring-ical-events reads them in the series' own zone.
        first = min(_wall_clock(master["DTSTART"].dt) for master in masters)
        budget_start = max(datetime.combine(self.window_start, time()), first)
        budget_seconds = spacing * self.occurrences_left
        if budget_seconds >= (horizon_end - budget_start).total_seconds():
            return horizon_end, False
        return budget_start + timedelta(seconds=budget_seconds), True

    def _cut_short(self, master) -> str:
        return (
            f"The repeating event '{_clean_summary(master.get('SUMMARY'))}' was cut short: "
            f"a feed may hold at most {self.max_occurrences} occurrences of repeating events."
        )


def _steps_walked(masters: list, query_end: datetime) -> float:
    """How many periods (or days, for periods of a day or more) dateutil walks from DTSTART to
    the end of the query: it skips none of them."""
    return max(
        (
            (query_end - _wall_clock(master["DTSTART"].dt)).total_seconds()
            / min(_period_seconds(rule), 86400)
            for master in masters
            for rule in _rules(master)
        ),
        default=0,
    )


def _can_match(rule, days: list[date]) -> bool:
    """Whether the rule can start on one of these days, as far as cheap checks can tell."""
    if rule.get("BYWEEKNO") and _text(rule.get("FREQ")).upper() != "YEARLY":
        return False  # RFC 5545 allows BYWEEKNO with FREQ=YEARLY only
    positions = rule.get("BYSETPOS") or ()
    if positions and not any(1 <= abs(p) <= _set_size_bound(rule) for p in positions):
        return False  # BYSETPOS=2 on a set that never holds two starts
    return _matches_a_day(rule, days)


def _set_size_bound(rule) -> int:
    """At most how many starts one period of the rule holds: the set BYSETPOS picks from."""
    frequency = _text(rule.get("FREQ")).upper()
    expands_days = any(rule.get(part) for part in ("BYDAY", "BYMONTHDAY", "BYYEARDAY", "BYWEEKNO"))
    days = {
        "WEEKLY": len(rule.get("BYDAY") or ()) or 1,
        "MONTHLY": 31 if expands_days else 1,
        "YEARLY": 366 if expands_days else len(rule.get("BYMONTH") or ()) or 1,
    }.get(frequency, 1)
    return days * _starts_per_period(rule)


def _matches_a_day(rule, days: list[date]) -> bool:
    """Whether one of these days passes the rule's day filters; every occurrence must pass
    BYMONTH, BYMONTHDAY, BYYEARDAY and the weekday of BYDAY, whatever the frequency."""
    months = {int(month) for month in rule.get("BYMONTH") or ()}
    month_days = set(rule.get("BYMONTHDAY") or ())
    year_days = set(rule.get("BYYEARDAY") or ())
    weekdays = {WEEKDAYS.index(day.weekday) for day in rule.get("BYDAY") or ()}
    return any(_passes(day, months, month_days, year_days, weekdays) for day in days)


def _passes(
    day: date, months: set[int], month_days: set[int], year_days: set[int], weekdays: set[int]
) -> bool:
    if months and day.month not in months:
        return False
    if weekdays and day.weekday() not in weekdays:
        return False
    month_length = calendar.monthrange(day.year, day.month)[1]
    if month_days and not {day.day, day.day - month_length - 1} & month_days:
        return False
    year_day = day.timetuple().tm_yday
    year_length = 366 if calendar.isleap(day.year) else 365
    return not year_days or bool({year_day, year_day - year_length - 1} & year_days)


def _wall_clock(value) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.combine(value, time())


def _broken_property(name: str | None, message: str) -> str:
    """The property an icalendar error is about.

    A line icalendar cannot even split (``DTEND;X="unclosed:...``) is reported without a
    name and the property silently vanishes; its name is at the start of the quoted line.
    """
    if name:
        return name.upper()
    quoted = _UNPARSED_LINE.search(message)
    return quoted.group(1).upper() if quoted else ""


def _group_by_uid(events: list) -> list[list]:
    """Events sharing a UID, in feed order; an event without a UID stands alone."""
    groups: dict[object, list] = {}
    for event in events:
        groups.setdefault(_text(event.get("UID")) or id(event), []).append(event)
    return list(groups.values())


def _is_series(group: list) -> bool:
    return any(
        "RECURRENCE-ID" not in event and ("RRULE" in event or "RDATE" in event) for event in group
    )


def _is_cancelled(component) -> bool:
    # TRANSP is deliberately not read: Google marks all-day events "free", and operators use
    # them to block dates.
    return _text(component.get("STATUS")).upper() == "CANCELLED"


def _rules(master) -> list:
    rules = master.get("RRULE")
    if rules is None:
        return []
    return rules if isinstance(rules, list) else [rules]


def _frequency_seconds(rule) -> int:
    frequency = _text(rule.get("FREQ")).upper()
    if frequency not in FREQUENCY_SECONDS:
        raise ValueError(f"unknown FREQ {frequency!r}")
    return FREQUENCY_SECONDS[frequency]


def _interval(rule) -> int:
    interval = _first(rule.get("INTERVAL"))
    return 1 if interval is None else int(interval)


def _date_count(master) -> int:
    """How many dates the master's RDATE lines list."""
    rdates = master.get("RDATE")
    if rdates is None:
        return 0
    return sum(len(getattr(value, "dts", ())) for value in (rdates if isinstance(rdates, list) else [rdates]))


def _period_seconds(rule) -> int:
    return _frequency_seconds(rule) * max(_interval(rule), 1)


def _starts_per_period(rule) -> int:
    """How many times of day one day (or one shorter period) of the rule holds.

    The time of day comes from DTSTART; each BYHOUR/BYMINUTE/BYSECOND part finer than the
    frequency multiplies it (coarser ones only filter).
    """
    frequency = _frequency_seconds(rule)
    starts = 1
    for part, unit in TIME_PARTS_SECONDS:
        if unit < frequency:
            starts *= max(len(rule.get(part) or ()), 1)
    return starts


def _min_spacing_seconds(rule) -> float:
    """A lower bound on the time between two starts: a rule of a day or longer starts at
    most _starts_per_period times a day."""
    return min(_period_seconds(rule), 86400) / _starts_per_period(rule)


def _bounds(component) -> tuple[date, date | None]:
    """DTSTART and the end as given (DTEND, or DTSTART + DURATION, or None)."""
    start = component["DTSTART"].dt
    if "DTEND" in component:
        return start, component["DTEND"].dt
    if "DURATION" in component:
        duration = component["DURATION"].dt
        if not isinstance(duration, timedelta):
            raise ValueError(f"DURATION is not a duration: {duration!r}")
        if isinstance(start, datetime):
            return start, start + duration
        # On a date only whole days count: P2D is two nights, PT3H still takes the night.
        return start, start + timedelta(days=duration.days)
    return start, None


def _nights(start, end, zone: tzinfo) -> tuple[date, date] | None:
    """(first night, check-out day) in the property's zone; None if the end is before the start."""
    first = _local_day(start, zone)
    if end is None:
        return first, first + ONE_DAY
    both_times = isinstance(start, datetime) and isinstance(end, datetime)
    if both_times and _in_zone(end, zone) < _in_zone(start, zone):
        return None
    last = _local_day(end, zone)
    if last < first:
        return None
    # A check-out at 11:00 frees that day; an event inside one day still takes its night.
    return first, max(last, first + ONE_DAY)


def _in_zone(value: datetime, zone: tzinfo) -> datetime:
    # A naive time is floating: it means the property's wall clock.
    return value.astimezone(zone) if value.tzinfo else value.replace(tzinfo=zone)


def _local_day(value, zone: tzinfo) -> date:
    if isinstance(value, datetime):
        return _in_zone(value, zone).date()
    if isinstance(value, date):
        return value
    raise ValueError(f"not a date: {value!r}")


def _clean_summary(value) -> str:
    """SUMMARY without guest data: first line only, no links, no phone digits, no longer than a
    block keeps (a longer one would differ from its block at every reading)."""
    lines = _text(value).splitlines()
    text = _PHONE_DIGITS.sub(" ", _URL.sub(" ", lines[0] if lines else ""))
    return " ".join(text.split()).strip(" -:,;/")[:SUMMARY_MAX_CHARS].rstrip()


def _kept_uid(uid: str) -> str:
    """The UID as a block can keep it: one too long for the column (a broken feed) keeps its
    start and a digest of the whole, the same at every fetch."""
    if len(uid) <= UID_MAX_CHARS:
        return uid
    return uid[: UID_MAX_CHARS - 17] + "#" + hashlib.sha256(uid.encode()).hexdigest()[:16]


def _derived_uid(start: date, end: date, summary: str) -> str:
    """A key for an event without UID that stays the same from one fetch to the next."""
    normalised = " ".join(summary.split()).casefold()
    digest = hashlib.sha1(f"{start.isoformat()}|{end.isoformat()}|{normalised}".encode())
    return "derived-" + digest.hexdigest()[:16]


def _days_only(component) -> bool:
    """Whether the event's bounds are days, not times: then no time zone takes part in its
    reading."""
    start = getattr(_first(component.get("DTSTART")), "dt", None)
    end = getattr(_first(component.get("DTEND")), "dt", None) if "DTEND" in component else start
    return all(isinstance(value, date) and not isinstance(value, datetime) for value in (start, end))
