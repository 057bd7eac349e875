"""The fix checklist, step by step, against loopback portals that fail in each way a step detects."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from syncs.engine.task import connection_sync_leased
from syncs.export_tokens import export_token_ensure, export_url, token_from_nonce
from syncs.models import Account, Block, ChecklistStep, Connection
from syncs.troubleshooting import run_step
from tests import feeds
from tests.factories import BlockFactory, ConnectionFactory, PropertyFactory, portal
from tests.helpers import answer as shared_answer
from tests.jobs import recorded_hand_over

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}



def answer(server, body: bytes = b"", status: int = 200, content_type: str = "text/calendar") -> None:
    shared_answer(server, body, status, path="/cal.ics", content_type=content_type)


@pytest.fixture
def connection(operator, portal_server):
    prop = PropertyFactory(account=Account.of_user(operator), name="Casa Azul")
    return ConnectionFactory(property=prop, portal=portal("airbnb"), import_url=portal_server.url_for("/cal.ics"))


def step(connection, name, operator, action="", form=None):
    return run_step(connection=connection, step=name, user=operator, action=action, form=form or {})


def days(n: int):
    return timezone.localdate() + timedelta(days=n)


def test_step_1_says_a_paused_sync_is_checked_after_switching_it_back_on_then_whether_the_check_worked(
    connection, operator, portal_server
):
    answer(portal_server, b"gone", 404, "text/plain")
    connection_sync_leased(connection_id=connection.pk)  # paused at once: the link is gone
    report = step(connection, "switched_on", operator)
    assert report.status == "failed"
    assert "Airbnb answered 404" in report.summary
    assert report.data["can_switch_on"]

    # Switched back on: not "running" yet, but being checked, and the step asks again until it knows.
    with recorded_hand_over():
        report = step(connection, "switched_on", operator, action="switch_on")
    assert report.status == "waiting"
    assert report.summary == "Switched back on: checking its calendar now…"
    assert report.data["checking"]
    assert Connection.objects.get(pk=connection.pk).sync_requested_at is not None

    connection_sync_leased(connection_id=connection.pk, trigger="manual")  # the check: still 404
    report = step(connection, "switched_on", operator)
    assert report.status == "failed"
    assert report.summary.startswith("Switched back on, but the check failed less than a minute ago: Airbnb answered 404")
    assert report.summary.endswith("It is paused again.")

    answer(portal_server, feeds.airbnb())
    with recorded_hand_over():
        step(connection, "switched_on", operator, action="switch_on")
    connection_sync_leased(connection_id=connection.pk, trigger="manual")  # the check: it works
    report = step(connection, "switched_on", operator)
    assert report.status == "passed"
    assert report.summary == "The sync is switched on and running."
    assert report.findings[0].text == "Switched back on, and its calendar was read without error less than a minute ago."


@pytest.mark.parametrize(
    ("body", "status", "content_type", "words"),
    [
        (b"gone", 404, "text/plain", "Airbnb answered 404: the calendar link no longer exists."),
        (feeds.LOGIN_PAGE, 200, "text/html", "returned a web page, not a calendar"),
        (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\n", 200, "text/calendar", "damaged or cut short"),
        (b"oops", 503, "text/plain", "had an error of its own"),
    ],
)
def test_step_2_says_what_is_wrong_with_the_link_and_where_to_copy_it_again(connection, operator, portal_server, body, status, content_type, words):
    answer(portal_server, body, status, content_type)
    report = step(connection, "link", operator)
    assert report.status == "failed"
    assert words in report.summary
    assert report.advice.startswith("In Airbnb: Calendar > Availability > Connect calendars > Export calendar")
    # What worked is said once the portal answered; nothing is said of the name before that.
    assert any(f.ok for f in report.findings) == (content_type == "text/calendar")
    assert not any("is found" in f.text for f in report.findings)


def test_step_2_reports_the_events_the_dates_and_the_program_of_a_good_feed(connection, operator, portal_server):
    answer(portal_server, feeds.airbnb(("a", days(3), days(6)), ("b", days(10), days(12))))
    report = step(connection, "link", operator)
    assert report.status == "passed"
    texts = " ".join(f.text for f in report.findings)
    assert "2 bookings and blocks" in texts
    assert "Airbnb Inc//Hosting Calendar" in texts
    assert "HTTP 200" in texts


def test_step_2_catches_our_own_export_pasted_back(connection, operator):
    other = ConnectionFactory(property=connection.property, portal=portal("vrbo"))
    Connection.objects.filter(pk=connection.pk).update(import_url=export_url(export_token_ensure(property=other.property, connection=other)))
    connection.refresh_from_db()
    report = step(connection, "link", operator)
    assert report.status == "failed"
    assert "pasted back" in report.summary


def test_step_2_catches_a_link_from_another_portal(operator):
    connection = ConnectionFactory(property=PropertyFactory(account=Account.of_user(operator)), portal=portal("booking"),
                                   import_url="https://www.airbnb.com/calendar/ical/1.ics?s=x")
    report = step(connection, "link", operator)
    assert report.status == "failed"
    assert report.summary == "This looks like a link from Airbnb, but this sync is for Booking.com."


def test_step_3_knows_whether_the_portal_reads_our_calendar(connection, operator, client):
    import time_machine

    with time_machine.travel(timezone.now() + timedelta(hours=10)):
        report = step(connection, "export_pasted", operator)
        assert report.status == "failed"
        assert "probably not pasted into Airbnb" in report.summary
        assert "Import calendar" in report.advice
        token = export_token_ensure(property=connection.property, connection=connection)
        client.get(reverse("export-feed", kwargs={"token": token_from_nonce(token.nonce)}), HTTP_USER_AGENT="Airbnb")
        report = step(connection, "export_pasted", operator)
    assert report.status == "passed"
    assert report.data["export_url"].endswith(".ics")


def test_step_4_runs_the_sync_and_a_sync_that_works_resumes_the_connection(connection, operator, portal_server):
    answer(portal_server, b"gone", 404, "text/plain")
    connection_sync_leased(connection_id=connection.pk)
    connection.refresh_from_db()
    assert connection.paused_at is not None
    answer(portal_server, feeds.airbnb(("a", days(3), days(6))))
    report = step(connection, "resync", operator, action="run")
    # Handed to a worker, as "Sync now" is: the page does not wait on the portal.
    assert report.status == "waiting" and "Syncing Airbnb now" in report.summary
    assert portal_server.log[-1][1].status_code == 404, "nothing fetched by the page itself"
    connection.refresh_from_db()
    assert connection.sync_requested_at is not None
    assert step(connection, "resync", operator).status == "waiting"  # the step's poll, while it waits

    connection_sync_leased(connection_id=connection.pk, trigger="manual")  # what the worker does
    report = step(connection, "resync", operator)
    assert report.status == "passed"
    assert "1 added" in report.summary
    connection.refresh_from_db()
    assert connection.paused_at is None
    assert connection.runs.latest("started_at").trigger == "manual"


def test_step_5_offers_https_when_it_works_and_switches_with_one_click(connection, operator):
    with mock.patch("syncs.troubleshooting.https_variant_works", return_value=True):
        report = step(connection, "https", operator)
    assert (report.status, report.data.get("can_use_https")) == ("needs_you", True)
    Connection.objects.filter(pk=connection.pk).update(lease_holder="claimed-before", lease_until=timezone.now() + timedelta(minutes=2))
    report = step(connection, "https", operator, action="use_https")
    connection.refresh_from_db()
    assert connection.import_url.startswith("https://127.0.0.1")
    assert connection.lease_holder == ""  # a poll of the http:// link still in flight is dropped
    assert report.status == "passed"


def test_step_5_says_when_https_does_not_answer(connection, operator):
    # The loopback portal speaks only plain http: its https variant fails the TLS handshake.
    report = step(connection, "https", operator)
    assert report.status == "info"
    assert "does not answer" in report.summary


def test_step_6_checks_both_ways_and_removes_the_test_block(connection, operator, portal_server, client):
    answer(portal_server, feeds.airbnb(("a", days(3), days(6))))
    connection_sync_leased(connection_id=connection.pk)
    night = days(40)
    report = step(connection, "final_check", operator, action="add_test_block", form={"night": night.isoformat()})
    assert report.status == "waiting"
    assert "Waiting for Airbnb" in report.findings[0].text
    token = export_token_ensure(property=connection.property, connection=connection)
    feed = client.get(reverse("export-feed", kwargs={"token": token_from_nonce(token.nonce)}), HTTP_USER_AGENT="Airbnb/1.0").content
    assert f"DTSTART;VALUE=DATE:{night:%Y%m%d}".encode() in feed  # our test block, visible at once

    # The operator blocks a night on Airbnb; Airbnb's feed gains it.
    theirs = days(50)
    answer(portal_server, feeds.airbnb(("a", days(3), days(6)), blocked=(("test", theirs, theirs + timedelta(days=1)),)))
    report = step(connection, "final_check", operator, action="portal_night", form={"night": theirs.isoformat()})
    assert report.status == "waiting", "a worker syncs it, not the page"
    connection.refresh_from_db()
    assert connection.sync_requested_at is not None
    connection_sync_leased(connection_id=connection.pk, trigger="manual")  # what the worker does
    report = step(connection, "final_check", operator, action="recheck")
    assert report.status == "passed", [f.text for f in report.findings]
    assert "Airbnb has read your calendar since the test block was added" in report.findings[0].text
    assert "reached us" in report.findings[1].text
    assert not Block.objects.current().filter(source__isnull=True, property=connection.property).exists()


def test_step_6_suggests_the_nearest_free_night(connection, operator, portal_server):
    answer(portal_server, feeds.airbnb(("a", days(3), days(6))))
    connection_sync_leased(connection_id=connection.pk)
    BlockFactory(property=connection.property, start_date=days(0), end_date=days(3))
    report = step(connection, "final_check", operator)
    # Tonight to the 2nd are closed here, the 3rd to the 5th booked on Airbnb: the 6th is the first free.
    assert report.data["suggested_night"] == days(6).isoformat()


def test_step_7_lists_what_changed_while_paused_and_the_double_bookings(connection, operator, portal_server):
    answer(portal_server, feeds.airbnb(("a", days(3), days(6))))
    connection_sync_leased(connection_id=connection.pk)
    answer(portal_server, b"gone", 404, "text/plain")
    connection_sync_leased(connection_id=connection.pk)
    vrbo = ConnectionFactory(property=connection.property, portal=portal("vrbo"), import_url=portal_server.url_for("/v.ics"))
    portal_server.expect_request("/v.ics").respond_with_data(feeds.vrbo(("v1", days(4), days(8), "Reserved - Ana")))
    connection_sync_leased(connection_id=vrbo.pk)
    for n in range(21):  # sooner double bookings of the account's other properties come first in its list
        other = PropertyFactory(account=connection.property.account)
        for slug in ("airbnb", "vrbo"):
            source = ConnectionFactory(property=other, portal=portal(slug), import_url=f"https://example.com/{n}-{slug}.ics")
            BlockFactory(property=other, source=source, kind="reserved", start_date=days(1), end_date=days(3))
    report = step(connection, "changes", operator)
    texts = " ".join(f.text for f in report.findings)
    assert "Vrbo: added" in texts
    assert texts.count("Possible double booking") == 1  # this property's, whatever the others
    assert report.status == "failed"


def test_the_checklist_page_shows_every_step_and_remembers_who_checked(operator_client, connection, operator, portal_server):
    answer(portal_server, b"gone", 404, "text/plain")
    page = operator_client.get(reverse("connection-fix", args=[connection.pk])).content.decode()
    for title in ("Is the sync switched on?", "Is the portal", "Is our export link pasted in the portal?", "Run the sync again",
                  "Try https", "Final check, both ways", "What changed while the sync was paused"):
        assert title in page
    fragment = operator_client.get(reverse("connection-fix-step", args=[connection.pk, "link"]), **HTMX).content.decode()
    assert "Airbnb answered 404" in fragment
    saved = ChecklistStep.objects.get(connection=connection, step="link")
    assert (saved.status, saved.checked_by) == ("failed", operator)
    page = operator_client.get(reverse("connection-fix", args=[connection.pk])).content.decode()
    assert f"Last checked by {operator.username}" in page


def test_checklist_actions_are_posts_and_work_without_javascript(operator_client, connection):
    Connection.objects.filter(pk=connection.pk).update(enabled=False)
    url = reverse("connection-fix-step", args=[connection.pk, "switched_on"])
    response = operator_client.post(url, {"action": "switch_on"})
    assert response.status_code == 302
    assert response["Location"].endswith("#step-switched_on")
    connection.refresh_from_db()
    assert connection.enabled


def test_an_unknown_step_is_a_404(operator_client, connection):
    assert operator_client.get(reverse("connection-fix-step", args=[connection.pk, "nope"])).status_code == 404


# --------------------------------------------------------------------------- the checklist follows the truth live


def steps_in(fragment: str) -> dict[str, str]:
    """Each step in an htmx answer, by name: its body's own badge (the status it shows)."""
    found = {}
    for step, body in re.findall(r'<div id="step-(\w+)" class="step"[^>]*>(.*?)(?=<div id="step-|<span id="badge-|\Z)', fragment,
                                 re.DOTALL):
        badge = re.search(r'<span class="badge status-(\w+)">', body)
        found[step] = badge.group(1) if badge else "pending"
    return found


def watching(fragment: str) -> bool:
    watch = re.search(r'<div id="checklist-watch"[^>]*>', fragment)
    assert watch, "the answer says nothing of the page's look"
    return "hx-trigger=" in watch.group(0)


def test_a_new_link_pasted_in_step_2_turns_every_step_from_one_read_and_the_page_follows_its_sync_until_it_ends(
    operator_client, connection, portal_server
):
    """The issue's story: the sync resumed within seconds of a working link, and the open page
    said "Run the sync again: Needs fixing" with the old pause reason for a minute."""
    answer(portal_server, b"gone", 404, "text/plain")
    connection_sync_leased(connection_id=connection.pk)  # paused: the link is gone
    page = operator_client.get(reverse("connection-fix", args=[connection.pk])).content.decode()
    assert not watching(page)
    with mock.patch("syncs.troubleshooting.https_variant_works", return_value=False):  # as the page loads
        operator_client.get(reverse("connection-fix-step", args=[connection.pk, "https"]), **HTMX)
    portal_server.expect_request("/new.ics").respond_with_data(feeds.airbnb(("a", days(3), days(6))), content_type="text/calendar")
    with recorded_hand_over():  # the worker's turn comes below
        response = operator_client.post(reverse("connection-fix-step", args=[connection.pk, "link"]),
                                        {"action": "new_link", "import_url": portal_server.url_for("/new.ics")}, **HTMX)
    fragment = response.content.decode()
    # Every step decided from the read after the save: the link in place, the others beside it;
    # https's reading was of the old link: it reads the new one from the portal, by itself.
    shown = steps_in(fragment)
    assert shown == {"link": "passed", "switched_on": "waiting", "export_pasted": shown["export_pasted"], "resync": "waiting",
                     "https": "pending", "final_check": "waiting", "changes": shown["changes"]}
    assert 'id="step-resync" class="step" hx-swap-oob="true"' in fragment
    assert "Syncing Airbnb now" in fragment and "answered 404" not in fragment.split('id="step-switched_on"')[0]
    assert '<span id="badge-resync" class="badge status-waiting" hx-swap-oob="true">' in fragment
    assert watching(fragment)  # the page looks again while the new link's sync runs

    connection_sync_leased(connection_id=connection.pk, trigger="manual")  # the worker reads the new link
    look = operator_client.get(reverse("connection-fix", args=[connection.pk]), **HTMX)
    assert "HX-Request" in look["Vary"]
    fragment = look.content.decode()
    shown = steps_in(fragment)
    assert (shown["switched_on"], shown["resync"]) == ("passed", "passed")
    assert "link" not in shown  # its reading of the new link stands: the sync read it without error too
    assert "Needs fixing" not in fragment and "404" not in fragment
    assert not watching(fragment)  # the sync ended: the page stops looking
    assert ChecklistStep.objects.get(connection=connection, step="resync").status == "passed"


def test_a_sync_that_read_the_link_since_step_2_s_reading_and_found_otherwise_is_what_step_2_says(
    operator_client, connection, portal_server, operator
):
    answer(portal_server, feeds.airbnb(("a", days(3), days(6))))
    assert step(connection, "link", operator).status == "passed"
    answer(portal_server, b"gone", 404, "text/plain")
    connection_sync_leased(connection_id=connection.pk, trigger="manual")  # the link went away since
    fragment = html.unescape(operator_client.get(reverse("connection-fix", args=[connection.pk]), **HTMX).content.decode())
    assert steps_in(fragment)["link"] == "failed"
    assert "Airbnb answered 404: the calendar link no longer exists." in fragment
    assert "Copy the portal" not in fragment  # Airbnb's own place to copy it is named
    assert "In Airbnb: Calendar > Availability > Connect calendars > Export calendar, and copy the link." in fragment


def test_the_page_stops_looking_for_a_sync_nobody_serves(operator_client, connection):
    import time_machine

    with recorded_hand_over():  # no worker ever takes it
        response = operator_client.post(reverse("connection-fix-step", args=[connection.pk, "resync"]), {"action": "run"}, **HTMX)
    assert watching(response.content.decode())
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        assert watching(operator_client.get(reverse("connection-fix", args=[connection.pk]), **HTMX).content.decode())
    with time_machine.travel(timezone.now() + timedelta(minutes=4)):
        operator_client.force_login(ChecklistStep.objects.get(connection=connection, step="resync").checked_by)
        fragment = operator_client.get(reverse("connection-fix", args=[connection.pk]), **HTMX).content.decode()
    assert not watching(fragment)
    assert steps_in(fragment)["resync"] == "waiting"  # still said as it is: asked for, not done


def test_the_final_check_looks_every_minute_for_the_portal_s_longest_usual_delay_then_says_it_stopped(
    connection, operator, portal_server
):
    import time_machine

    answer(portal_server, feeds.airbnb(("a", days(3), days(6))))
    connection_sync_leased(connection_id=connection.pk)
    report = step(connection, "final_check", operator, action="add_test_block", form={"night": days(40).isoformat()})
    assert report.status == "waiting" and report.data["watch"]
    airbnb_longest = timedelta(minutes=connection.portal.pickup_delay_max_minutes)
    with time_machine.travel(timezone.now() + airbnb_longest - timedelta(minutes=1)):
        assert step(connection, "final_check", operator).data.get("watch")
    with time_machine.travel(timezone.now() + airbnb_longest + timedelta(minutes=1)):
        report = step(connection, "final_check", operator)
    assert report.status == "waiting" and not report.data.get("watch")
    assert "We stopped looking" in report.findings[-1].text


@pytest.mark.parametrize(
    ("language", "portal_s_link", "ours"),
    [
        ("en", "Copy the portal's calendar link again.", "Is our export link pasted in the portal?"),
        ("pt", "Copie outra vez o link do calendário do portal.", "O nosso link de exportação está colado no portal?"),
        ("es", "Vuelva a copiar el enlace del calendario del portal.", "¿Está nuestro enlace de exportación pegado en el portal?"),
    ],
)
def test_the_portal_s_calendar_link_and_our_export_link_are_named_apart_in_every_language(language, portal_s_link, ours):
    from django.utils import translation

    from syncs.explain import describe
    from syncs.troubleshooting import STEP_NAMES

    with translation.override(language):
        assert describe("not_ical", {}, portal="Airbnb").endswith(portal_s_link)
        assert str(STEP_NAMES["export_pasted"]) == ours
