"""Events read before are not parsed again, and that never changes what a feed says.

``parse_feed(body, known=...)`` must give exactly what ``parse_feed(body)`` gives, for every
feed and whatever readings it is handed from earlier versions of the feed. The oracle in these
tests is always a full reading with no memo. No Django, no database.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncs import portals
from syncs.engine.parse import event_texts, ical
from syncs.engine.parse.feed_decoding import _clean_lines
from syncs.engine.parse.ical import (
    FeedParseError,
    ParsedEvent,
    ParsedFeed,
    parse_feed,
)
from tests import feeds

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
ALL_FEEDS = sorted(FEEDS.glob("*.ics"))
TODAY = date(2026, 11, 24)
EVENT = re.compile(rb"BEGIN:VEVENT\r?\n.*?END:VEVENT\r?\n", re.DOTALL)


def read(body: bytes, known: dict[str, ParsedEvent] | None = None, **options) -> ParsedFeed:
    return parse_feed(body, today=TODAY, timezone="Europe/Madrid", known=known, **options)


def memo(feed: ParsedFeed) -> dict[str, ParsedEvent]:
    """What the sync keeps of a reading: its events, by the digest of their texts."""
    return {event.text_digest: event for event in feed.events if event.text_digest}


def as_compared(feed: ParsedFeed) -> tuple:
    """Everything a reading says, digests included (events compare without them)."""
    return (
        feed.prodid, feed.portal, feed.skipped, feed.warnings,
        [(event, event.text_digest) for event in feed.events],
    )


def reading_or_error(body: bytes, known=None):
    try:
        return as_compared(read(body, known))
    except FeedParseError as error:
        return (error.code, error.message)


def fifty_stays() -> bytes:
    first = date(2026, 12, 1)
    stays = [(f"stay{n}", first + timedelta(days=4 * n), first + timedelta(days=4 * n + 3)) for n in range(50)]
    return feeds.airbnb(*stays[:40], blocked=tuple(stays[40:]))


def cut(body: bytes) -> tuple[bytes, list[bytes], bytes]:
    """Head, events and tail of a feed, cut with a plain regex (not with the code under test)."""
    events = EVENT.findall(body)
    if not events:
        return body, [], b""
    start, end = body.index(events[0]), body.rindex(events[-1]) + len(events[-1])
    return body[:start], events, body[end:]


@pytest.mark.parametrize("path", ALL_FEEDS, ids=[p.name for p in ALL_FEEDS])
def test_every_feed_read_again_with_its_own_readings_says_the_same(path):
    body = path.read_bytes()
    try:
        first = read(body)
    except FeedParseError:
        return  # nothing read, nothing to reuse: the error itself is tested in test_ical
    again = read(body, memo(first))
    assert as_compared(again) == as_compared(first)
    assert again.events_reused == len(memo(first))


def test_a_portal_feed_with_one_stay_moved_parses_only_that_stay():
    body = fifty_stays()
    first = read(body)
    assert len(memo(first)) == 50, "every date-only event with a UID can be reused"
    moved = body.replace(b"DTEND;VALUE=DATE:20261204", b"DTEND;VALUE=DATE:20261205")
    assert moved != body

    again = read(moved, memo(first))

    assert again.events_reused == 49
    assert as_compared(again) == as_compared(read(moved))
    assert next(e for e in again.events if e.uid == "stay0@airbnb.com").end == date(2026, 12, 5)


def test_a_feed_stamped_anew_at_each_fetch_parses_no_event_again():
    """Booking.com and Airbnb set every DTSTAMP to the moment of the fetch."""
    stays = [(f"c{n}", date(2026, 12, 1) + timedelta(days=3 * n), date(2026, 12, 3) + timedelta(days=3 * n)) for n in range(20)]
    first = read(feeds.booking(*stays, stamp="20261124T101010Z"))
    later = feeds.booking(*stays, stamp="20261124T111213Z")

    again = read(later, memo(first))

    assert again.events_reused == 20
    assert as_compared(again) == as_compared(read(later))


@pytest.mark.parametrize("stamp", ["20261131T101010Z", "20261124T101060Z", "20261124T101010", "20261124"])
def test_a_stamp_icalendar_cannot_read_or_not_in_plain_utc_form_is_read_again(stamp):
    """Only a plain, real UTC moment is left out of an event's digest: any other DTSTAMP may
    make a reading differ (an unreadable line is counted in the warnings)."""
    stay = ("c1", date(2026, 12, 1), date(2026, 12, 3))
    first = read(feeds.booking(stay, stamp="20261124T101010Z"))
    later = feeds.booking(stay, stamp=stamp)

    again = read(later, memo(first))

    assert again.events_reused == 0
    assert as_compared(again) == as_compared(read(later))


def test_a_known_reading_is_taken_as_the_reading_of_its_text():
    """The memo is trusted, not checked: the digest alone decides, so it must name everything
    that can change a reading (the next tests)."""
    body = fifty_stays()
    first = read(body)
    known = memo(first)
    digest = first.events[0].text_digest
    known[digest] = ParsedEvent(
        uid=first.events[0].uid, start=first.events[0].start, end=first.events[0].end,
        kind=first.events[0].kind, summary="Taken from the memo", text_digest=digest,
    )
    assert read(body, known).events[0].summary == "Taken from the memo"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"timezone": "UTC"}, id="property zone"),
        pytest.param({"labels": {"reserved": ["Reserved"], "blocked": [], "tentative": []}}, id="labels"),
        pytest.param({"own_uid_domain": "other.example"}, id="export domain"),
    ],
)
def test_readings_are_not_shared_across_reading_settings(change):
    body = fifty_stays()
    options = {"timezone": "Europe/Madrid", "labels": None, "own_uid_domain": "channelmgr.example"}
    first = parse_feed(body, today=TODAY, **options)
    again = parse_feed(body, today=TODAY, known=memo(first), **{**options, **change})
    assert again.events_reused == 0


def test_readings_are_not_shared_when_the_calendar_around_the_events_changes():
    body = fifty_stays()
    first = read(body)
    renamed = body.replace(b"Hosting Calendar 0.8.8", b"Hosting Calendar 0.9.0")
    assert read(renamed, memo(first)).events_reused == 0


def test_readings_made_by_other_code_are_not_reused(monkeypatch):
    body = fifty_stays()
    first = read(body)
    monkeypatch.setattr(ical, "READER_VERSION", event_texts.reader_version(__file__))
    assert read(body, memo(first)).events_reused == 0


@pytest.mark.parametrize(
    "body, why",
    [
        (feeds.airbnb(("a", date(2026, 12, 1), date(2026, 12, 3))).replace(
            b"SUMMARY:Reserved", b"SUMMARY:Reserved\r\nRRULE:FREQ=YEARLY;COUNT=2"), "a repeating event"),
        (feeds.airbnb(("a", date(2026, 12, 1), date(2026, 12, 3)), ("b", date(2026, 12, 5), date(2026, 12, 6)))
         .replace(b"END:VEVENT\r\nBEGIN:VEVENT", b"END:VEVENT\r\nX-WR-CALNAME:between\r\nBEGIN:VEVENT"),
         "a calendar property between two events"),
        (feeds.airbnb(("a", date(2026, 12, 1), date(2026, 12, 3))).replace(b"BEGIN:VEVENT", b"BEGIN;X=1:VEVENT"),
         "a BEGIN line with a parameter"),
        (feeds.airbnb(("a", date(2026, 12, 1), date(2026, 12, 3))) * 2, "two calendars"),
    ],
)
def test_calendars_that_cannot_be_cut_without_doubt_are_read_whole(body, why):
    text = _clean_lines(body.decode(), [])
    assert event_texts.split_events(text) is None, why
    first = read(body) if why != "two calendars" else None
    if first is not None:
        assert memo(first) == {}
        assert as_compared(read(body, memo(first))) == as_compared(read(body))


def test_a_folded_begin_line_is_unfolded_before_the_calendar_is_cut():
    # The parser unfolds lines before anything else, so a BEGIN line folded in the middle is
    # an ordinary one by the time the calendar is cut: its events are reused like any other.
    body = fifty_stays().replace(b"BEGIN:VEVENT", b"BEGIN:VEV\r\n ENT")
    first = read(body)
    assert len(memo(first)) == 50
    again = read(body, memo(first))
    assert again.events_reused == 50
    assert as_compared(again) == as_compared(first)
    assert first.events == read(fifty_stays()).events


def test_events_with_times_are_always_parsed():
    """Their reading depends on the time zone database too, which changes under us."""
    body = feeds.airbnb(("a", date(2026, 12, 1), date(2026, 12, 3))).replace(
        b"DTSTART;VALUE=DATE:20261201", b"DTSTART:20261201T150000Z"
    )
    assert [e.text_digest for e in read(body).events] == [""]


def test_the_events_text_is_cut_as_the_feed_lays_it_out():
    body = fifty_stays()
    texts = event_texts.split_events(_clean_lines(body.decode(), []))
    head, events, tail = cut(body)
    assert "\r\n".join(texts.head) + "\r\n" == head.decode()
    assert ["\r\n".join(event) + "\r\n" for event in texts.events] == [e.decode() for e in events]
    assert "\r\n".join(texts.tail) + "\r\n" == tail.decode()
    assert texts.text() == _clean_lines(body.decode(), [])
    assert texts.text(keep={3}) == (head + events[3] + tail).decode()


REUSABLE_FEEDS = [
    fifty_stays(),
    (FEEDS / "booking_1.ics").read_bytes(),
    (FEEDS / "vrbo_abritel_1.ics").read_bytes(),
    (FEEDS / "airbnb_1.ics").read_bytes(),
    (FEEDS / "own_vrbo_english_lf.ics").read_bytes(),
    (FEEDS / "quirk_end_before_start.ics").read_bytes(),
    (FEEDS / "own_google_owner_stays_recurring.ics").read_bytes(),
    (FEEDS / "google_5_x_wr_timezone_testcase.ics").read_bytes(),
    (FEEDS / "quirk_x_wr_timezone_floating_manual.ics").read_bytes(),
    (FEEDS / "outlook_3_o365_blank_lines.ics").read_bytes(),
    (FEEDS / "booking_4_2026_real_with_organizer.ics").read_bytes(),
    feeds.booking(
        ("c1", date(2026, 12, 1), date(2026, 12, 3)), ("c1", date(2026, 12, 1), date(2026, 12, 3)),
        ("c2", date(2026, 12, 1), date(2026, 12, 9)),
    ),
]


def _edit(event: bytes, edit: int) -> bytes:
    """One of the ways a portal changes an event between two fetches."""
    if edit == 1:  # the stay moves by a night
        return re.sub(rb"(DTEND[^:\r\n]*:\d{7})(\d)", lambda m: m.group(1) + str((int(m.group(2)) + 1) % 10).encode(), event)
    if edit == 2:  # it is cancelled
        return event.replace(b"END:VEVENT", b"STATUS:CANCELLED\r\nEND:VEVENT")
    if edit == 3:  # it loses its UID
        return re.sub(rb"UID:[^\r\n]*\r?\n", b"", event)
    if edit == 4:  # a line icalendar cannot read
        return event.replace(b"END:VEVENT", b"DTSTAMP:not a date\r\nEND:VEVENT")
    if edit == 5:  # another label
        return re.sub(rb"SUMMARY:[^\r\n]*", b"SUMMARY:Blocked", event)
    if edit == 6:  # stamped with the moment of the fetch
        return re.sub(rb"DTSTAMP:[^\r\n]*", b"DTSTAMP:20261125T235959Z", event)
    if edit == 7:  # stamped with a moment that does not exist
        return re.sub(rb"DTSTAMP:[^\r\n]*", b"DTSTAMP:20260230T120000Z", event)
    return event


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(range(len(REUSABLE_FEEDS))),
    st.lists(st.tuples(st.integers(min_value=0, max_value=60), st.integers(min_value=0, max_value=7)), max_size=12),
    st.booleans(),
)
def test_any_later_version_of_a_feed_reads_the_same_with_the_earlier_readings(feed_index, picks, new_head):
    """Events reordered, dropped, repeated, moved, cancelled, stripped of their UID, broken or
    stamped anew; the calendar renamed: the memo of the first version never changes the second's reading."""
    body = REUSABLE_FEEDS[feed_index]
    head, events, tail = cut(body)
    if not events:
        return
    later = head + b"".join(_edit(events[index % len(events)], edit) for index, edit in picks) + tail
    if new_head:
        later = later.replace(b"VERSION:2.0", b"VERSION:2.0\r\nX-WR-CALNAME:Renamed", 1)
    try:
        known = memo(read(body))
    except FeedParseError:
        return
    assert reading_or_error(later, known) == reading_or_error(later)


def test_the_reader_version_names_the_parser_its_labels_and_libraries():
    assert event_texts.reader_version(ical.__file__, portals.__file__) == ical.READER_VERSION
    assert event_texts.reader_version(ical.__file__) != ical.READER_VERSION
