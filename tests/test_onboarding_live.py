"""“Check each new link live first”: every row ends with a verdict in words, whatever the portal
does, and the page stops asking when nothing more will come."""

from __future__ import annotations

import logging
import socket
import threading
from datetime import timedelta

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from django_htmx.http import HttpResponseStopPolling

from channelmgr.celery import app
from syncs.models import LinkCheck, Membership, OnboardingUpload
from syncs.onboarding import live
from tests import feeds
from tests.factories import ConnectionFactory, MembershipFactory, PropertyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(client):
    membership = MembershipFactory(role=Membership.Role.MANAGER)
    client.force_login(membership.user)
    return membership


@pytest.fixture
def worker(monkeypatch, django_capture_on_commit_callbacks):
    """The worker, played in the test's own thread: each link task runs where it is published.
    Returns how many link tasks ran."""
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setattr(live, "_in_background", live._publish)
    ran = []
    real = live.onboarding_check_link.run
    monkeypatch.setattr(live.onboarding_check_link, "run", lambda *args: (ran.append(args), real(*args))[1])
    return ran


@pytest.fixture
def quick(monkeypatch):
    """A short fetch deadline for the live check, so that a hanging link ends the test quickly."""
    monkeypatch.setattr(live, "LINK_CHECK_SECONDS", 1.0)
    monkeypatch.setattr(live, "_THREAD_MARGIN", 0.5)


@pytest.fixture
def silent_port():
    """A port that takes connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


def upload(client, lines: list[str]):
    data = ("Property,Time zone,Portal,Import link\n" + "\n".join(lines)).encode()
    client.post(reverse("onboarding"), {"file": SimpleUploadedFile("syncs.csv", data, "text/csv")})
    return OnboardingUpload.objects.latest("pk")


def check_live(client, checked, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("onboarding-live", args=[checked.pk]))


def page(client, checked) -> str:
    html = client.get(reverse("onboarding-preview", args=[checked.pk])).content.decode()
    return html.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&")


def verdict_of(html: str, line: int) -> str:
    row = html.split(f'id="row-{line}"')[1].split("</tr>")[0]
    return row.split('class="live-verdict">')[1]


def test_every_failure_of_the_fetch_and_the_parser_is_a_verdict_in_words(
    client, manager, portal_server, worker, quick, silent_port, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    today = timezone.localdate()
    portal_server.expect_request("/good.ics").respond_with_data(
        feeds.airbnb(("a", today + timedelta(days=3), today + timedelta(days=5)),
                     ("b", today + timedelta(days=9), today + timedelta(days=12))),
        content_type="text/calendar",
    )
    portal_server.expect_request("/gone.ics").respond_with_data("Not Found", status=404)
    portal_server.expect_request("/login.ics").respond_with_data(
        "<!DOCTYPE html><html><body>Sign in</body></html>", content_type="text/html"
    )
    portal_server.expect_request("/json.ics").respond_with_json({"error": "no calendar"})
    portal_server.expect_request("/huge.ics").respond_with_data(b"BEGIN:VCALENDAR\r\n" + b"X" * (6 * 1024 * 1024))
    portal_server.expect_request("/broken.ics").respond_with_data(
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:2027\x00\r\n", content_type="text/calendar"
    )
    portal_server.expect_request("/odd.ics").respond_with_data(feeds.airbnb(), content_type="text/calendar")
    portal_server.expect_request("/empty.ics").respond_with_data(b"", content_type="text/calendar")  # Booking.com's empty
    with socket.create_server(("127.0.0.1", 0)) as probe:
        refused_port = probe.getsockname()[1]
    base = portal_server.url_for("/")
    rows = {
        2: ("works", f"{base}good.ics", "The link works: 2 bookings and blocks."),
        3: ("404", f"{base}gone.ics", "The portal answered 404: the calendar link no longer exists"),
        4: ("an HTML page", f"{base}login.ics", "The link returned a web page, not a calendar"),
        5: ("not a calendar", f"{base}json.ics", "The link returned a web page, not a calendar"),
        6: ("too big", f"{base}huge.ics", "The calendar is larger than we accept (5 MiB)"),
        7: ("a parse error", f"{base}broken.ics", "The calendar could not be read: it is damaged or cut short."),
        8: ("a hang", f"http://127.0.0.1:{silent_port}/slow.ics", "The portal took too long to answer."),
        9: ("DNS", "https://calendar.nowhere-to-be-found.example/x.ics", "The portal's address could not be found (DNS)."),
        10: ("refused", f"http://127.0.0.1:{refused_port}/x.ics", "The portal could not be reached (connection refused or no route)."),
        11: ("TLS", f"https://127.0.0.1:{portal_server.port}/tls.ics", "The secure connection to the portal failed"),
        12: ("an unexpected exception", f"{base}odd.ics", "Could not be checked: an error on our side (it was logged)."),
        13: ("an empty calendar", f"{base}empty.ics", "The link works; the calendar has no bookings or blocks for now."),
    }
    checked = upload(client, [f"Flat {line},Europe/Lisbon,Other,{url}" for line, (_name, url, _words) in rows.items()])
    assert all(not row["errors"] for row in checked.rows), checked.rows

    real_parse = live.feed_check.__globals__["parse_feed"]

    def parse_or_explode(body, **kwargs):
        if body == feeds.airbnb():
            raise RuntimeError("a bug of ours")
        return real_parse(body, **kwargs)

    monkeypatch.setitem(live.feed_check.__globals__, "parse_feed", parse_or_explode)
    with caplog.at_level(logging.ERROR, logger="syncs.onboarding.live"):
        check_live(client, checked, django_capture_on_commit_callbacks)
    assert len(worker) == len(rows)
    html = page(client, checked)
    assert "Links checked: 12 of 12" in html
    for line, (name, _url, words) in rows.items():
        assert words in verdict_of(html, line), name
    assert "RuntimeError: a bug of ours" in caplog.text  # logged with its traceback
    # Nothing is left to wait for: the poll stops.
    response = client.get(reverse("onboarding-progress", args=[checked.pk]))
    assert response.status_code == HttpResponseStopPolling.status_code


def test_a_read_that_never_ends_is_a_timeout_verdict_within_the_deadline(client, manager, worker, quick, monkeypatch,
                                                                         django_capture_on_commit_callbacks):
    """A name look-up cannot be cut short: the task stops waiting for it."""
    release = threading.Event()
    monkeypatch.setattr(live, "feed_check", lambda **kwargs: release.wait(30))
    checked = upload(client, ["Flat,Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/1.ics?s=x"])
    try:
        check_live(client, checked, django_capture_on_commit_callbacks)
    finally:
        release.set()
    [verdict] = LinkCheck.objects.all()
    assert (verdict.ok, verdict.code) == (False, "timeout")
    assert "Airbnb took too long to answer." in page(client, checked)


def test_a_second_press_within_ten_minutes_reads_no_link_again(client, manager, portal_server, feed_url, worker,
                                                              django_capture_on_commit_callbacks):
    checked = upload(client, [f"Flat,Europe/Lisbon,Other,{feed_url}", f"Flat 2,Europe/Lisbon,Other,{feed_url}"])
    check_live(client, checked, django_capture_on_commit_callbacks)
    assert len(worker) == 1  # the same link on two rows is read once
    assert len(portal_server.log) == 1
    with time_machine.travel(timezone.now() + timedelta(minutes=9)):
        check_live(client, checked, django_capture_on_commit_callbacks)
        again = upload(client, [f"Flat,Europe/Lisbon,Other,{feed_url}"])  # the same link in a new file
        check_live(client, again, django_capture_on_commit_callbacks)
        assert "The link works: 1 booking or block." in page(client, again)
    assert len(portal_server.log) == 1
    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        check_live(client, checked, django_capture_on_commit_callbacks)
    assert len(portal_server.log) == 2


def test_without_a_worker_the_rows_say_they_could_not_be_checked_and_the_poll_stops(
    client, manager, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(live, "_in_background", lambda upload_id, indexes: None)  # the broker lost them
    checked = upload(client, ["Flat,Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/1.ics?s=x"])
    check_live(client, checked, django_capture_on_commit_callbacks)
    progress = client.get(reverse("onboarding-progress", args=[checked.pk]))
    assert progress.status_code == 200 and "Checking…" in progress.content.decode()
    with time_machine.travel(timezone.now() + live.SILENT_FOR + timedelta(seconds=1)):
        progress = client.get(reverse("onboarding-progress", args=[checked.pk]))
        assert progress.status_code == HttpResponseStopPolling.status_code
        assert "Could not be checked: no worker read it in time." in progress.content.decode()


def test_only_new_links_are_checked_and_a_row_in_error_is_not(client, manager, worker, portal_server, feed_url,
                                                              django_capture_on_commit_callbacks):
    old = ConnectionFactory(property=PropertyFactory(account=manager.account, name="Old"))
    data = (
        "Sync id,Property,Time zone,Portal,Import link,Interval (minutes)\n"
        f"{old.pk},Old,,,{old.import_url},60\n"
        f",New,Europe/Lisbon,Other,{feed_url},\n"
        ",New,,Other,not a link at all,\n"
    )
    client.post(reverse("onboarding"), {"file": SimpleUploadedFile("syncs.csv", data.encode(), "text/csv")})
    checked = OnboardingUpload.objects.get()
    check_live(client, checked, django_capture_on_commit_callbacks)
    assert [args[1] for args in worker] == [1]
    assert "Links checked: 1 of 1" in page(client, checked)
