"""Hostile and broken input through the pages: what used to answer 500, hold a thread or fool
the service now gets a page with a message (and on PostgreSQL too: CI runs these there)."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from datetime import date, timedelta
from unittest import mock

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone
from werkzeug import Response

from syncs import live_checks
from syncs.engine.fetch import FetchError, fetch_feed, link_identity
from syncs.engine.task import connection_sync_leased
from syncs.explain import describe
from syncs.horizon import latest_checkout
from syncs.models import Account, Block, Connection, Membership, SyncRun
from syncs.troubleshooting import run_step
from tests import feeds
from tests.factories import BlockFactory, ConnectionFactory, PropertyFactory, portal

pytestmark = pytest.mark.django_db


@pytest.fixture
def flat(operator):
    return PropertyFactory(account=Account.of_user(operator), name="Casa Azul", timezone="Europe/Lisbon")


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def days(n: int) -> date:
    return timezone.localdate() + timedelta(days=n)


# --------------------------------------------------------------------------- control characters


def test_a_nul_in_the_property_search_is_not_an_error(operator_client, flat):
    response = operator_client.get(reverse("property-list") + "?q=Casa%00%01")
    assert response.status_code == 200
    assert "Casa Azul" in response.content.decode()


def test_a_nul_in_an_admin_search_is_not_an_error(client, admin_user):
    client.force_login(admin_user)
    assert client.get(reverse("admin:syncs_property_changelist") + "?q=%00").status_code == 200


def test_a_nul_in_a_manual_blocks_note_is_dropped_and_the_nights_closed(operator_client, flat):
    response = operator_client.post(
        reverse("property-block-add", args=[flat.pk]),
        {"start": days(20).isoformat(), "end": days(22).isoformat(), "kind": "blocked", "summary": "Owner\x00 stay\x07"},
    )
    assert response.status_code == 302
    block = Block.objects.get(property=flat)
    assert (block.start_date, block.end_date, block.summary) == (days(20), days(22), "Owner stay")


def test_a_nul_in_a_form_field_is_removed_before_the_form_reads_it(operator_client, flat):
    response = operator_client.post(reverse("property-edit", args=[flat.pk]), {"name": "Casa\x00 Verde", "timezone": "Europe/Lisbon"})
    assert response.status_code == 302
    flat.refresh_from_db()
    assert flat.name == "Casa Verde"


def test_a_feed_with_nul_in_its_uid_and_summary_syncs_on_postgresql(postgres, portal_server, flat):
    connection = ConnectionFactory(property=flat, portal=portal("airbnb"), import_url=portal_server.url_for("/feed.ics"))
    body = feeds.airbnb(("nul\x00uid", days(3), days(6))).replace(b"SUMMARY:Reserved", b"SUMMARY:Res\x00erved")
    portal_server.expect_request("/feed.ics").respond_with_data(body)

    run = connection_sync_leased(connection_id=connection.pk)

    assert (run.outcome, run.error_code) == ("ok_changed", "")
    block = Block.objects.get(source=connection)
    assert (block.uid, block.summary, block.start_date) == ("nuluid@airbnb.com", "Reserved", days(3))


# --------------------------------------------------------------------------- dates out of range


@pytest.mark.parametrize("month", ["9999-12", "0001-01", "2027-13", "garbage", "99999-01", "2027-%00"])
def test_a_month_out_of_range_or_not_a_month_shows_this_month_with_a_message(operator_client, flat, month):
    response = operator_client.get(reverse("property-detail", args=[flat.pk]) + f"?month={month}")

    assert response.status_code == 200
    assert response.context["month"] == flat.local_today().replace(day=1)
    (message,) = said(response)
    assert "this month is shown" in message


def test_the_month_calendar_stops_offering_months_at_the_ends_of_the_range(operator_client, flat):
    last = (latest_checkout(flat.local_today()) - timedelta(days=1)).replace(day=1)
    response = operator_client.get(reverse("property-detail", args=[flat.pk]) + f"?month={last:%Y-%m}")
    assert response.status_code == 200 and response.context["month"] == last
    assert response.context["next_month"] is None and response.context["previous_month"] is not None
    assert said(response) == []


@pytest.mark.parametrize(
    ("start", "end", "words"),
    [
        (date(9999, 12, 30), date(9999, 12, 31), "or earlier"),
        (date(1, 1, 1), date(1, 1, 2), "or later"),
        ("far", "farther", "or earlier"),
    ],
)
def test_manual_nights_outside_the_range_are_refused_with_the_range_in_words(operator_client, flat, start, end, words):
    if start == "far":
        start, end = days(5 * 365), days(5 * 365 + 2)
    response = operator_client.post(
        reverse("property-block-add", args=[flat.pk]), {"start": start.isoformat(), "end": end.isoformat()}, follow=True
    )
    assert response.status_code == 200
    assert any(words in message for message in said(response))
    assert not Block.objects.exists()


def test_the_checklist_test_block_copes_with_a_block_ending_in_year_9999(operator, flat, portal_server):
    # Its import works (the final check waits for that).
    connection = ConnectionFactory(property=flat, portal=portal("airbnb"), import_url=portal_server.url_for("/cal.ics"),
                                   last_success_at=timezone.now())
    # Stored before imports had a horizon: every night from tonight on is taken.
    BlockFactory(property=flat, start_date=days(0), end_date=date(9999, 12, 31))

    report = run_step(connection=connection, step="final_check", user=operator)
    assert report.data["suggested_night"] is None

    report = run_step(connection=connection, step="final_check", user=operator, action="add_test_block", form={})
    assert "choose a night yourself" in report.summary

    report = run_step(connection=connection, step="final_check", user=operator, action="add_test_block",
                      form={"night": "9999-12-31"})
    assert "Choose a night from" in report.summary
    assert not Block.objects.filter(source__isnull=True).exclude(end_date=date(9999, 12, 31)).exists()


def test_the_checklist_pages_answer_with_a_far_night_posted(operator_client, operator, flat, portal_server):
    connection = ConnectionFactory(property=flat, portal=portal("airbnb"), import_url=portal_server.url_for("/cal.ics"),
                                   last_success_at=timezone.now())
    url = reverse("connection-fix-step", args=[connection.pk, "final_check"])
    for night in ("9999-12-31", "0001-01-01", "%00"):
        for action in ("add_test_block", "portal_night"):
            response = operator_client.post(url, {"action": action, "night": night}, HTTP_HX_REQUEST="true")
            assert response.status_code == 200
            assert "Choose a night from" in response.content.decode() or night == "%00"
    # A night that is no date at all takes the suggested one: the nearest free night, tonight.
    assert list(Block.objects.values_list("start_date", flat=True)) == [flat.local_today()]


# --------------------------------------------------------------------------- live link checks


@pytest.fixture(autouse=True)
def _live_checks_ended():
    """A live check's work may outlive its request (that is the point): wait for it, so that it
    holds no slot in the next test."""
    import threading

    yield
    for thread in threading.enumerate():
        if thread.name == "live-check":
            thread.join(15)


def slow(seconds: float, body: bytes = b""):
    def handler(request):
        time.sleep(seconds)
        return Response(body or feeds.airbnb(("a", days(3), days(6))), content_type="text/calendar")

    return handler


def check_link(client, prop, url):
    data = {"import_url": url, "portal": portal("other").pk, "direction": "two_way", "sync_interval_minutes": 30,
            "export_summary": "Not available", "check_now": "on"}
    return client.post(reverse("connection-create", kwargs={"property_id": prop.pk}), data)


def link_errors(response) -> list[str]:
    return [str(e) for e in response.context["form"].errors.get("import_url", [])]


def held(released: threading.Event):
    """A feed that answers once ``released`` is set: slower than any deadline until then."""

    def handler(request):
        released.wait(30)
        return Response(feeds.airbnb(("a", days(3), days(6))), content_type="text/calendar")

    return handler


def test_a_live_check_of_a_slow_feed_answers_at_its_deadline(operator_client, flat, portal_server, monkeypatch):
    monkeypatch.setattr(live_checks, "LIVE_CHECK_SECONDS", 1.0)
    released = threading.Event()
    portal_server.expect_request("/slow.ics").respond_with_handler(held(released))

    started = time.monotonic()
    try:
        response = check_link(operator_client, flat, portal_server.url_for("/slow.ics"))
        elapsed = time.monotonic() - started
    finally:
        released.set()  # the portal (one request at a time) is free for the next test at once

    assert elapsed < 3
    assert link_errors(response) == [describe("timeout", portal=None)]
    assert not Connection.objects.exists()


def test_a_live_check_of_a_feed_too_slow_to_read_says_so(operator_client, flat, portal_server, monkeypatch):
    from syncs.engine.parse import ical

    monkeypatch.setattr(ical, "PARSE_SECONDS", 0.0)
    portal_server.expect_request("/feed.ics").respond_with_data(feeds.airbnb(("a", days(3), days(6))))
    response = check_link(operator_client, flat, portal_server.url_for("/feed.ics"))
    assert link_errors(response) == [describe("too_slow", portal=None)]


def test_a_second_live_check_of_the_same_user_is_refused_while_one_runs(operator_client, operator, flat, portal_server):
    portal_server.expect_request("/feed.ics").respond_with_data(feeds.airbnb(("a", days(3), days(6))))
    Membership.objects.filter(user=operator).update(live_check_until=timezone.now() + timedelta(seconds=10))

    response = check_link(operator_client, flat, portal_server.url_for("/feed.ics"))

    assert link_errors(response) == ["A check of a link is already running for you: wait for its answer, then try again."]
    assert portal_server.log == []
    # A claim left by a process that died runs out by itself.
    Membership.objects.filter(user=operator).update(live_check_until=timezone.now() - timedelta(seconds=1))
    assert check_link(operator_client, flat, portal_server.url_for("/feed.ics")).status_code == 302


def test_live_checks_take_a_few_slots_of_the_process_and_give_them_back(operator_client, operator, flat, portal_server):
    portal_server.expect_request("/feed.ics").respond_with_data(feeds.airbnb(("a", days(3), days(6))))
    held = [live_checks._slots.acquire(blocking=False) for _ in range(live_checks.CHECKS_PER_PROCESS)]
    try:
        response = check_link(operator_client, flat, portal_server.url_for("/feed.ics"))
        assert link_errors(response) == ["Many links are being checked right now: try again in a moment."]
    finally:
        for taken in held:
            if taken:
                live_checks._slots.release()
    assert check_link(operator_client, flat, portal_server.url_for("/feed.ics")).status_code == 302
    assert Membership.objects.get(user=operator).live_check_until is None  # the claim is given back


def test_simultaneous_checks_of_a_slow_feed_hold_at_most_two_threads(portal_server, monkeypatch, django_user_model):
    """Eight users click "check" on a slow feed at once: two checks run, six are told to wait."""
    import threading

    from syncs.editing import feed_check
    from tests.factories import MembershipFactory

    monkeypatch.setattr(live_checks, "LIVE_CHECK_SECONDS", 2.0)
    portal_server.expect_request("/slow.ics").respond_with_handler(slow(1))
    users = [MembershipFactory().user for _ in range(8)]
    outcomes, barrier = [], threading.Barrier(8)

    def click(user):
        barrier.wait()
        try:
            live_checks.live_check_run(
                user=user, work=lambda s: feed_check(url=portal_server.url_for("/slow.ics"), timezone="UTC", portal=None, seconds=s)
            )
            outcomes.append("checked")
        except live_checks.CheckBusy:
            outcomes.append("busy")
        except Exception:  # ran, and answered "too slow" (the loopback portal serves one at a time)
            outcomes.append("checked")

    with mock.patch.object(live_checks, "_claim", return_value=None):  # the claims are another test's
        threads = [threading.Thread(target=click, args=(user,)) for user in users]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert sorted(outcomes) == ["busy"] * 6 + ["checked"] * 2


# --------------------------------------------------------------------------- private names and duplicate links


def test_the_checklist_refuses_a_name_of_a_private_address_as_it_refuses_the_address(operator, flat, settings, monkeypatch):
    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if host == "calendar.intranet.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    named = ConnectionFactory(property=flat, import_url="https://calendar.intranet.example/feed.ics")
    literal = ConnectionFactory(property=flat, import_url="https://10.1.2.3/other.ics")
    connect = mock.Mock(side_effect=AssertionError("no connection may be attempted"))
    monkeypatch.setattr(socket.socket, "connect", connect)

    by_name = run_step(connection=named, step="link", user=operator)
    by_address = run_step(connection=literal, step="link", user=operator)

    assert by_name.status == by_address.status == "failed"
    assert by_name.summary == by_address.summary == describe("blocked_address")
    assert [f.ok for f in by_name.findings] == [None, False], "nothing about the name before the refusal"
    connect.assert_not_called()


@pytest.mark.parametrize(
    "spelling",
    [
        "https://WWW.Airbnb.COM/calendar/ical/42.ics?s=Secret",
        "https://www.airbnb.com./calendar/ical/42.ics?s=Secret",
        "https://www.airbnb.com:443/calendar/ical/42.ics?s=Secret",
        "https://www.airbnb.com/calendar/ical/42.ics?s=Secret#calendar",
        "http://www.airbnb.com:80/calendar/ical/42.ics?s=Secret",
        "webcal://www.airbnb.com/calendar/ical/42.ics?s=Secret",
    ],
)
def test_the_same_link_spelt_another_way_is_refused_as_a_duplicate(operator_client, flat, spelling):
    ConnectionFactory(property=flat, portal=portal("airbnb"), import_url="https://www.airbnb.com/calendar/ical/42.ics?s=Secret")
    data = {"import_url": spelling, "portal": portal("airbnb").pk, "direction": "two_way", "sync_interval_minutes": 30,
            "export_summary": "Not available"}
    response = operator_client.post(reverse("connection-create", kwargs={"property_id": flat.pk}), data)
    assert response.status_code == 200
    assert "already imports this link" in link_errors(response)[0]
    assert Connection.objects.count() == 1


def test_a_link_with_another_query_or_path_case_is_another_feed():
    base = "https://www.airbnb.com/calendar/ical/42.ics?s=Secret"
    assert link_identity(base) == link_identity("HTTPS://WWW.AIRBNB.COM.:443/calendar/ical/42.ics?s=Secret#x")
    assert link_identity(base) == link_identity("https://www.airbnb.com/calendar/ical/42.ics?s=Secret")
    assert link_identity(base) != link_identity("https://www.airbnb.com/calendar/ical/42.ics?s=secret")
    assert link_identity(base) != link_identity("https://www.airbnb.com/Calendar/ical/42.ics?s=Secret")
    assert link_identity(base) != link_identity("https://www.airbnb.com:8443/calendar/ical/42.ics?s=Secret")
    assert link_identity("https://example.com/a%2fb") == link_identity("https://example.com/a%2Fb")
    assert link_identity("https://bücher.example/cal.ics") == link_identity("https://xn--bcher-kva.example/cal.ics")


# --------------------------------------------------------------------------- bodies


def test_a_gzip_body_sent_without_content_encoding_is_unpacked(portal_server):
    body = feeds.airbnb(("a", days(3), days(6)))
    portal_server.expect_request("/feed.ics.gz").respond_with_data(gzip.compress(body), content_type="application/gzip")
    result = fetch_feed(portal_server.url_for("/feed.ics.gz"), allow_loopback=True)
    assert result.body == body
    assert result.bytes_read < len(body)


def test_a_gzip_bomb_sent_without_content_encoding_stops_at_the_size_cap(portal_server):
    bomb = gzip.compress(b"BEGIN:VCALENDAR\r\n" + b"\0" * (200 * 1024 * 1024))
    portal_server.expect_request("/bomb.ics").respond_with_data(bomb, content_type="text/calendar")
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        fetch_feed(portal_server.url_for("/bomb.ics"), allow_loopback=True)
    assert caught.value.code == "too_large"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xff\xfe" + "BEGIN:VCALENDAR\r\n".encode("utf-16-le"), id="utf-16-le"),
        pytest.param(b"\xfe\xff" + "BEGIN:VCALENDAR\r\n".encode("utf-16-be"), id="utf-16-be"),
        pytest.param(b"\xef\xbb\xbf\xef\xbb\xbfBEGIN:VCALENDAR\r\n", id="two UTF-8 BOMs"),
    ],
)
def test_a_calendar_in_utf16_or_with_two_boms_is_not_called_a_web_page(portal_server, body):
    portal_server.expect_request("/feed.ics").respond_with_data(body, content_type="text/calendar")
    assert fetch_feed(portal_server.url_for("/feed.ics"), allow_loopback=True).body == body


# --------------------------------------------------------------------------- the run records it


def test_a_sync_of_a_feed_whose_uid_is_shared_by_two_stays_keeps_both_and_changes_nothing_next_time(portal_server, flat):
    connection = ConnectionFactory(property=flat, portal=portal("airbnb"), import_url=portal_server.url_for("/feed.ics"))
    body = feeds.airbnb(("same", days(3), days(6)), ("same", days(10), days(12)))
    portal_server.expect_request("/feed.ics").respond_with_data(body)

    first = connection_sync_leased(connection_id=connection.pk)
    Connection.objects.filter(pk=connection.pk).update(body_fingerprint="")  # read it again, not skipped as unchanged
    second = connection_sync_leased(connection_id=connection.pk)

    nights = sorted(Block.objects.filter(source=connection, removed_at__isnull=True).values_list("start_date", "end_date"))
    assert nights == [(days(3), days(6)), (days(10), days(12))]
    assert (first.events_added, second.outcome, second.events_updated, second.events_added) == (2, "ok_unchanged", 0, 0)
    assert SyncRun.objects.filter(connection=connection).count() == 2
