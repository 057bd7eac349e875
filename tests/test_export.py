"""The export feeds, read as a portal reads them: the bytes, the headers, and what they leak (nothing)."""

from __future__ import annotations

import logging
import re
from datetime import date, timedelta
from unittest import mock

import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, close_old_connections, connections
from django.db import connection as db
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from channelmgr.log_masking import MaskingGunicornLogger, MaskSecretsFilter
from syncs.blocks import block_create_manual, block_remove_manual, property_calendar_changed
from syncs.engine.parse.ical import parse_feed
from syncs.explain import describe_readers
from syncs.export import KEPT_CALENDARS, _calendar_build
from syncs.export_tokens import (
    export_token_ensure,
    export_token_rotate,
    export_url,
    token_from_nonce,
)
from syncs.models import Account, Block, Connection, ExportReadDay, ExportToken, Property
from syncs.readers import connection_export_facts
from tests.conftest import NOW
from tests.factories import BlockFactory, ConnectionFactory, PropertyFactory, portal

pytestmark = pytest.mark.django_db

TODAY = NOW.date()


def d(days: int) -> date:
    return TODAY + timedelta(days=days)


@pytest.fixture(autouse=True)
def _clock(clock):
    """Every test here runs on the shared clock."""
    return clock


@pytest.fixture(autouse=True)
def _record_every_read(settings):
    settings.EXPORT_READ_FLUSH_SECONDS = 0


@pytest.fixture
def flat():
    prop = PropertyFactory(name="Casa Azul", timezone="Europe/Lisbon")
    airbnb = ConnectionFactory(property=prop, portal=portal("airbnb"))
    booking = ConnectionFactory(property=prop, portal=portal("booking"))
    BlockFactory(property=prop, source=airbnb, uid="a1@airbnb.com", kind="reserved", start_date=d(3), end_date=d(6),
                 summary="Reserved")
    BlockFactory(property=prop, source=booking, uid="b1@booking.com", kind="blocked", start_date=d(10), end_date=d(12),
                 summary="CLOSED - Not available")
    BlockFactory(property=prop, source=None, kind="reserved", start_date=d(20), end_date=d(22), summary="Direct: Maria Silva")
    return prop, airbnb, booking


def path_of(token: ExportToken) -> str:
    return reverse("export-feed", kwargs={"token": token_from_nonce(token.nonce)})


def feed_path(prop, connection=None) -> str:
    return path_of(export_token_ensure(property=prop, connection=connection))


def nights_in(body: bytes, zone: str = "Europe/Lisbon") -> list[tuple[date, date]]:
    return [(e.start, e.end) for e in parse_feed(body, timezone=zone, today=TODAY).events]


def test_each_portal_gets_the_nights_from_every_other_source_but_not_its_own(client, flat):
    prop, airbnb, booking = flat
    assert nights_in(client.get(feed_path(prop, airbnb)).content) == [(d(10), d(12)), (d(20), d(22))]
    assert nights_in(client.get(feed_path(prop, booking)).content) == [(d(3), d(6)), (d(20), d(22))]


def test_the_property_wide_calendar_has_every_taken_night(client, flat):
    prop, _, _ = flat
    assert nights_in(client.get(feed_path(prop)).content) == [(d(3), d(6)), (d(10), d(12)), (d(20), d(22))]


def test_no_guest_data_leaves_in_an_export(client, flat):
    prop, _, booking = flat
    Block.objects.filter(uid="a1@airbnb.com").update(
        summary="Reserved\nReservation URL: https://www.airbnb.com/hosting/reservations/details/HMYXB825YD 0882"
    )
    for path in (feed_path(prop, booking), feed_path(prop)):
        text = client.get(path).content.decode()
        for secret in ("Maria", "Silva", "0882", "airbnb.com/hosting", "HMYXB825YD", "DESCRIPTION", "Reserved", "CLOSED", "ATTENDEE"):
            assert secret not in text
        assert set(re.findall(r"^SUMMARY:(.*)\r$", text, flags=re.MULTILINE)) == {"Not available"}


def test_the_exported_title_is_configurable_per_connection(client, flat):
    prop, airbnb, _ = flat
    Connection.objects.filter(pk=airbnb.pk).update(export_summary="Ocupado")
    airbnb.refresh_from_db()
    assert "SUMMARY:Ocupado\r\n" in client.get(feed_path(prop, airbnb)).content.decode()


def test_the_export_is_in_the_format_every_portal_accepts(client, flat):
    prop, airbnb, _ = flat
    response = client.get(feed_path(prop, airbnb))
    assert response["Content-Type"] == "text/calendar; charset=utf-8"
    body = response.content
    assert body.startswith(b"BEGIN:VCALENDAR\r\n")
    assert body.endswith(b"END:VCALENDAR\r\n")
    assert b"\n" not in body.replace(b"\r\n", b"")  # CRLF only
    assert all(len(line) <= 75 for line in body.split(b"\r\n"))
    text = body.decode()
    for line in ("VERSION:2.0", "PRODID:-//channelmgr//iCal availability sync 1.0//EN", "CALSCALE:GREGORIAN",
                 "METHOD:PUBLISH", "X-WR-CALNAME:Casa Azul"):
        assert f"\r\n{line}\r\n" in text
    assert f"DTSTART;VALUE=DATE:{d(10):%Y%m%d}\r\n" in text
    assert f"DTEND;VALUE=DATE:{d(12):%Y%m%d}\r\n" in text
    assert text.count("DTSTAMP:") == text.count("BEGIN:VEVENT") == 2


def test_every_event_has_a_stable_uid_under_our_domain_and_comes_back_as_an_echo(client, flat, settings):
    settings.EXPORT_UID_DOMAIN = "cm.example.com"
    prop, airbnb, _ = flat
    first = client.get(feed_path(prop, airbnb)).content
    uids = re.findall(rb"UID:(\S+)\r\n", first)
    assert len(uids) == 2
    assert all(uid.endswith(b"@cm.example.com") for uid in uids)
    block_create_manual(property=prop, start=d(40), end=d(41))
    assert set(uids) <= set(re.findall(rb"UID:(\S+)\r\n", client.get(feed_path(prop, airbnb)).content))
    # Read back through a portal, our own blocks are recognised and dropped.
    echoed = parse_feed(first, timezone="Europe/Lisbon", own_uid_domain="cm.example.com")
    assert echoed.events == []
    assert {s.reason for s in echoed.skipped} == {"own_export"}


def test_overlapping_and_touching_blocks_are_exported_as_one_event(client):
    prop = PropertyFactory()
    for start, end in ((3, 6), (6, 8), (7, 10), (12, 13)):
        BlockFactory(property=prop, start_date=d(start), end_date=d(end))
    assert nights_in(client.get(feed_path(prop)).content, prop.timezone) == [(d(3), d(10)), (d(12), d(13))]


def test_past_stays_are_not_exported_and_the_horizon_is_two_years(client):
    prop = PropertyFactory()
    for start, end in ((-10, -2), (-3, 0), (-1, 2), (729, 731), (730, 732)):
        BlockFactory(property=prop, start_date=d(start), end_date=d(end))
    assert nights_in(client.get(feed_path(prop)).content, prop.timezone) == [(d(-3), d(2)), (d(729), d(731))]


def test_a_property_with_no_bookings_still_serves_a_valid_calendar(client):
    prop = PropertyFactory()
    response = client.get(feed_path(prop))
    assert response.status_code == 200
    assert response.content.startswith(b"BEGIN:VCALENDAR\r\n")
    assert b"BEGIN:VEVENT" not in response.content
    assert parse_feed(response.content).events == []


def test_a_manual_block_shows_in_the_export_at_once_and_its_removal_too(client, flat):
    prop, airbnb, _ = flat
    path = feed_path(prop, airbnb)
    before = client.get(path)
    block = block_create_manual(property=prop, start=d(50), end=d(53), kind="reserved", summary="Direct booking")
    after = client.get(path, HTTP_IF_NONE_MATCH=before["ETag"])
    assert after.status_code == 200
    assert (d(50), d(53)) in nights_in(after.content)
    block_remove_manual(block=block)
    assert (d(50), d(53)) not in nights_in(client.get(path).content)


def test_a_deleted_sync_s_nights_and_an_admin_s_block_edit_change_the_export_at_once(client, flat, admin_client):
    """Every change to a property's blocks changes its export's ETag, those not made by the
    engine or the pages too: a portal asking with the old one gets the calendar as it is."""
    prop, airbnb, booking = flat
    path = feed_path(prop, booking)
    etag = client.get(path)["ETag"]
    airbnb.delete()  # its reservation of d(3)-d(6) goes with it
    response = client.get(path, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200 and (d(3), d(6)) not in nights_in(response.content)

    etag = response["ETag"]
    made_here = Block.objects.get(property=prop, source=None)
    changed = admin_client.post(reverse("admin:syncs_block_change", args=[made_here.pk]), {
        "property": prop.pk, "source": "", "kind": "reserved", "start_date": d(40).isoformat(), "end_date": d(42).isoformat(),
        "uid": made_here.uid, "recurrence_id": "", "summary": made_here.summary, "removed_by_run": "",
        **{f"{name}_{part}": value for name in ("first_seen_at", "last_seen_at")
           for part, value in enumerate(timezone.localtime(made_here.first_seen_at).strftime("%Y-%m-%d %H:%M:%S").split())},
    })
    assert changed.status_code == 302, changed.context["adminform"].form.errors
    response = client.get(path, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200 and (d(40), d(42)) in nights_in(response.content)


def test_a_manual_block_must_end_after_it_starts():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        block_create_manual(property=PropertyFactory(), start=d(5), end=d(5))


def test_an_unchanged_calendar_answers_304_with_no_body(client, flat):
    prop, airbnb, _ = flat
    path = feed_path(prop, airbnb)
    first = client.get(path)
    assert first["ETag"].startswith('"')
    again = client.get(path, HTTP_IF_NONE_MATCH=first["ETag"])
    assert (again.status_code, again.content) == (304, b"")
    by_date = client.get(path, HTTP_IF_MODIFIED_SINCE=first["Last-Modified"])
    assert by_date.status_code == 304


def test_a_sync_that_changes_blocks_changes_the_export_at_once(client, flat, httpserver, settings):
    from syncs.engine.task import connection_sync_leased
    from tests import feeds

    prop, airbnb, booking = flat
    path = feed_path(prop, booking)
    etag = client.get(path)["ETag"]
    settings.FETCH_ALLOW_LOOPBACK = True
    httpserver.expect_request("/a.ics").respond_with_data(feeds.airbnb(("a1", d(3), d(6)), ("new", d(30), d(33))))
    Connection.objects.filter(pk=airbnb.pk).update(import_url=httpserver.url_for("/a.ics"))
    connection_sync_leased(connection_id=airbnb.pk)
    response = client.get(path, HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 200
    assert (d(30), d(33)) in nights_in(response.content)


def database_down():
    return mock.patch.object(BaseDatabaseWrapper, "ensure_connection", side_effect=OperationalError("db down"))


@pytest.mark.parametrize("kept", [False, True], ids=["first-request", "calendar-already-kept"])
def test_when_the_database_cannot_answer_the_export_is_a_503_never_an_empty_calendar(client, flat, kept):
    prop, airbnb, _ = flat
    path = feed_path(prop, airbnb)
    if kept:  # a calendar kept in memory must not be served without the database's word
        assert client.get(path).status_code == 200
    with database_down():
        response = client.get(path)
    assert response.status_code == 503
    assert response["Retry-After"] == "300"
    assert b"VCALENDAR" not in response.content


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_kept_database_connection_that_died_is_replaced_without_a_503(postgres, client, flat):
    prop, airbnb, _ = flat
    path = feed_path(prop, airbnb)
    assert client.get(path).status_code == 200
    # PostgreSQL restarted since the last request: the connection kept for reuse is dead.
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [db.connection.info.backend_pid])
    other.close()
    # What Django runs at the start of every request, and the test client leaves out: a kept
    # connection is checked (CONN_HEALTH_CHECKS) before the request's first query.
    close_old_connections()
    response = client.get(path)
    assert response.status_code == 200
    assert nights_in(response.content) == [(d(10), d(12)), (d(20), d(22))]


def test_every_change_to_the_blocks_is_seen_by_the_very_next_request(client, flat):
    prop, airbnb, _ = flat
    path = feed_path(prop, airbnb)
    etags = [client.get(path)["ETag"], client.get(path)["ETag"]]  # the second one is served from memory
    assert etags[0] == etags[1]
    block = block_create_manual(property=prop, start=d(60), end=d(61))
    added = client.get(path)
    assert (d(60), d(61)) in nights_in(added.content)
    Block.objects.filter(pk=block.pk).update(end_date=d(63))  # a change made without the services...
    property_calendar_changed(property_id=prop.pk)  # ...still bumps the version, as apply.py does
    moved = client.get(path)
    assert (d(60), d(63)) in nights_in(moved.content)
    assert len({etags[0], added["ETag"], moved["ETag"]}) == 3


def test_a_new_title_or_calendar_name_is_exported_at_once(client, flat):
    prop, airbnb, _ = flat
    path = feed_path(prop, airbnb)
    first = client.get(path)
    Connection.objects.filter(pk=airbnb.pk).update(export_summary="Ocupado")
    Property.objects.filter(pk=prop.pk).update(name="Casa Verde")
    response = client.get(path, HTTP_IF_NONE_MATCH=first["ETag"])
    assert response.status_code == 200
    assert "SUMMARY:Ocupado\r\n" in response.content.decode()
    assert "X-WR-CALNAME:Casa Verde\r\n" in response.content.decode()


def test_a_deleted_connections_url_404s_at_once_though_its_calendar_was_kept(client, flat):
    prop, airbnb, _ = flat
    path = feed_path(prop, airbnb)
    assert client.get(path).status_code == 200
    Connection.objects.filter(pk=airbnb.pk).delete()
    assert client.get(path).status_code == 404


def test_a_calendar_is_built_once_per_version_and_memory_keeps_a_bounded_number(client, flat):
    prop, airbnb, _ = flat
    path = feed_path(prop, airbnb)
    with CaptureQueriesContext(db) as first:
        body = client.get(path).content
    with CaptureQueriesContext(db) as again:
        assert client.get(path).content == body
    assert len(again) < len(first)  # the token's look-up only: the calendar was kept
    assert _calendar_build.cache_info().maxsize == KEPT_CALENDARS


def test_unknown_malformed_and_expired_tokens_get_the_same_404(client, flat, clock):
    prop, airbnb, _ = flat
    old = export_token_ensure(property=prop, connection=airbnb)
    export_token_rotate(token=old)
    clock.shift(timedelta(hours=73))
    answers = {
        client.get(path).content
        for path in (path_of(old), "/ical/" + "A" * 43 + ".ics", "/ical/short.ics", "/ical/%2e%2e.ics")
    }
    assert answers == {b"Not found.\n"}
    assert client.get(path_of(old)).status_code == 404


def test_an_export_url_carries_256_bits_and_the_database_holds_no_token(flat):
    prop, airbnb, _ = flat
    token = export_token_ensure(property=prop, connection=airbnb)
    secret = token_from_nonce(token.nonce)
    assert len(secret) == 43  # 32 bytes in base64url
    row = ExportToken.objects.filter(pk=token.pk).values().get()
    assert secret not in str(row)
    assert export_url(token).endswith(f"/ical/{secret}.ics")


def test_a_rotated_url_keeps_working_for_the_grace_period_then_404s(client, flat, clock):
    prop, airbnb, _ = flat
    old = export_token_ensure(property=prop, connection=airbnb)
    new = export_token_rotate(token=old)
    assert client.get(path_of(new)).status_code == 200
    clock.shift(timedelta(hours=71))
    assert client.get(path_of(old)).status_code == 200
    clock.shift(timedelta(hours=2))
    assert client.get(path_of(old)).status_code == 404
    assert client.get(path_of(new)).status_code == 200


def test_export_responses_keep_the_url_out_of_referers_and_search_engines(client, flat):
    prop, airbnb, _ = flat
    for path in (feed_path(prop, airbnb), "/ical/unknown-token-xyz.ics"):
        response = client.get(path)
        assert response["Referrer-Policy"] == "no-referrer"
        assert "noindex" in response["X-Robots-Tag"]


def test_logs_never_show_an_export_token(flat):
    prop, airbnb, _ = flat
    secret = token_from_nonce(export_token_ensure(property=prop, connection=airbnb).nonce)
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s", (f"/ical/{secret}.ics",), None)
    MaskSecretsFilter().filter(record)
    assert secret not in record.getMessage()
    assert "/ical/…" in record.getMessage()
    handler_filters = [f for h in logging.getLogger().handlers for f in h.filters]
    assert any(isinstance(f, MaskSecretsFilter) for f in handler_filters)


def test_gunicorns_access_log_masks_export_tokens():
    request = mock.Mock(uri="/ical/abcdefghijklmnop.ics", path="/ical/abcdefghijklmnop.ics", query="", method="GET",
                        version=(1, 1), headers=[])
    response = mock.Mock(status="200 OK", sent=10, headers=[])
    with mock.patch("gunicorn.glogging.Logger.atoms", return_value={"r": "GET /ical/abcdefghijklmnop.ics HTTP/1.1", "s": "200"}):
        atoms = MaskingGunicornLogger.atoms(mock.Mock(spec=MaskingGunicornLogger), response, request, {}, timedelta(0))
    assert atoms["r"] == "GET /ical/….ics HTTP/1.1"


def test_each_read_records_who_read_it_and_counts_per_day(client, flat):
    prop, airbnb, _ = flat
    path = feed_path(prop, airbnb)
    for _ in range(3):
        client.get(path, HTTP_USER_AGENT="Airbnb/1.0 (calendar import)")
    client.get(path, HTTP_USER_AGENT="Google-Calendar-Importer")
    token = export_token_ensure(property=prop, connection=airbnb)
    token.refresh_from_db()
    assert (token.last_reader, token.last_status) == ("google", 200)
    counts = dict(ExportReadDay.objects.filter(token=token).values_list("reader", "count"))
    assert counts == {"airbnb": 3, "google": 1}


def test_reads_reach_the_database_at_most_once_a_minute_per_url(client, flat, settings, django_assert_max_num_queries):
    settings.EXPORT_READ_FLUSH_SECONDS = 60
    prop, airbnb, _ = flat
    path = feed_path(prop, airbnb)
    client.get(path, HTTP_USER_AGENT="Airbnb")
    with django_assert_max_num_queries(1):  # the token look-up; no write
        client.get(path, HTTP_USER_AGENT="Airbnb")


def test_the_connection_says_who_reads_its_calendar(client, flat, clock):
    prop, airbnb, _ = flat
    facts = connection_export_facts(connection=airbnb)
    assert facts.state == "waiting"
    clock.shift(timedelta(hours=10))
    facts = connection_export_facts(connection=airbnb)
    assert facts.state == "never_read"
    assert "probably not pasted into Airbnb" in describe_readers(facts, portal="Airbnb")

    client.get(feed_path(prop, airbnb), HTTP_USER_AGENT="Airbnb calendar sync")
    clock.shift(timedelta(minutes=47))
    facts = connection_export_facts(connection=airbnb)
    assert facts.state == "reading"
    assert describe_readers(facts, portal="Airbnb") == "Airbnb last read this calendar 47\xa0minutes ago."

    client.get(feed_path(prop, airbnb), HTTP_USER_AGENT="Airbnb calendar sync")
    clock.shift(timedelta(seconds=20))
    facts = connection_export_facts(connection=airbnb)
    assert describe_readers(facts, portal="Airbnb") == "Airbnb last read this calendar less than a minute ago."

    clock.shift(timedelta(days=3))
    facts = connection_export_facts(connection=airbnb)
    assert facts.state == "stale"
    assert "stopped reading" in describe_readers(facts, portal="Airbnb")


def test_after_a_rotation_the_connection_says_the_portal_still_reads_the_old_url(client, flat, clock):
    prop, airbnb, _ = flat
    old = export_token_ensure(property=prop, connection=airbnb)
    export_token_rotate(token=old)
    clock.shift(timedelta(minutes=5))
    client.get(path_of(old), HTTP_USER_AGENT="Airbnb")
    facts = connection_export_facts(connection=airbnb)
    assert facts.old_url_reader == "airbnb"
    assert "Airbnb still reads the old URL" in describe_readers(facts, portal="Airbnb")


def test_import_only_connections_have_no_export(flat):
    prop, _, _ = flat
    connection = ConnectionFactory(property=prop, direction=Connection.Direction.IMPORT_ONLY)
    assert not ExportToken.objects.filter(connection=connection).exists()
    assert connection_export_facts(connection=connection) is None


def test_the_operator_downloads_the_export_as_a_named_file(operator_client, operator):
    prop = PropertyFactory(account=Account.of_user(operator), name="Casa Azul")
    connection = ConnectionFactory(property=prop, portal=portal("vrbo"))
    response = operator_client.get(reverse("connection-export-download", args=[connection.pk]))
    assert response["Content-Disposition"] == 'attachment; filename="casa-azul-vrbo.ics"'
    assert response.content.startswith(b"BEGIN:VCALENDAR")
    response = operator_client.get(reverse("property-export-download", args=[prop.pk]))
    assert response["Content-Disposition"] == 'attachment; filename="casa-azul.ics"'


def test_the_operator_rotates_the_url_from_the_connection_page(operator_client, operator):
    connection = ConnectionFactory(property=PropertyFactory(account=Account.of_user(operator)))
    page = operator_client.get(reverse("connection-detail", args=[connection.pk])).content.decode()
    old_url = re.search(r'value="(http[^"]+/ical/[^"]+)"', page).group(1)
    response = operator_client.post(reverse("connection-export-rotate", args=[connection.pk]), follow=True)
    page = response.content.decode()
    assert "New export URL issued" in page
    new_url = re.search(r'value="(http[^"]+/ical/[^"]+)"', page).group(1)
    assert new_url != old_url
    assert ExportToken.objects.filter(connection=connection).count() == 2


def test_a_new_property_never_gets_a_deleted_propertys_cached_calendar(client):
    old = PropertyFactory()
    BlockFactory(property=old, start_date=d(3), end_date=d(9))
    assert nights_in(client.get(feed_path(old)).content, old.timezone) == [(d(3), d(9))]
    old_id = old.pk
    old.delete()
    # A restored backup or a rolled-back sequence can hand the deleted row's id to a new one.
    new = PropertyFactory(pk=old_id)
    assert nights_in(client.get(feed_path(new)).content, new.timezone) == []
