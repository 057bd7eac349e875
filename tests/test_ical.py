"""Behaviour of syncs.engine.parse.ical: feed bytes in, nights out.

The real feeds in tests/fixtures/feeds are copies of /work/shared/feeds/real (guest names and
phone numbers already replaced there); files named own_* were written for these tests.
No Django, no database: run with ``pytest -p no:django``.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncs.engine.fetch import body_fingerprint
from syncs.engine.parse import feed_decoding, ical
from syncs.engine.parse.ical import (
    FeedParseError,
    ParsedFeed,
    looks_like_ical,
    parse_feed,
)
from syncs.portals import BLOCKED, KINDS, RESERVED, TENTATIVE

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
TODAY = date(2027, 3, 1)
# A bounded rule finishes far inside the parser's own deadline (ical.PARSE_SECONDS), which a
# rule that loops would reach instead; the margin keeps a loaded CI machine from failing it.
QUICKLY = ical.PARSE_SECONDS / 3


def feed(name: str) -> bytes:
    return (FEEDS / name).read_bytes()


# A day when each real feed was current: nights before yesterday or years ahead are not read.
FETCHED_ON = {
    "airbnb_1.ics": date(2022, 8, 1),
    "airbnb_5_2026_excerpt.ics": date(2026, 8, 1),
    "booking_1.ics": date(2025, 4, 1),
    "vrbo_abritel_1.ics": date(2019, 12, 1),
    "homeaway_2015_excerpt.ics": date(2015, 9, 1),
    "wimdu_2015_excerpt.ics": date(2015, 12, 1),
    "wubook_2015_excerpt.ics": date(2015, 10, 1),
    "google_1_public_holidays.ics": date(2021, 1, 1),
    "quirk_x_wr_timezone_floating_manual.ics": date(2021, 9, 1),
    "outlook_1_o365_windows_tzid_no_vtimezone.ics": date(2024, 4, 1),
    "outlook_2_o365_undefined_custom_tzid.ics": date(2024, 4, 1),
    "quirk_double_semicolon_param.ics": date(2014, 4, 1),
    "quirk_zero_size_event.ics": date(2019, 3, 1),
    "calendarlabs_1_dtend_equals_dtstart.ics": date(2025, 12, 1),
}


def read_real(name: str, **options) -> ParsedFeed:
    """A real feed read as on a day it was current."""
    return parse_feed(feed(name), **{"today": FETCHED_ON[name], **options})


def calendar(*events: str, header: str = "PRODID:-//Test//Test//EN") -> bytes:
    """A CRLF calendar around event bodies given as LF text (one property per line)."""
    parts = ["BEGIN:VCALENDAR", "VERSION:2.0", header]
    for event in events:
        parts += ["BEGIN:VEVENT", *event.strip().splitlines(), "END:VEVENT"]
    parts.append("END:VCALENDAR")
    return ("\r\n".join(parts) + "\r\n").encode()


def nights(result: ParsedFeed) -> list[tuple[date, date]]:
    return [(event.start, event.end) for event in result.events]


def by_uid(result: ParsedFeed, uid: str):
    (event,) = [e for e in result.events if e.uid == uid]
    return event


def reasons(result: ParsedFeed) -> list[str]:
    return [skip.reason for skip in result.skipped]


# -- real feeds give the nights their portal meant --


def test_it_reads_airbnb_reservations_as_reserved_and_host_blocks_as_blocked():
    result = read_real("airbnb_1.ics")

    assert result.portal == "airbnb"
    assert result.prodid == "-//Airbnb Inc//Hosting Calendar 0.8.8//EN"
    stay = by_uid(result, "1418fb94e984-8c79f32c389eb94bda0c2dba727de2dc@airbnb.com")
    assert (stay.start, stay.end, stay.kind, stay.summary) == (
        date(2022, 8, 16),
        date(2022, 8, 20),
        RESERVED,
        "Reserved",
    )
    block = by_uid(result, "6fec1092d3fa-df519e93ccc5b78ed808249e509eeb61@airbnb.com")
    assert (block.start, block.end, block.kind, block.summary) == (
        date(2023, 2, 15),
        date(2023, 8, 20),
        BLOCKED,
        "Airbnb (Not available)",
    )
    assert len(result.events) == 4
    assert result.skipped == [] and result.warnings == []


def test_it_reads_the_2025_airbnb_format_with_dtstamp():
    result = read_real("airbnb_5_2026_excerpt.ics")

    (stay,) = result.events
    assert (stay.start, stay.end, stay.kind) == (date(2026, 8, 24), date(2026, 8, 30), RESERVED)
    assert result.portal == "airbnb"


def test_it_never_keeps_the_reservation_link_or_phone_digits_of_airbnb_descriptions():
    for name in ("airbnb_1.ics", "airbnb_5_2026_excerpt.ics"):
        for event in read_real(name).events:
            text = repr(event)
            assert "HM" not in text and "airbnb.com/hosting" not in text
            assert not any(digits in text for digits in ("2656", "4367", "0882"))


def test_it_reads_booking_closures_as_blocked_with_the_unescaped_prodid():
    result = read_real("booking_1.ics")

    assert result.prodid == "-//admin.booking.com, b.v.//NONSGML v1.0//EN"
    assert result.portal == "booking"
    assert len(result.events) == 7
    closure = by_uid(result, "2c5831ea13795c2dbf85b0cdf795a2c5@booking.com")
    assert (closure.start, closure.end, closure.kind, closure.summary) == (
        date(2025, 11, 1),
        date(2026, 3, 16),
        BLOCKED,
        "CLOSED - Not available",
    )
    single = by_uid(result, "ab8907e00fb0089a06e5acfdea101250@booking.com")
    assert (single.start, single.end) == (date(2025, 4, 8), date(2025, 4, 9))


def test_it_reads_a_booking_closure_ending_on_a_leap_day_and_ignores_the_organizer():
    result = parse_feed(feed("booking_4_2026_real_with_organizer.ics"))

    closure = by_uid(result, "cccc9999dddd0000eeee1111ffff2222@booking.com")
    assert (closure.start, closure.end, closure.kind) == (
        date(2027, 8, 31),
        date(2028, 2, 29),
        BLOCKED,
    )
    assert "booking.com" not in closure.summary


def test_it_treats_a_zero_byte_body_as_an_empty_calendar():
    for body in (feed("booking_3_empty_body.ics"), b"", b"  \r\n\n", b"\xef\xbb\xbf\r\n"):
        result = parse_feed(body)
        assert result == ParsedFeed(prodid=None, portal=None, events=[], skipped=[], warnings=[])


def test_it_refuses_a_booking_excerpt_that_lacks_end_vcalendar():
    with pytest.raises(FeedParseError) as caught:
        parse_feed(feed("booking_5_2026_curl_excerpt.ics"))
    assert caught.value.code == "parse_error"
    assert "cut off" in caught.value.message


def test_it_reads_vrbo_reservations_blocks_and_tentative_holds_in_french():
    result = read_real("vrbo_abritel_1.ics")

    assert result.portal == "vrbo"
    stay = by_uid(result, "6f49cda7-479e-454b-a6a3-39fa7feee5ed")
    assert (stay.start, stay.end, stay.kind, stay.summary) == (
        date(2019, 12, 24),
        date(2019, 12, 29),
        RESERVED,
        "Réservée - Marta",
    )
    block = by_uid(result, "02292020-0229-2020-0305-202003052020")
    assert (block.start, block.end, block.kind) == (date(2020, 2, 29), date(2020, 3, 5), BLOCKED)
    hold = by_uid(result, "138b5f92-5aaa-400d-86b6-268bfb3c8aa5")
    assert (hold.start, hold.end, hold.kind) == (date(2020, 11, 15), date(2020, 12, 6), TENTATIVE)


def test_it_reads_vrbo_reserved_with_a_guest_name_from_an_lf_only_feed():
    body = feed("own_vrbo_english_lf.ics")
    assert b"\r\n" not in body
    result = parse_feed(body)

    assert [(e.start, e.end, e.kind, e.summary) for e in result.events] == [
        (date(2027, 3, 12), date(2027, 3, 19), RESERVED, "Reserved - John Smith"),
        (date(2027, 3, 25), date(2027, 3, 29), BLOCKED, "Blocked"),
        (date(2027, 4, 10), date(2027, 4, 14), TENTATIVE, "Tentative - Ana"),
    ]


def test_it_reads_old_homeaway_eight_digit_dates_without_value_date():
    result = read_real("homeaway_2015_excerpt.ics")

    (event,) = result.events
    assert (event.start, event.end, event.kind) == (date(2015, 9, 24), date(2015, 9, 29), BLOCKED)
    assert event.summary == "NO ESTÁ DISPONIBLE"
    assert event.uid == "018657a0d8764d4f813968d997200635"


def test_it_reads_a_wimdu_event_without_uid_and_with_dtend_equal_to_dtstart_as_one_night():
    result = read_real("wimdu_2015_excerpt.ics")

    (event,) = result.events
    assert (event.start, event.end) == (date(2015, 12, 3), date(2015, 12, 4))
    assert event.uid.startswith("derived-")


def test_it_reads_wubook_floating_midnights_as_one_night_without_the_room_number():
    (event,) = read_real("wubook_2015_excerpt.ics", timezone="Europe/Rome").events

    assert (event.start, event.end) == (date(2015, 10, 28), date(2015, 10, 29))
    assert "128535" not in event.summary


def test_it_blocks_google_all_day_events_marked_transparent():
    result = read_real("google_1_public_holidays.ics")

    assert result.portal == "google"
    holiday = by_uid(result, "20231110_rhv0a9kca8mmmdo4ei84ubu46s@google.com")
    assert (holiday.start, holiday.end, holiday.kind) == (
        date(2023, 11, 10),
        date(2023, 11, 11),
        BLOCKED,
    )
    assert len(result.events) == 111


def test_it_converts_google_utc_times_to_the_property_zone():
    body = feed("google_5_x_wr_timezone_testcase.ics")
    evening = "14n7h56i35m32ukcq76s46d45p@google.com"  # 02:00Z on 23 Dec = 21:00 on 22 Dec in NY

    in_new_york = by_uid(parse_feed(body, timezone="America/New_York", today=date(2021, 12, 1)), evening)
    in_utc = by_uid(parse_feed(body, timezone="UTC", today=date(2021, 12, 1)), evening)

    assert (in_new_york.start, in_new_york.end) == (date(2021, 12, 22), date(2021, 12, 23))
    assert (in_utc.start, in_utc.end) == (date(2021, 12, 23), date(2021, 12, 24))


def test_it_reads_floating_times_in_the_x_wr_timezone_of_the_calendar():
    # 21:00 floating in Europe/Brussels is 04:00 the next day in Tokyo.
    body = feed("quirk_x_wr_timezone_floating_manual.ics")

    (event,) = parse_feed(body, timezone="Asia/Tokyo", today=date(2021, 9, 1)).events

    assert (event.start, event.end) == (date(2021, 9, 17), date(2021, 9, 18))


def test_it_resolves_the_windows_zone_of_an_outlook_feed_without_vtimezone():
    # 14:00 "W. Europe Standard Time" (Berlin, summer) is midnight in Auckland.
    body = feed("outlook_1_o365_windows_tzid_no_vtimezone.ics")

    (event,) = parse_feed(body, timezone="Pacific/Auckland", today=date(2024, 4, 1)).events

    assert (event.start, event.end) == (date(2024, 4, 27), date(2024, 4, 28))
    assert event.uid.startswith("040000008200E00074C5B7101A82E008") and event.uid.endswith("2F2B")


def test_it_falls_back_to_the_property_zone_for_an_undefined_outlook_zone_and_says_so():
    result = read_real("outlook_2_o365_undefined_custom_tzid.ics", timezone="Europe/Lisbon")

    assert nights(result) == [(date(2024, 4, 26), date(2024, 4, 27))]
    assert result.warnings == ["Unknown time zone 'Customized Time Zone': used Europe/Lisbon"]


def test_it_reads_an_outlook_feed_with_blank_lines_between_components():
    result = parse_feed(
        feed("outlook_3_o365_blank_lines.ics"), timezone="Pacific/Auckland", today=date(2025, 10, 1)
    )

    assert (date(2025, 10, 8), date(2025, 10, 9)) in nights(result)
    assert result.warnings == []


@pytest.mark.parametrize(
    "name",
    [
        "quirk_bom_calendar_icalendar.ics",
        "quirk_blank_line_mid.ics",
        "quirk_leading_trailing_blank_lines.ics",
        "quirk_empty_vcalendar_no_components.ics",
    ],
)
def test_it_reads_a_calendar_without_events_as_empty(name):
    result = parse_feed(feed(name))

    assert result.events == [] and result.skipped == []


def test_it_repairs_doubled_parameter_semicolons():
    (event,) = read_real("quirk_double_semicolon_param.ics").events

    assert (event.uid, event.start, event.end) == ("abc", date(2014, 4, 9), date(2014, 4, 10))


def test_it_counts_an_event_ending_before_it_starts():
    result = parse_feed(feed("quirk_end_before_start.ics"))

    assert result.events == []
    assert reasons(result) == ["end_before_start"]


def test_it_gives_a_timed_event_without_end_its_night():
    (event,) = read_real("quirk_zero_size_event.ics", timezone="Europe/Berlin").events

    assert (event.start, event.end) == (date(2019, 3, 4), date(2019, 3, 5))


def test_it_gives_an_all_day_event_ending_on_its_start_day_one_night():
    (event,) = read_real("calendarlabs_1_dtend_equals_dtstart.ics").events

    assert (event.start, event.end) == (date(2025, 12, 8), date(2025, 12, 9))


# -- the date rules, one small calendar each --


def test_it_places_the_same_utc_instant_on_different_nights_in_lisbon_and_tokyo():
    body = calendar("UID:a\nDTSTART:20270301T233000Z\nDTEND:20270302T100000Z")

    assert nights(parse_feed(body, timezone="Europe/Lisbon")) == [
        (date(2027, 3, 1), date(2027, 3, 2))
    ]
    # 08:30 to 19:00 on 2 March in Tokyo: inside one day, so that night only.
    assert nights(parse_feed(body, timezone="Asia/Tokyo")) == [(date(2027, 3, 2), date(2027, 3, 3))]


def test_it_converts_a_windows_zone_name_to_the_property_zone():
    body = calendar("UID:a\nDTSTART;TZID=W. Europe Standard Time:20270301T003000")

    assert nights(parse_feed(body, timezone="Europe/Lisbon")) == [
        (date(2027, 2, 28), date(2027, 3, 1))
    ]


def test_it_uses_a_vtimezone_defined_in_the_feed():
    body = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:test\r\n"
        b"BEGIN:VTIMEZONE\r\nTZID:Plus Five\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\n"
        b"TZOFFSETFROM:+0500\r\nTZOFFSETTO:+0500\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
        b"BEGIN:VEVENT\r\nUID:a\r\nDTSTART;TZID=Plus Five:20270301T020000\r\nEND:VEVENT\r\n"
        b"END:VCALENDAR\r\n"
    )

    assert nights(parse_feed(body, timezone="UTC")) == [(date(2027, 2, 28), date(2027, 3, 1))]


def test_it_resolves_an_iana_tzid_without_vtimezone():
    body = calendar("UID:a\nDTSTART;TZID=America/New_York:20270301T200000")

    assert nights(parse_feed(body, timezone="Europe/Lisbon")) == [
        (date(2027, 3, 2), date(2027, 3, 3))
    ]


def test_it_reads_an_unknown_tzid_in_the_property_zone_and_says_so():
    body = calendar("UID:a\nDTSTART;TZID=Mars/Olympus:20270301T233000")

    result = parse_feed(body, timezone="Asia/Tokyo")

    assert nights(result) == [(date(2027, 3, 1), date(2027, 3, 2))]
    assert result.warnings == ["Unknown time zone 'Mars/Olympus': used Asia/Tokyo"]


def test_it_reads_floating_times_on_the_property_wall_clock():
    body = calendar("UID:a\nDTSTART:20270301T233000\nDTEND:20270302T003000")

    assert nights(parse_feed(body, timezone="Asia/Tokyo")) == [(date(2027, 3, 1), date(2027, 3, 2))]


def test_it_ignores_an_unknown_x_wr_timezone_and_says_so():
    body = calendar("UID:a\nDTSTART:20270301T233000", header="PRODID:test\r\nX-WR-TIMEZONE:Foo/Bar")

    result = parse_feed(body, timezone="Europe/Lisbon")

    assert nights(result) == [(date(2027, 3, 1), date(2027, 3, 2))]
    assert result.warnings == ["Unknown time zone 'Foo/Bar': used Europe/Lisbon"]


def test_it_falls_back_to_utc_for_an_unknown_property_zone_and_says_so():
    result = parse_feed(calendar("UID:a\nDTSTART:20270301T233000Z"), timezone="Nowhere/Land")

    assert nights(result) == [(date(2027, 3, 1), date(2027, 3, 2))]
    assert result.warnings == ["Unknown property time zone 'Nowhere/Land': used UTC"]


@pytest.mark.parametrize(
    ("duration", "end"),
    [("P3D", date(2027, 3, 4)), ("P2W", date(2027, 3, 15)), ("PT5H", date(2027, 3, 2))],
)
def test_it_adds_whole_days_of_a_duration_to_a_date_start(duration, end):
    body = calendar(f"UID:a\nDTSTART;VALUE=DATE:20270301\nDURATION:{duration}")

    assert nights(parse_feed(body)) == [(date(2027, 3, 1), end)]


def test_it_adds_a_duration_to_a_date_time_start():
    body = calendar("UID:a\nDTSTART:20270301T150000Z\nDURATION:PT44H")

    assert nights(parse_feed(body)) == [(date(2027, 3, 1), date(2027, 3, 3))]


def test_it_gives_an_all_day_event_without_end_or_duration_one_night():
    body = calendar("UID:a\nDTSTART;VALUE=DATE:20270301")

    assert nights(parse_feed(body)) == [(date(2027, 3, 1), date(2027, 3, 2))]


def test_it_frees_the_check_out_day_of_a_timed_stay():
    body = calendar("UID:a\nDTSTART:20270301T150000\nDTEND:20270304T110000")

    assert nights(parse_feed(body)) == [(date(2027, 3, 1), date(2027, 3, 4))]


def test_it_skips_and_counts_an_event_ending_before_it_starts_and_keeps_the_rest():
    body = calendar(
        "UID:bad\nDTSTART;VALUE=DATE:20270305\nDTEND;VALUE=DATE:20270301",
        "UID:bad-duration\nDTSTART;VALUE=DATE:20270305\nDURATION:-P2D",
        "UID:good\nDTSTART;VALUE=DATE:20270310\nDTEND;VALUE=DATE:20270312",
    )

    result = parse_feed(body)

    assert nights(result) == [(date(2027, 3, 10), date(2027, 3, 12))]
    assert result.skipped == [
        ical.SkippedEvent("bad", "end_before_start"),
        ical.SkippedEvent("bad-duration", "end_before_start"),
    ]


def test_it_skips_a_cancelled_event():
    body = calendar(
        "UID:gone\nSTATUS:CANCELLED\nDTSTART;VALUE=DATE:20270301",
        "UID:kept\nSTATUS:CONFIRMED\nDTSTART;VALUE=DATE:20270310",
    )

    result = parse_feed(body)

    assert [e.uid for e in result.events] == ["kept"]
    assert result.skipped == [ical.SkippedEvent("gone", "cancelled")]


def test_it_blocks_an_event_marked_transparent():
    body = calendar("UID:a\nTRANSP:TRANSPARENT\nDTSTART;VALUE=DATE:20270301")

    assert [e.kind for e in parse_feed(body).events] == [BLOCKED]


# -- what portals get wrong, and what we tolerate --


def test_it_reads_crlf_and_lf_line_endings_alike():
    crlf = feed("airbnb_1.ics").replace(b"\n", b"\r\n")

    assert parse_feed(crlf, today=FETCHED_ON["airbnb_1.ics"]) == read_real("airbnb_1.ics")


def test_it_tolerates_a_bom_blank_lines_anywhere_and_folding_in_the_middle_of_a_word():
    body = (
        b"\xef\xbb\xbf\r\n\r\nBEGIN:VCALENDAR\r\nPRODID:test\r\n\r\nBEGIN:VEVENT\r\n"
        b"UID:folded-in-the-mid\r\n dle@example.com\r\nSUMMARY:Rese\r\n rved\r\n\r\n"
        b"DTSTART;VALUE=DATE:20270301\r\nEND:VEVENT\r\n\r\nEND:VCALENDAR\r\n\r\n"
    )

    (event,) = parse_feed(body, labels={RESERVED: ["Reserved"]}).events

    assert (event.uid, event.summary, event.kind) == (
        "folded-in-the-middle@example.com",
        "Reserved",
        RESERVED,
    )


def test_it_replaces_invalid_utf8_instead_of_failing():
    body = calendar("UID:a\nDTSTART;VALUE=DATE:20270301").replace(
        b"UID:a", b"UID:a\r\nSUMMARY:Caf\xe9 \xff\xfe"
    )

    (event,) = parse_feed(body).events

    assert event.summary.startswith("Caf")


def test_it_skips_and_counts_an_event_whose_dates_icalendar_could_not_read():
    body = calendar(
        "UID:bad-date\nDTSTART;VALUE=DATE:20270301\nDTEND:20251399",
        "UID:bad-duration\nDTSTART;VALUE=DATE:20270301\nDURATION:P999999999999999999W",
        'UID:unsplittable\nDTSTART;VALUE=DATE:20270301\nDTEND;X="unclosed:20270308',
        "UID:no-start\nSUMMARY:Reserved",
        "UID:good\nDTSTART;VALUE=DATE:20270310",
    )

    result = parse_feed(body)

    assert [e.uid for e in result.events] == ["good"]
    assert reasons(result) == [
        "invalid_component",
        "invalid_component",
        "invalid_component",
        "missing_start",
    ]


def test_it_skips_an_event_whose_start_is_not_a_day_or_whose_duration_is_a_date():
    # icalendar accepts all three without an error.
    body = calendar(
        "UID:period\nDTSTART:20270301T100000Z/PT1H",
        "UID:time-only\nDTSTART:100000",
        "UID:date-duration\nDTSTART;VALUE=DATE:20270301\nDURATION:20270305",
    )

    result = parse_feed(body)

    assert result.events == []
    assert reasons(result) == ["invalid_component"] * 3


def test_it_keeps_an_event_with_a_broken_line_elsewhere_and_warns():
    body = calendar("UID:a\nX-APPLE-RADIUS=49.9\nDTSTART;VALUE=DATE:20270301")

    result = parse_feed(body)

    assert nights(result) == [(date(2027, 3, 1), date(2027, 3, 2))]
    assert result.warnings == ["Ignored 1 unreadable line(s) in events."]


@pytest.mark.parametrize(
    "body",
    [
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\nDTSTART;VALUE=DATE:20270301\r\n",
        b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\nDTSTART;VALUE=DATE:20270301\r\n"
        b"END:VEVENT\r\n",
    ],
    ids=["mid-event", "between-events"],
)
def test_it_refuses_a_truncated_feed(body):
    with pytest.raises(FeedParseError) as caught:
        parse_feed(body)
    assert caught.value.code == "parse_error"


def test_it_reads_a_whole_calendar_followed_by_a_caches_comment():
    body = calendar("UID:a\nDTSTART;VALUE=DATE:20270301\nDTEND;VALUE=DATE:20270303") + b"X-COMMENT:Cached from origin\r\n"

    result = parse_feed(body)

    assert nights(result) == [(date(2027, 3, 1), date(2027, 3, 3))]
    assert result.warnings == ["Ignored 1 line(s) after the end of the calendar."]


def test_it_refuses_a_second_calendar_cut_off_after_the_first():
    body = calendar("UID:a\nDTSTART;VALUE=DATE:20270301") + b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n"

    with pytest.raises(FeedParseError) as caught:
        parse_feed(body)
    assert caught.value.code == "parse_error"


def test_it_refuses_a_malformed_calendar_as_a_parse_error():
    two_calendars = calendar("UID:a\nDTSTART;VALUE=DATE:20270301") * 2

    with pytest.raises(FeedParseError) as caught:
        parse_feed(two_calendars)
    assert caught.value.code == "parse_error"


def test_it_says_a_login_page_is_a_web_page_not_a_calendar():
    body = b"\n<!DOCTYPE html>\n<html><head><title>Log in</title></head></html>"

    with pytest.raises(FeedParseError) as caught:
        parse_feed(body)
    assert caught.value.code == "not_ical"
    assert "web page (HTML)" in caught.value.message


def test_it_says_json_is_not_a_calendar():
    with pytest.raises(FeedParseError) as caught:
        parse_feed(b'{"error": "unauthorized"}')
    assert caught.value.code == "not_ical"
    assert "JSON" in caught.value.message


def test_it_says_other_text_is_not_a_calendar():
    with pytest.raises(FeedParseError) as caught:
        parse_feed(b"Service temporarily unavailable")
    assert caught.value.code == "not_ical"


def test_it_refuses_a_body_over_five_mib():
    body = calendar("UID:a\nDTSTART;VALUE=DATE:20270301") + b" " * (5 * 1024 * 1024)

    with pytest.raises(FeedParseError) as caught:
        parse_feed(body)
    assert caught.value.code == "too_large"


def test_it_refuses_more_events_than_max_events():
    body = calendar(*[f"UID:{n}\nDTSTART;VALUE=DATE:20270301" for n in range(4)])

    with pytest.raises(FeedParseError) as caught:
        parse_feed(body, max_events=3)
    assert caught.value.code == "too_large"
    assert parse_feed(body, max_events=4).events


def test_it_turns_any_other_failure_of_the_calendar_libraries_into_a_parse_error(monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("a bug deep in a library")

    monkeypatch.setattr(ical.x_wr_timezone, "to_standard", broken)
    body = calendar("UID:a\nDTSTART:20270301T100000", header="X-WR-TIMEZONE:Europe/Paris")

    with pytest.raises(FeedParseError) as caught:
        parse_feed(body)
    assert caught.value.code == "parse_error"
    assert isinstance(caught.value.__cause__, TypeError)


# -- looks_like_ical and body_fingerprint --


def test_it_recognises_a_calendar_after_a_bom_and_blank_lines_in_any_case():
    assert looks_like_ical(b"\xef\xbb\xbf\r\n\r\n  begin:vcalendar\r\n")
    assert not looks_like_ical(b"<html>BEGIN:VCALENDAR")
    assert not looks_like_ical(b"")


def test_it_fingerprints_the_same_body_the_same_when_only_dtstamp_changed():
    before = feed("booking_1.ics")
    after = before.replace(b"DTSTAMP:20250316T153617Z", b"DTSTAMP:20250317T090000Z")
    folded = before.replace(b"DTSTAMP:20250316T153617Z", b"DTSTAMP:20250317\r\n T090000Z")

    assert body_fingerprint(before) == body_fingerprint(after) == body_fingerprint(folded)
    assert body_fingerprint(before) == body_fingerprint(before.replace(b"\n", b"\r\n"))


def fingerprint_line_by_line(body: bytes) -> str:
    """The first body_fingerprint, kept as the reference: fingerprints stored by it must still
    match, or every feed would look changed (and be parsed) once after an upgrade."""
    kept, in_dtstamp = [], False
    for line in re.split(rb"\r\n|\r|\n", body):
        if line[:1] not in (b" ", b"\t"):
            in_dtstamp = bool(re.match(rb"DTSTAMP[;:]", line, re.IGNORECASE))
        if not in_dtstamp:
            kept.append(line)
    return hashlib.sha256(b"\n".join(kept)).hexdigest()


@pytest.mark.parametrize("name", sorted(path.name for path in FEEDS.glob("*.ics")))
def test_the_fingerprint_of_every_real_feed_is_the_one_stored_by_the_line_by_line_version(name):
    body = feed(name)
    assert body_fingerprint(body) == fingerprint_line_by_line(body)


# Lines as feeds write them, and the odd ones: folded, empty, DTSTAMP in any case, first or last.
FEED_LINES = st.lists(
    st.sampled_from(
        [b"BEGIN:VEVENT", b"DTSTAMP:20250316T153617Z", b"dtstamp;VALUE=DATE-TIME:20250316T1536", b" 17Z",
         b"\t17Z", b"", b"SUMMARY:Reserved", b"DTSTAMPX:1", b"X-DTSTAMP:1", b"DTSTAMP", b"UID:a@b"]
    ),
    max_size=12,
)


@given(FEED_LINES, st.lists(st.sampled_from([b"\r\n", b"\n", b"\r", b"\r\r\n"]), min_size=1), st.booleans())
def test_the_fingerprint_is_the_line_by_line_one_whatever_the_lines_and_breaks(lines, breaks, trailing_break):
    body = b"".join(line + breaks[i % len(breaks)] for i, line in enumerate(lines))
    if not trailing_break and lines:
        body = body[: -len(breaks[(len(lines) - 1) % len(breaks)])]
    assert body_fingerprint(body) == fingerprint_line_by_line(body)


@given(st.binary(max_size=300))
def test_the_fingerprint_of_any_bytes_is_the_line_by_line_one(body):
    assert body_fingerprint(body) == fingerprint_line_by_line(body)


def test_it_fingerprints_a_changed_event_differently():
    before = feed("booking_1.ics")
    after = before.replace(b"DTEND;VALUE=DATE:20250409", b"DTEND;VALUE=DATE:20250410")

    assert body_fingerprint(before) != body_fingerprint(after)


# -- keys and duplicates --


def test_events_sharing_a_uid_on_other_nights_each_keep_their_nights_under_a_stable_key():
    body = calendar(
        "UID:same\nDTSTART;VALUE=DATE:20270310\nDTEND;VALUE=DATE:20270312\nSUMMARY:second",
        "UID:same\nDTSTART;VALUE=DATE:20270301\nDTEND;VALUE=DATE:20270304\nSUMMARY:first",
    )

    result = parse_feed(body, today=TODAY)

    assert [(e.uid, e.start, e.end, e.summary) for e in result.events] == [
        ("same#20270301-20270304", date(2027, 3, 1), date(2027, 3, 4), "first"),
        ("same#20270310-20270312", date(2027, 3, 10), date(2027, 3, 12), "second"),
    ]
    assert result.notices == [ical.Notice("duplicate_uids", {"uids": 1, "events": 2})]
    assert all(e.text_digest == "" for e in result.events), "their reading depends on each other"
    # The same feed in another order says the same: the next sync changes nothing.
    swapped = calendar(
        "UID:same\nDTSTART;VALUE=DATE:20270301\nDTEND;VALUE=DATE:20270304\nSUMMARY:first",
        "UID:same\nDTSTART;VALUE=DATE:20270310\nDTEND;VALUE=DATE:20270312\nSUMMARY:second",
    )
    assert parse_feed(swapped, today=TODAY).events == result.events


def test_exact_duplicates_of_an_event_collapse_to_the_first():
    body = calendar(
        "UID:same\nDTSTART;VALUE=DATE:20270301\nSUMMARY:first",
        "UID:same\nDTSTART;VALUE=DATE:20270301\nSUMMARY:again",
    )

    result = parse_feed(body, today=TODAY)

    assert [(e.uid, e.summary) for e in result.events] == [("same", "first")]
    assert result.notices == []


def test_it_collapses_events_without_uid_that_take_the_same_nights():
    # Wimdu repeats each date under several summaries.
    body = calendar(
        "DTSTART;VALUE=DATE:20151203\nDTEND;VALUE=DATE:20151203",
        "DTSTART;VALUE=DATE:20151203\nDTEND;VALUE=DATE:20151203\nSUMMARY:Not available",
        "DTSTART;VALUE=DATE:20151203\nSUMMARY:RoomId: 7 - Room not available",
        "DTSTART;VALUE=DATE:20151204\nSUMMARY:Not available",
    )

    assert nights(parse_feed(body, today=date(2015, 12, 1))) == [
        (date(2015, 12, 3), date(2015, 12, 4)),
        (date(2015, 12, 4), date(2015, 12, 5)),
    ]


def test_it_derives_the_same_key_for_an_event_without_uid_every_time():
    body = calendar("DTSTART;VALUE=DATE:20270301\nSUMMARY:Not available")

    first, second = parse_feed(body).events[0].uid, parse_feed(body).events[0].uid

    assert first == second
    assert first.startswith("derived-") and len(first) == len("derived-") + 16
    other = calendar("DTSTART;VALUE=DATE:20270302\nSUMMARY:Not available")
    assert parse_feed(other).events[0].uid != first


# -- repeating events --


def test_it_expands_a_weekly_rule_with_exdate_moved_and_cancelled_occurrences():
    result = parse_feed(
        feed("own_google_owner_stays_recurring.ics"), timezone="Europe/Lisbon", today=TODAY
    )

    cleaning = [e for e in result.events if e.uid == "cleaning-saturdays@google.com"]
    assert [(e.start, e.recurrence_id, e.summary) for e in cleaning] == [
        (date(2027, 3, 6), "2027-03-06", "Cleaning"),
        (date(2027, 3, 13), "2027-03-13", "Cleaning"),
        (date(2027, 3, 28), "2027-03-28", "Cleaning (moved to Sunday)"),
        (date(2027, 4, 10), "2027-04-10", "Cleaning"),
    ]
    assert result.skipped == [ical.SkippedEvent("cleaning-saturdays@google.com", "cancelled")]


def test_it_expands_a_yearly_owner_stay_only_inside_the_horizon():
    result = parse_feed(
        feed("own_google_owner_stays_recurring.ics"), timezone="Europe/Lisbon", today=TODAY
    )

    owner = [e for e in result.events if e.uid == "owner-august@google.com"]
    assert [(e.start, e.end, e.kind) for e in owner] == [
        (date(2027, 8, 1), date(2027, 8, 15), BLOCKED),
        (date(2028, 8, 1), date(2028, 8, 15), BLOCKED),
    ]


def test_it_counts_a_repeating_event_with_no_occurrence_in_the_horizon():
    body = calendar("UID:old\nDTSTART;VALUE=DATE:20100101\nRRULE:FREQ=WEEKLY;COUNT=3")

    result = parse_feed(body, today=TODAY)

    assert result.events == [] and reasons(result) == ["outside_horizon"]


def test_it_skips_every_occurrence_of_a_cancelled_series_once():
    body = calendar("UID:gone\nSTATUS:CANCELLED\nDTSTART;VALUE=DATE:20270301\nRRULE:FREQ=DAILY")

    result = parse_feed(body, today=TODAY)

    assert result.events == [] and reasons(result) == ["cancelled"]


def test_it_skips_a_repeating_event_ending_before_it_starts_once():
    body = calendar(
        "UID:backwards\nDTSTART;VALUE=DATE:20270305\nDTEND;VALUE=DATE:20270301\nRRULE:FREQ=DAILY"
    )

    result = parse_feed(body, today=TODAY)

    assert result.events == [] and reasons(result) == ["end_before_start"]


def test_it_skips_single_events_before_yesterday_or_years_ahead_and_says_why():
    body = calendar(
        "UID:ended\nDTSTART;VALUE=DATE:20270220\nDTEND;VALUE=DATE:20270228",
        "UID:last-night-yesterday\nDTSTART;VALUE=DATE:20270225\nDTEND;VALUE=DATE:20270301",
        "UID:far\nDTSTART;VALUE=DATE:20300401\nDTEND;VALUE=DATE:20300405",
        "UID:year-9999\nDTSTART;VALUE=DATE:99991230\nDTEND;VALUE=DATE:99991231",
    )

    result = parse_feed(body, today=TODAY)

    assert [e.uid for e in result.events] == ["last-night-yesterday"]
    assert reasons(result) == ["in_the_past", "too_far_ahead", "too_far_ahead"]


def test_it_cuts_an_event_running_past_the_last_day_it_keeps_there():
    body = calendar("UID:forever\nDTSTART;VALUE=DATE:20270401\nDTEND;VALUE=DATE:99991231")

    result = parse_feed(body, today=TODAY)

    (event,) = result.events
    # About three years ahead, on the first of a month: it moves monthly, not daily.
    assert (event.start, event.end) == (date(2027, 4, 1), date(2030, 4, 1))
    assert event.text_digest == ""
    assert result.notices == [ical.Notice("far_end_cut", {"count": 1, "day": "2030-04-01"})]
    assert parse_feed(body, today=date(2027, 3, 31)).events == result.events


def test_it_finishes_an_unbounded_secondly_rule_quickly_and_caps_it():
    body = calendar("UID:dos\nDTSTART:20270301T100000Z\nRRULE:FREQ=SECONDLY\nSUMMARY:x")

    started = time.monotonic()
    result = parse_feed(body, today=TODAY)

    assert time.monotonic() - started < QUICKLY
    # A thousand seconds, all on one night: one event.
    assert nights(result) == [(date(2027, 3, 1), date(2027, 3, 2))]
    assert reasons(result) == ["too_many_occurrences"]
    assert any("cut short" in warning for warning in result.warnings)


def test_it_ignores_a_secondly_rule_that_started_long_ago_quickly():
    body = calendar("UID:dos\nDTSTART:20000101T000000Z\nRRULE:FREQ=SECONDLY")

    started = time.monotonic()
    result = parse_feed(body, today=TODAY)

    assert time.monotonic() - started < QUICKLY
    assert result.events == [] and reasons(result) == ["too_many_occurrences"]


def test_it_stops_at_max_occurrences_for_the_whole_feed():
    body = calendar(
        "UID:one\nDTSTART;VALUE=DATE:20270301\nRRULE:FREQ=DAILY",
        "UID:two\nDTSTART;VALUE=DATE:20270301\nRRULE:FREQ=DAILY",
    )

    result = parse_feed(body, today=TODAY, max_occurrences=10)

    assert len(result.events) == 10
    assert reasons(result) == ["too_many_occurrences", "too_many_occurrences"]
    assert result.warnings


def test_it_caps_a_series_that_lists_more_dates_than_it_may_take():
    body = calendar(
        "UID:listed\nDTSTART;VALUE=DATE:20270301\n"
        "RDATE;VALUE=DATE:20270302,20270303,20270304,20270305"
    )

    result = parse_feed(body, today=TODAY, max_occurrences=2)

    assert nights(result) == [
        (date(2027, 3, 1), date(2027, 3, 2)),
        (date(2027, 3, 2), date(2027, 3, 3)),
    ]
    assert reasons(result) == ["too_many_occurrences"]


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=DAILY;BYSETPOS=2",
        "FREQ=DAILY;BYWEEKNO=1;BYMONTH=6",
    ],
)
def test_it_reads_a_rule_no_day_can_meet_quickly_as_its_first_occurrence(rule):
    body = calendar(f"UID:never\nDTSTART;VALUE=DATE:20270301\nRRULE:{rule}")

    started = time.monotonic()
    result = parse_feed(body, today=TODAY)

    assert time.monotonic() - started < QUICKLY
    assert nights(result) == [(date(2027, 3, 1), date(2027, 3, 2))]


def test_it_drops_only_the_rule_no_day_can_meet():
    body = calendar(
        "UID:two-rules\nDTSTART;VALUE=DATE:20270301\n"
        "RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30\nRRULE:FREQ=WEEKLY;COUNT=3"
    )

    result = parse_feed(body, today=TODAY)

    assert [e.start for e in result.events] == [
        date(2027, 3, 1),
        date(2027, 3, 8),
        date(2027, 3, 15),
    ]


def test_it_stops_expanding_when_rules_have_taken_too_long(monkeypatch):
    monkeypatch.setattr(ical, "MAX_EXPANSION_SECONDS", -1)
    body = calendar("UID:a\nDTSTART;VALUE=DATE:20270301\nRRULE:FREQ=WEEKLY")

    result = parse_feed(body, today=TODAY)

    assert result.events == [] and reasons(result) == ["too_many_occurrences"]
    assert any("too costly" in warning for warning in result.warnings)


@pytest.mark.parametrize(
    "rule",
    ["FREQ=HOURLY;INTERVAL=2;BYHOUR=1", "COUNT=3"],
    ids=["dateutil-refuses", "no-frequency"],
)
def test_it_skips_a_series_whose_rule_it_cannot_follow(rule):
    body = calendar(
        f"UID:bad\nDTSTART:20270301T000000Z\nRRULE:{rule}",
        "UID:good\nDTSTART;VALUE=DATE:20270310",
    )

    result = parse_feed(body, today=TODAY)

    assert [e.uid for e in result.events] == ["good"]
    assert reasons(result) == ["invalid_component"]


# -- kinds, labels, echoes and guest data --


def test_it_blocks_everything_from_an_unknown_portal_unless_told_its_labels():
    body = calendar("UID:a\nDTSTART;VALUE=DATE:20270301\nSUMMARY:Reserved")

    assert parse_feed(body).events[0].kind == BLOCKED
    assert parse_feed(body, labels={RESERVED: ["Reserved"]}).events[0].kind == RESERVED


def test_it_drops_our_own_exported_events_coming_back():
    body = calendar(
        "UID:123@Sync.Channelmgr.example\nDTSTART;VALUE=DATE:20270301",
        "UID:456@airbnb.com\nDTSTART;VALUE=DATE:20270310",
    )

    result = parse_feed(body, own_uid_domain="sync.channelmgr.example")

    assert [e.uid for e in result.events] == ["456@airbnb.com"]
    assert result.skipped == [ical.SkippedEvent("123@Sync.Channelmgr.example", "own_export")]


def test_it_keeps_no_phone_digits_links_or_second_lines_in_summaries():
    body = calendar(
        "UID:a\nDTSTART;VALUE=DATE:20270301\n"
        "SUMMARY:Reserved - John +351 912 345 678 https://x.example/r/HM123 \\nPhone: 2656\n"
        "DESCRIPTION:Phone Number (Last 4 Digits): 2656"
    )

    (event,) = parse_feed(body, labels={RESERVED: ["Reserved"]}).events

    assert event.summary == "Reserved - John"
    assert event.kind == RESERVED


# -- nothing but ParsedFeed or FeedParseError, whatever the bytes --


def parse_or_fail(body: bytes) -> ParsedFeed | FeedParseError:
    try:
        result = parse_feed(body, today=TODAY, timezone="Europe/Lisbon")
    except FeedParseError as error:
        assert error.code in {"not_ical", "parse_error", "too_large"}
        return error
    assert all(event.start < event.end and event.kind in KINDS for event in result.events)
    return result


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_it_gives_a_feed_or_a_feed_error_for_random_bytes(body):
    parse_or_fail(body)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_it_gives_a_feed_or_a_feed_error_for_random_bytes_inside_a_calendar(middle):
    parse_or_fail(b"BEGIN:VCALENDAR\r\n" + middle + b"\r\nEND:VCALENDAR\r\n")


EVENT_LINES = [
    "UID:a",
    "UID:b",
    "SUMMARY:Reserved",
    "STATUS:CANCELLED",
    "TRANSP:TRANSPARENT",
    "DTSTART;VALUE=DATE:20270301",
    "DTSTART:20270301T100000Z",
    "DTSTART:20270301T100000",
    "DTSTART;TZID=W. Europe Standard Time:20270301T100000",
    "DTSTART;TZID=Nope:20270301T100000",
    "DTSTART;VALUE=DATE:00010101",
    "DTSTART;VALUE=DATE:99991231",
    "DTSTART:2027",
    "DTEND;VALUE=DATE:20270305",
    "DTEND:20270228T090000Z",
    "DTEND:99991231T235959",
    "DURATION:P2D",
    "DURATION:-PT1H",
    "DURATION:PT0S",
    "DURATION:P99999W",
    "RRULE:FREQ=DAILY",
    "RRULE:FREQ=SECONDLY",
    "RRULE:FREQ=WEEKLY;BYDAY=MO,TH;COUNT=40",
    "RRULE:FREQ=MONTHLY;BYSETPOS=-1;BYDAY=FR",
    "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
    "RRULE:FREQ=HOURLY;BYMINUTE=0,30;UNTIL=20270310",
    "RRULE:FREQ=DAILY;BYSETPOS=3",
    "EXDATE;VALUE=DATE:20270302",
    "RDATE;VALUE=DATE:20270401,20270501",
    "RDATE;VALUE=PERIOD:20270401T100000Z/PT2H",
    "RECURRENCE-ID;VALUE=DATE:20270302",
    "RECURRENCE-ID:20270301T100000Z",
    "BEGIN:VALARM\r\nEND:VALARM",
    "X-BROKEN=1",
    " folded",
    "",
]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(EVENT_LINES), max_size=8), max_size=5),
    st.sampled_from(["", "X-WR-TIMEZONE:Europe/Paris", "X-WR-TIMEZONE:Foo/Bar"]),
)
def test_it_gives_a_feed_or_a_feed_error_for_random_events(events, header):
    parse_or_fail(calendar(*("\n".join(lines) for lines in events), header=header or "PRODID:x"))


TRUNCATION_SOURCES = [
    "airbnb_1.ics",
    "google_5_x_wr_timezone_testcase.ics",
    "outlook_3_o365_blank_lines.ics",
    "own_google_owner_stays_recurring.ics",
]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(TRUNCATION_SOURCES), st.floats(min_value=0, max_value=1))
def test_it_refuses_a_real_feed_cut_anywhere_before_its_end(name, fraction):
    body = feed(name)
    cut = body[: int(len(body) * fraction)]

    result = parse_or_fail(cut)

    if cut.strip() and not cut.rstrip().endswith(b"END:VCALENDAR"):
        assert isinstance(result, FeedParseError)


# -- hostile input: encodings, control characters, bounded work (tests/test_hostile_feeds.py has the corpus) --


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda text: b"\xff\xfe" + text.encode("utf-16-le"), id="UTF-16 LE with BOM"),
        pytest.param(lambda text: b"\xfe\xff" + text.encode("utf-16-be"), id="UTF-16 BE with BOM"),
        pytest.param(lambda text: text.encode("utf-16-le"), id="UTF-16 LE without BOM"),
        pytest.param(lambda text: b"\xef\xbb\xbf\xef\xbb\xbf" + text.encode(), id="two UTF-8 BOMs"),
        pytest.param(lambda text: b"\xef\xbb\xbf" + text.encode(), id="one UTF-8 BOM"),
    ],
)
def test_it_reads_utf16_and_doubled_boms_as_the_calendar_they_are(encode):
    text = calendar("UID:é\nDTSTART;VALUE=DATE:20270301\nSUMMARY:Réservée - Zoë").decode()

    result = parse_feed(encode(text), today=TODAY)

    assert [(e.uid, e.summary) for e in result.events] == [("é", "Réservée - Zoë")]
    assert result.notices == []


def test_it_reads_text_that_is_not_utf8_as_windows_1252_and_says_so():
    body = calendar("UID:a\nDTSTART;VALUE=DATE:20270301\nSUMMARY:Réservé « Zoë » 50€").decode().encode("windows-1252")

    result = parse_feed(body, today=TODAY)

    assert result.events[0].summary == "Réservé « Zoë » 50€"
    assert result.notices == [ical.Notice("decoded_as_windows_1252")]


def test_a_fold_in_the_middle_of_a_utf8_character_is_not_taken_for_windows_1252():
    body = calendar("UID:a\nDTSTART;VALUE=DATE:20270301\nSUMMARY:Réservé").replace(b"R\xc3\xa9", b"R\xc3\r\n \xa9")

    result = parse_feed(body, today=TODAY)

    assert result.events[0].summary == "Réservé" and result.notices == []


def test_it_removes_nul_and_other_control_characters_from_what_it_reads():
    body = calendar("UID:a\x00b\x1b\nDTSTART;VALUE=DATE:20270301\nSUMMARY:Re\x00ser\x7fved\x9b")

    result = parse_feed(body, today=TODAY, labels={RESERVED: ["Reserved"]})

    (event,) = result.events
    assert (event.uid, event.summary, event.kind) == ("ab", "Reserved", RESERVED)
    assert result.notices == [ical.Notice("control_characters", {"count": 5})]


def test_a_rule_with_interval_zero_is_skipped_at_once_as_invalid():
    body = calendar(
        "UID:zero\nDTSTART;VALUE=DATE:20270301\nRRULE:FREQ=DAILY;INTERVAL=0\nSUMMARY:Loop",
        "UID:fine\nDTSTART;VALUE=DATE:20270310",
    )

    started = time.monotonic()
    result = parse_feed(body, today=TODAY)

    assert time.monotonic() - started < QUICKLY
    assert [e.uid for e in result.events] == ["fine"]
    assert reasons(result) == ["invalid_rule"]
    assert "invalid_rule" in ical.INVALID_REASONS


def test_a_feed_not_read_within_its_deadline_fails_as_too_slow():
    with pytest.raises(FeedParseError) as caught:
        parse_feed(feed("google_1_public_holidays.ics"), today=date(2021, 1, 1), deadline=0)
    assert caught.value.code == "too_slow"


@pytest.mark.parametrize("signal", [MemoryError, ical.SoftTimeLimitExceeded])
@pytest.mark.parametrize("where", ["series", "event", "calendar"])
def test_a_soft_time_limit_or_memory_error_is_never_taken_for_a_broken_feed(monkeypatch, signal, where):
    def fail(*args, **kwargs):
        raise signal()

    target = {"series": (ical.recurring_ical_events, "of"), "event": (ical, "_nights"),
              "calendar": (ical.icalendar.Calendar, "from_ical")}[where]
    monkeypatch.setattr(*target, fail)
    body = calendar("UID:a\nDTSTART;VALUE=DATE:20270301\nRRULE:FREQ=DAILY;COUNT=2", "UID:b\nDTSTART;VALUE=DATE:20270305")

    with pytest.raises(signal):
        parse_feed(body, today=TODAY)


def test_the_event_cap_counts_the_events_icalendar_built(monkeypatch):
    monkeypatch.setattr(feed_decoding, "_check_size", lambda text, max_events: None)  # as if the text count missed them
    body = calendar(*[f"UID:{n}\nDTSTART;VALUE=DATE:20270301" for n in range(4)])

    with pytest.raises(FeedParseError) as caught:
        parse_feed(body, today=TODAY, max_events=3)
    assert caught.value.code == "too_large"


def test_a_folded_begin_line_counts_toward_the_event_cap():
    body = calendar(*[f"UID:{n}\nDTSTART;VALUE=DATE:20270301" for n in range(4)]).replace(b"BEGIN:VEVENT", b"BEGIN:VEV\r\n ENT")

    with pytest.raises(FeedParseError) as caught:
        parse_feed(body, today=TODAY, max_events=3)
    assert caught.value.code == "too_large"


def test_components_nested_deeper_than_a_calendar_are_refused():
    body = calendar("UID:a\nDTSTART;VALUE=DATE:20270301\n" + "BEGIN:X-A\n" * 20 + "END:X-A\n" * 20)

    with pytest.raises(FeedParseError) as caught:
        parse_feed(body, today=TODAY)
    assert caught.value.code == "too_complex"
