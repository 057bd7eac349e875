"""Documented numbers and rules, pinned to the documentation's own figures, never to the
constants of the code (issue 33): "stale" after two intervals (README), "not reading" after three
times the portal's pick-up delay (README), STATUS/TRANSP/CLASS and parameter names read whatever
their case (docs/domain.md), the month calendar and the overview agreeing on which nights clash
(checked against a rule written out here, on random stays), the CSV's first line never an
error row, and a replayed webhook of any age refused by the receiver's helper."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import date, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncs.conflicts import conflicts_listed
from syncs.dashboard import property_month
from syncs.engine.parse.ical import parse_feed
from syncs.export_tokens import export_token_ensure
from syncs.horizon import latest_checkout
from syncs.models import Block, Connection, ExportToken, Membership, OnboardingUpload, Portal
from syncs.sync_state import SyncState, connection_status, in_states
from syncs.webhooks import signature_valid
from tests.conftest import NOW
from tests.factories import (
    BlockFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    portal,
)
from tests.helpers import TODAY, d

# --------------------------------------------------------------------------- "stale": no success for two intervals


def state_both_ways(connection: Connection) -> tuple[SyncState, set[SyncState]]:
    """The state as each page reads it: one sync's (Python) and the overview's counts (SQL)."""
    connection.refresh_from_db()
    sql = {
        state for state in SyncState
        if in_states(Connection.objects.filter(pk=connection.pk), [state], now=NOW).exists()
    }
    return connection_status(connection, now=NOW).state, sql


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("interval", "minutes_since_success", "state"),
    [
        # README: "stale (no success for two intervals)".
        (30, 59, SyncState.WORKING),
        (30, 60, SyncState.WORKING),
        (30, 61, SyncState.STALE),
        (60, 119, SyncState.WORKING),
        (60, 121, SyncState.STALE),
        (1440, 2879, SyncState.WORKING),
        (1440, 2881, SyncState.STALE),
    ],
)
def test_a_sync_is_stale_after_two_intervals_without_a_success(interval, minutes_since_success, state):
    connection = ConnectionFactory(
        direction="import_only", sync_interval_minutes=interval,
        last_success_at=NOW - timedelta(minutes=minutes_since_success),
    )
    assert state_both_ways(connection) == (state, {state})


# --------------------------------------------------------------------------- "not reading": three times the pick-up delay


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("pickup_max", "minutes_since_read", "state"),
    [
        # README: "no read within three times its usual pick-up delay".
        (100, 299, SyncState.WORKING),
        (100, 301, SyncState.NOT_READING),
        (40, 119, SyncState.WORKING),
        (40, 121, SyncState.NOT_READING),
    ],
)
def test_a_portal_is_not_reading_after_three_times_its_pick_up_delay(pickup_max, minutes_since_read, state):
    Portal.objects.filter(slug="vrbo").update(pickup_delay_min_minutes=5, pickup_delay_max_minutes=pickup_max)
    connection = ConnectionFactory(
        portal=portal("vrbo"), direction="two_way", sync_interval_minutes=30, last_success_at=NOW - timedelta(minutes=5)
    )
    token = export_token_ensure(property=connection.property, connection=connection)
    ExportToken.objects.filter(pk=token.pk).update(
        created_at=NOW - timedelta(days=3), last_read_at=NOW - timedelta(minutes=minutes_since_read), last_reader="vrbo"
    )
    assert state_both_ways(connection) == (state, {state})


@pytest.mark.django_db
def test_a_url_never_read_needs_attention_after_three_times_the_pick_up_delay():
    Portal.objects.filter(slug="vrbo").update(pickup_delay_min_minutes=5, pickup_delay_max_minutes=100)
    connection = ConnectionFactory(
        portal=portal("vrbo"), direction="two_way", sync_interval_minutes=30, last_success_at=NOW - timedelta(minutes=5)
    )
    token = export_token_ensure(property=connection.property, connection=connection)
    ExportToken.objects.filter(pk=token.pk).update(created_at=NOW - timedelta(minutes=299))
    assert state_both_ways(connection) == (SyncState.WORKING, {SyncState.WORKING})
    ExportToken.objects.filter(pk=token.pk).update(created_at=NOW - timedelta(minutes=301))
    assert state_both_ways(connection) == (SyncState.NOT_READING, {SyncState.NOT_READING})


# --------------------------------------------------------------------------- iCal values and parameter names, any case


def calendar(*events: str) -> bytes:
    body = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN"]
    for event in events:
        body += ["BEGIN:VEVENT", *event.split("\n"), "END:VEVENT"]
    body.append("END:VCALENDAR")
    return ("\r\n".join(body) + "\r\n").encode()


def taken(body: bytes) -> list[tuple[str, date, date]]:
    return [(e.uid, e.start, e.end) for e in parse_feed(body, timezone="Europe/Lisbon", today=date(2027, 1, 10)).events]


@pytest.mark.parametrize("status", ["CANCELLED", "Cancelled", "cancelled", "cAnCeLlEd"])
def test_a_cancelled_event_blocks_nothing_whatever_the_case_of_its_status(status):
    body = calendar(
        f"UID:gone\nSTATUS:{status}\nDTSTART;VALUE=DATE:20270301\nDTEND;VALUE=DATE:20270304",
        "UID:kept\nSTATUS:Confirmed\nDTSTART;VALUE=DATE:20270310\nDTEND;VALUE=DATE:20270312",
    )
    assert taken(body) == [("kept", date(2027, 3, 10), date(2027, 3, 12))]


@pytest.mark.parametrize(
    "line", ["TRANSP:TRANSPARENT", "TRANSP:Transparent", "transp:transparent", "CLASS:PRIVATE", "CLASS:Confidential",
             "class:private", "STATUS:Tentative", "status:confirmed"],
)
def test_transp_class_and_other_statuses_never_free_the_nights(line):
    """docs/domain.md: TRANSP is ignored (Google's all-day events are "free" by default)."""
    body = calendar(f"UID:owner\n{line}\nDTSTART;VALUE=DATE:20270301\nDTEND;VALUE=DATE:20270304")
    assert taken(body) == [("owner", date(2027, 3, 1), date(2027, 3, 4))]


@pytest.mark.parametrize(
    "dates",
    [
        "dtstart;value=date:20270301\ndtend;value=date:20270304",
        "DTSTART;Value=Date:20270301\nDTEND;Value=Date:20270304",
        "DtStart;VALUE=DATE:20270301\nDtEnd;VALUE=DATE:20270304",
        "DTSTART;tzid=Europe/Lisbon:20270301T150000\nDTEND;tzid=Europe/Lisbon:20270304T110000",
    ],
)
def test_property_and_parameter_names_are_read_whatever_their_case(dates):
    assert taken(calendar(f"UID:stay\n{dates}")) == [("stay", date(2027, 3, 1), date(2027, 3, 4))]


@pytest.mark.parametrize("status", ["Cancelled", "cancelled"])
def test_a_mixed_case_cancelled_series_cancels_every_occurrence(status):
    body = calendar(
        f"UID:weekly\nSTATUS:{status}\nDTSTART;VALUE=DATE:20270301\nDTEND;VALUE=DATE:20270302\nRRULE:FREQ=WEEKLY;COUNT=4"
    )
    assert taken(body) == []


# --------------------------------------------------------------------------- the month calendar and the overview agree


def clashing_nights(stays: list[tuple[str, int, int]]) -> set[date]:
    """The rule as the README states it, written out here: a night is a possible double booking
    when stays from two different sources take it (one portal's own stays never clash with each
    other)."""
    by_night: dict[date, set[str]] = {}
    for source, start, nights in stays:
        for offset in range(nights):
            by_night.setdefault(d(start + offset), set()).add(source)
    return {night for night, sources in by_night.items() if len(sources) >= 2}


STAYS = st.lists(
    st.tuples(st.sampled_from(["airbnb", "vrbo", "here"]), st.integers(1, 20), st.integers(1, 6)), max_size=6
)


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stays=STAYS)
def test_the_month_calendar_and_the_overview_mark_the_same_clashing_nights(stays):
    membership = MembershipFactory(role=Membership.Role.OWNER)
    prop = PropertyFactory(account=membership.account, timezone="UTC")
    syncs = {slug: ConnectionFactory(property=prop, portal=portal(slug)) for slug in ("airbnb", "vrbo")}
    for i, (source, start, nights) in enumerate(stays):
        BlockFactory(property=prop, source=syncs.get(source), uid=f"s{i}", kind="reserved", start_date=d(start),
                     end_date=d(start + nights))
    expected = clashing_nights(stays)

    month_days: set[date] = set()
    for month in {d(0).replace(day=1), d(15).replace(day=1), d(30).replace(day=1)}:
        calendar_month = property_month(property=prop, month=month, today=TODAY)
        month_days |= {day.day for week in calendar_month.weeks for day in week if day.in_month and day.conflict}
    overview_days = {
        night
        for marked in conflicts_listed(account=membership.account, now=NOW).unhandled
        for start, end in marked.conflict.clash.runs
        for night in (start + timedelta(days=i) for i in range((end - start).days))
    }
    assert month_days == overview_days == expected
    Block.objects.filter(property=prop).delete()


# --------------------------------------------------------------------------- the CSV's first line is never a row


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [
        "Property,Time zone,Portal,Import link",
        "\ufeffProperty,Time zone,Portal,Import link",
        "Propriedade,Fuso horário,Portal,Link de importação",
        "Propiedad,Zona horaria,Portal,Enlace de importación",
        "property,time zone,portal,import link",
    ],
)
def test_the_first_line_naming_the_columns_is_never_an_error_row(client, header):
    membership = MembershipFactory(role=Membership.Role.MANAGER)
    client.force_login(membership.user)
    link = "https://www.airbnb.com/calendar/ical/515.ics?s=x"
    data = f"{header}\r\nCasa Azul,Europe/Lisbon,Airbnb,{link}\r\n".encode()
    page = client.post(reverse("onboarding"), {"file": SimpleUploadedFile("s.csv", data, "text/csv")}, follow=True)
    checked = OnboardingUpload.objects.get()
    assert [row["action"] for row in checked.rows] == ["add"], checked.rows
    assert "Line 1" not in page.content.decode()


# --------------------------------------------------------------------------- a replay of any age is refused


@pytest.mark.parametrize("age", [301, 600, 3_600, 86_400, 30 * 86_400, 10 * 365 * 86_400])
def test_the_receivers_helper_refuses_a_replay_of_any_age(age):
    """README: accept only when t is at most 5 minutes old. The header is made here, with hmac
    and hashlib as the README says, for a delivery made ``age`` seconds ago."""
    secret, body, now = "whsec_" + "cd" * 32, b'{"event": "restored"}', 1_900_000_000
    t = now - age
    mac = hmac.new(secret.encode(), f"{t}.9.restored.".encode() + body, hashlib.sha256).hexdigest()
    header = f"t={t},v2={mac}"
    assert not signature_valid(secret=secret, body=body, header=header, delivery_id="9", event="restored", now=now)
    fresh = hmac.new(secret.encode(), f"{now - 299}.9.restored.".encode() + body, hashlib.sha256).hexdigest()
    assert signature_valid(
        secret=secret, body=body, header=f"t={now - 299},v2={fresh}", delivery_id="9", event="restored", now=now
    )


def test_the_receivers_helper_reads_the_clock_when_not_given_a_time():
    secret, body = "whsec_" + "ef" * 32, b'{"event": "paused"}'
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.3.paused.".encode() + body, hashlib.sha256).hexdigest()
    assert signature_valid(secret=secret, body=body, header=f"t={t},v2={mac}", delivery_id="3", event="paused")
    old = t - 301
    mac = hmac.new(secret.encode(), f"{old}.3.paused.".encode() + body, hashlib.sha256).hexdigest()
    assert not signature_valid(secret=secret, body=body, header=f"t={old},v2={mac}", delivery_id="3", event="paused")


@pytest.mark.parametrize(
    ("today", "last_checkout"),
    [
        # syncs/horizon.py: "the first day of the month after the same day three years ahead".
        (date(2026, 11, 15), date(2029, 12, 1)),
        (date(2026, 12, 31), date(2030, 1, 1)),
        (date(2027, 1, 1), date(2030, 2, 1)),
        (date(2028, 2, 29), date(2031, 3, 1)),
    ],
)
def test_feeds_are_read_until_the_first_of_the_month_after_three_years_ahead(today, last_checkout):
    assert latest_checkout(today) == last_checkout
    body = calendar(
        f"UID:edge\nDTSTART;VALUE=DATE:{last_checkout - timedelta(days=2):%Y%m%d}\nDTEND;VALUE=DATE:{last_checkout:%Y%m%d}",
        f"UID:beyond\nDTSTART;VALUE=DATE:{last_checkout:%Y%m%d}\nDTEND;VALUE=DATE:{last_checkout + timedelta(days=2):%Y%m%d}",
    )
    read = parse_feed(body, timezone="Europe/Lisbon", today=today)
    assert [(e.uid, e.start, e.end) for e in read.events] == [("edge", last_checkout - timedelta(days=2), last_checkout)]
