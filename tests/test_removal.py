"""Removing a sync or a property: a page that says what follows first; then gone from every
list, count, tile, timeline, metric, email, digest, webhook scan, double-booking search, task
and export at once; its export URL 410 Gone; its history readable; restored as it was within
30 days; deleted for good by ``prune`` after."""

from __future__ import annotations

import html
import re
from datetime import date, timedelta

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from syncs.dashboard import dashboard_summary
from syncs.digests import digest_message
from syncs.engine.lease import connections_claim_due
from syncs.engine.parse.ical import parse_feed
from syncs.export_tokens import export_token_ensure, token_from_nonce
from syncs.forms import PropertyForm
from syncs.models import (
    Account,
    Activity,
    Block,
    Connection,
    ExportToken,
    Membership,
    NotReadingAlert,
    PauseEpisode,
    Property,
    SyncRun,
    Webhook,
    WebhookDelivery,
)
from syncs.notifications import pause_notifications_send
from syncs.probing import connections_to_probe
from syncs.property_listing import property_rows
from syncs.removal import connection_restore_problem, connections_remove, property_remove
from syncs.sync_requests import sync_request_serve
from syncs.tasks import prune_history
from syncs.timeline import Filter, timeline_read
from syncs.webhooks import scan_double_bookings, scan_not_reading, webhook_deliver
from tests.factories import (
    BlockFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    SyncRunFactory,
    portal,
)
from tests.helpers import TODAY, d  # Lisbon is on UTC in January: its today is the tests'

pytestmark = pytest.mark.django_db




@pytest.fixture(autouse=True)
def _clock(clock):
    """Every test here runs on the shared clock (asked for before any client logs in)."""
    return clock


@pytest.fixture(autouse=True)
def _record_every_read(settings):
    settings.EXPORT_READ_FLUSH_SECONDS = 0


@pytest.fixture
def account(operator):
    return Account.of_user(operator)


@pytest.fixture
def casa(account):
    """Casa Azul with three syncs. Airbnb brings 13-16 January and 30 January-2 February; Vrbo
    31 January (a double booking with Airbnb); Booking.com 20-22 January; 9 February is closed here."""
    prop = PropertyFactory(account=account, name="Casa Azul", timezone="Europe/Lisbon")
    airbnb = ConnectionFactory(property=prop, portal=portal("airbnb"), last_success_at=timezone.now())
    booking = ConnectionFactory(property=prop, portal=portal("booking"), last_success_at=timezone.now())
    vrbo = ConnectionFactory(property=prop, portal=portal("vrbo"), last_success_at=timezone.now())
    BlockFactory(property=prop, source=airbnb, kind="reserved", start_date=d(3), end_date=d(6))
    BlockFactory(property=prop, source=airbnb, kind="reserved", start_date=d(20), end_date=d(23))
    BlockFactory(property=prop, source=vrbo, kind="reserved", start_date=d(21), end_date=d(22))
    BlockFactory(property=prop, source=booking, kind="blocked", start_date=d(10), end_date=d(12))
    BlockFactory(property=prop, source=None, kind="blocked", start_date=d(30), end_date=d(31))
    SyncRunFactory(connection=airbnb, outcome="ok_changed", events_added=2)
    return prop, airbnb, booking, vrbo


def url_of(prop, connection=None) -> str:
    token = export_token_ensure(property=prop, connection=connection)
    return reverse("export-feed", kwargs={"token": token_from_nonce(token.nonce)})


def nights(client, path) -> list[tuple[date, date]]:
    response = client.get(path)
    assert response.status_code == 200
    return [(e.start, e.end) for e in parse_feed(response.content, timezone="Europe/Lisbon", today=TODAY).events]


def said(response) -> list[str]:
    """The messages as read (their links' words, entities decoded)."""
    return [html.unescape(re.sub(r"<[^>]+>", "", str(message))) for message in get_messages(response.wsgi_request)]


def text(response) -> str:
    """The page as read: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


def remove(client, connection):
    return client.post(reverse("connection-remove", args=[connection.pk]))


# --------------------------------------------------------------------------- the confirmation


def test_the_confirmation_says_which_nights_leave_which_portals_calendars_and_changes_nothing(operator_client, casa):
    _prop, airbnb, _booking, _vrbo = casa
    edit_page = operator_client.get(reverse("connection-edit", args=[airbnb.pk])).content.decode()
    assert reverse("connection-remove", args=[airbnb.pk]) in edit_page

    page = text(operator_client.get(reverse("connection-remove", args=[airbnb.pk])))

    assert "Remove the Airbnb sync of Casa Azul?" in page
    # Booking.com keeps 31 January (Vrbo has it too) and its own 20-22 January.
    assert ("The calendar we publish for Booking.com: 5 nights leave it, at once: 13 January to 16 January 2027 "
            "(check-out); 30 January to 31 January 2027 (check-out); 1 February to 2 February 2027 (check-out). "
            "Booking.com sees these nights free after its next read of our calendar. "
            "Booking.com usually takes 60 to 240 minutes.") in page
    # Vrbo's calendar never held its own 31 January: every night Airbnb brought leaves it.
    assert ("The calendar we publish for Vrbo: 6 nights leave it, at once: 13 January to 16 January 2027 "
            "(check-out); 30 January to 2 February 2027 (check-out)") in page
    assert ("The whole calendar (for Google Calendar or your own use): 5 nights leave it") in page
    # Airbnb's own calendar: Booking.com's 2 nights, Vrbo's 1, the 1 closed here.
    assert "The calendar we publish for Airbnb (4 nights taken now): its URL answers “gone” from now on." in page
    assert "remove the calendar imported from us in Airbnb's calendar settings." in page
    assert "for 30 days you can restore what you remove from its page" in page
    airbnb.refresh_from_db()
    assert airbnb.archived_at is None
    assert not Activity.objects.filter(action="connection_removed").exists()


def test_only_managers_and_owners_may_remove_or_restore(client, casa):
    _prop, airbnb, _booking, _vrbo = casa
    viewer = MembershipFactory(account=airbnb.property.account, role=Membership.Role.VIEWER)
    client.force_login(viewer.user)
    assert client.get(reverse("connection-remove", args=[airbnb.pk])).status_code == 403
    assert client.post(reverse("connection-remove", args=[airbnb.pk])).status_code == 403
    connections_remove(user=None, connections=[airbnb])
    page = client.get(reverse("connection-detail", args=[airbnb.pk])).content.decode()
    assert "Removed on" in page
    assert reverse("connection-restore", args=[airbnb.pk]) not in page
    assert client.post(reverse("connection-restore", args=[airbnb.pk])).status_code == 403


# --------------------------------------------------------------------------- gone everywhere


def test_a_removed_sync_is_gone_from_the_overview_tiles_property_list_and_timeline(operator, operator_client, account, casa):
    prop, airbnb, booking, vrbo = casa
    Connection.objects.filter(pk=airbnb.pk).update(paused_at=timezone.now(), pause_reason="http_4xx", pause_params={"status": 404})
    before = dashboard_summary(user=operator)
    assert (before.total, before.counts["paused"], len(before.conflicts)) == (3, 1, 1)

    response = remove(operator_client, airbnb)

    assert response.status_code == 302 and response["Location"] == reverse("property-detail", args=[prop.pk])
    after = dashboard_summary(user=operator)
    assert (after.total, after.counts["paused"], after.attention, after.conflicts) == (2, 0, [], [])
    page = operator_client.get(reverse("property-detail", args=[prop.pk])).content.decode()
    assert f'id="connection-{airbnb.pk}"' not in page  # not among its syncs
    assert "1 removed sync, restorable for a while" in page
    overview = operator_client.get(reverse("home")).content.decode()
    assert reverse("connection-detail", args=[airbnb.pk]) not in overview
    assert [row.syncs for row in property_rows([prop.pk])] == [2]
    timeline = timeline_read(account=account, chosen=Filter(), start=TODAY)
    [row] = timeline.rows
    assert {chip.connection.pk for chip in row.syncs} == {vrbo.pk, booking.pk}
    taken = {night.day for night in row.nights if night.portals}
    assert d(3) not in taken and d(20) not in taken and d(21) in taken
    assert not any(night.conflict for night in row.nights)
    assert timeline.matching_syncs == 2
    assert timeline_read(account=account, chosen=Filter(portal="airbnb"), start=TODAY).rows == []


def test_a_removed_sync_leaves_the_metrics(client, settings, casa):
    settings.METRICS_TOKEN = "s3cret"
    _prop, airbnb, _booking, _vrbo = casa
    Connection.objects.filter(pk=airbnb.pk).update(paused_at=timezone.now(), pause_reason="timeout", sync_requested_at=timezone.now())
    connections_remove(user=None, connections=[airbnb])

    response = client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer s3cret")
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}

    by_state = {s.labels["state"]: s.value for s in families["channelmgr_syncs"].samples}
    assert sum(by_state.values()) == 2 and by_state["paused"] == 0
    assert families["channelmgr_sync_requests_waiting"].samples[0].value == 0


def test_a_removed_sync_is_not_dispatched_probed_or_served_a_sync_now(casa):
    _prop, airbnb, booking, vrbo = casa
    Connection.objects.filter(pk=airbnb.pk).update(next_sync_at=None, sync_requested_at=timezone.now() - timedelta(minutes=5))
    Connection.objects.filter(pk=booking.pk).update(paused_at=timezone.now(), pause_reason="timeout")
    Connection.objects.filter(pk=vrbo.pk).update(next_sync_at=timezone.now() + timedelta(hours=1))
    connections_remove(user=None, connections=[airbnb, booking])

    assert connections_claim_due() == []
    # A request left waiting for a removed sync is served by no sync.
    runs = SyncRun.objects.filter(connection_id=airbnb.pk).count()
    assert sync_request_serve(connection_id=airbnb.pk) is None
    assert SyncRun.objects.filter(connection_id=airbnb.pk).count() == runs
    assert connections_to_probe(now=timezone.now()) == []


def test_a_sync_removed_mid_poll_records_nothing_of_that_poll(casa):
    _prop, airbnb, _booking, _vrbo = casa
    Connection.objects.filter(pk=airbnb.pk).update(lease_holder="worker:1", lease_until=timezone.now() + timedelta(minutes=5))
    version = Connection.objects.get(pk=airbnb.pk).settings_version

    connections_remove(user=None, connections=[airbnb])

    row = Connection.all_objects.get(pk=airbnb.pk)
    assert row.settings_version == version + 1  # a poll that read `version` records nothing (syncs.engine.record)
    assert (row.lease_holder, row.lease_until) == ("", None)


def test_no_pause_email_reminder_or_digest_about_a_removed_sync(mailoutbox, account, casa):
    _prop, airbnb, _booking, _vrbo = casa
    Connection.objects.filter(pk=airbnb.pk).update(paused_at=timezone.now(), pause_reason="timeout")
    PauseEpisode.objects.create(connection=airbnb, reason="timeout")
    digest = Membership.objects.get(account=account)
    assert digest_message(membership=digest, since=timezone.now() - timedelta(days=1), now=timezone.now()) is not None

    connections_remove(user=None, connections=[airbnb])

    assert pause_notifications_send() == 0
    assert mailoutbox == []
    assert digest_message(membership=digest, since=timezone.now() - timedelta(days=1), now=timezone.now()) is None


def test_the_webhook_scans_skip_a_removed_sync(account, casa):
    prop, airbnb, _booking, _vrbo = casa
    Webhook.objects.create(account=account, url="https://hooks.example.com/x", events=["double_booking", "not_reading"], secret_nonce="n")
    quiet = ConnectionFactory(property=prop, portal=portal("other"), direction="export_only", import_url="")
    ExportToken.objects.filter(connection=quiet).update(created_at=timezone.now() - timedelta(days=30))
    connections_remove(user=None, connections=[airbnb, quiet])

    assert scan_double_bookings(now=timezone.now()) == 0
    assert scan_not_reading(now=timezone.now()) == 0
    assert not NotReadingAlert.objects.exists()


def test_a_webhook_about_a_sync_removed_before_its_delivery_is_dropped_not_sent(account, casa):
    _prop, airbnb, _booking, _vrbo = casa
    Webhook.objects.create(account=account, url="https://hooks.example.com/x", events=["paused"], secret_nonce="n")
    Connection.objects.filter(pk=airbnb.pk).update(paused_at=timezone.now(), pause_reason="timeout")
    PauseEpisode.objects.create(connection=airbnb, reason="timeout")
    pause_notifications_send()
    delivery = WebhookDelivery.objects.get()

    connections_remove(user=None, connections=[airbnb])

    assert webhook_deliver(delivery_id=delivery.pk) == "dropped"


# --------------------------------------------------------------------------- the exports


def test_the_other_exports_drop_its_nights_at_once_and_its_own_url_answers_410(client, operator_client, casa):
    prop, airbnb, booking, vrbo = casa
    booking_url, whole_url, airbnb_url = url_of(prop, booking), url_of(prop), url_of(prop, airbnb)
    assert nights(client, booking_url) == [(d(3), d(6)), (d(20), d(23)), (d(30), d(31))]
    old = client.get(booking_url)

    remove(operator_client, airbnb)

    # Not "304 Not Modified" for the calendar a portal kept: the new one, without Airbnb's nights.
    fresh = client.get(booking_url, HTTP_IF_NONE_MATCH=old["ETag"])
    assert fresh.status_code == 200 and fresh["ETag"] != old["ETag"]
    assert nights(client, booking_url) == [(d(21), d(22)), (d(30), d(31))]
    assert nights(client, url_of(prop, vrbo)) == [(d(10), d(12)), (d(30), d(31))]
    assert nights(client, whole_url) == [(d(10), d(12)), (d(21), d(22)), (d(30), d(31))]
    gone = client.get(airbnb_url)
    assert gone.status_code == 410
    assert gone.content == b"Gone: this calendar was removed.\n"
    assert operator_client.get(reverse("connection-export-download", args=[airbnb.pk])).status_code == 404


def test_a_removed_property_answers_410_on_every_url(client, operator_client, casa):
    prop, airbnb, booking, vrbo = casa
    urls = [url_of(prop), *(url_of(prop, c) for c in (airbnb, booking, vrbo))]

    operator_client.post(reverse("property-remove", args=[prop.pk]))

    assert [client.get(url).status_code for url in urls] == [410, 410, 410, 410]


# --------------------------------------------------------------------------- history and restore


def test_its_page_stays_readable_and_says_who_removed_it_and_until_when_it_can_come_back(operator, operator_client, casa):
    _prop, airbnb, _booking, _vrbo = casa
    response = remove(operator_client, airbnb)
    assert any("You can restore it from its page until 9 February 2027" in m for m in said(response))

    page = text(operator_client.get(reverse("connection-detail", args=[airbnb.pk])))

    assert f"Removed on 10 January 2027 by {operator.username}; restore until 9 February 2027." in page
    assert "Sync history" in page and "Synced: the calendar changed and was updated." in page
    assert "Jan. 13, 2027 Jan. 16, 2027 Reserved" in page  # the nights it brought, which a restore brings back
    assert f"{operator.username} removed the sync" in page
    assert Activity.objects.get(action="connection_removed").user == operator
    for name in ("connection-edit", "connection-switch", "connection-sync-now", "connection-fix", "connection-row"):
        assert operator_client.get(reverse(name, args=[airbnb.pk])).status_code in (404, 405), name


def test_restoring_brings_back_its_nights_and_its_export_url_as_they_were(client, operator_client, casa):
    prop, airbnb, booking, _vrbo = casa
    airbnb_url, booking_url = url_of(prop, airbnb), url_of(prop, booking)
    before = (nights(client, airbnb_url), nights(client, booking_url))
    remove(operator_client, airbnb)
    assert client.get(airbnb_url).status_code == 410

    response = operator_client.post(reverse("connection-restore", args=[airbnb.pk]))

    assert response["Location"] == reverse("connection-detail", args=[airbnb.pk])
    assert said(response)[-1].startswith("Restored the Airbnb sync of Casa Azul")
    assert (nights(client, airbnb_url), nights(client, booking_url)) == before
    airbnb = Connection.objects.get(pk=airbnb.pk)
    assert (airbnb.archived_at, airbnb.archived_by) == (None, None)
    assert airbnb.next_sync_at <= timezone.now()  # reads its portal at once
    assert list(Activity.objects.filter(connection=airbnb).values_list("action", flat=True)) == [
        "connection_restored", "connection_removed",
    ]


def test_a_sync_whose_link_another_sync_took_since_cannot_be_restored_and_the_page_says_which(operator_client, account, casa):
    _prop, airbnb, _booking, _vrbo = casa
    connections_remove(user=None, connections=[airbnb])
    loft = PropertyFactory(account=account, name="Beach Loft")
    holder = ConnectionFactory(property=loft, portal=portal("airbnb"), import_url=airbnb.import_url.replace("https", "http"))

    page = operator_client.get(reverse("connection-detail", args=[airbnb.pk])).content.decode()
    assert (f'Its link is now imported by the <a href="{reverse("connection-detail", args=[holder.pk])}">Airbnb</a> sync '
            f'of <a href="{reverse("property-detail", args=[loft.pk])}">Beach Loft</a>') in page
    assert reverse("connection-restore", args=[airbnb.pk]) not in page

    response = operator_client.post(reverse("connection-restore", args=[airbnb.pk]))
    assert "Its link is now imported by the Airbnb sync of Beach Loft" in said(response)[-1]
    assert Connection.all_objects.get(pk=airbnb.pk).archived_at is not None


def test_prune_deletes_what_was_removed_30_days_ago_and_leaves_one_entry_naming_it(clock, operator, casa):
    prop, airbnb, _booking, _vrbo = casa
    connections_remove(user=operator, connections=[airbnb])
    clock.shift(timedelta(days=29, hours=23))
    call_command("prune", stdout=open("/dev/null", "w"))  # noqa: SIM115
    assert Connection.all_objects.filter(pk=airbnb.pk).exists()

    clock.shift(timedelta(hours=2))
    page_words = text_of_restore_problem(airbnb)
    assert "It was removed more than 30 days ago: it can no longer be restored" in page_words
    prune_history()

    assert not Connection.all_objects.filter(pk=airbnb.pk).exists()
    assert not Block.objects.filter(source_id=airbnb.pk).exists()
    assert not SyncRun.objects.filter(connection_id=airbnb.pk).exists()
    entry = Activity.objects.get(action="removed_deleted")
    assert (entry.property, entry.user, entry.params["portal"], entry.params["removed_by"]) == (prop, None, "Airbnb", operator.username)
    assert Connection.objects.filter(property=prop).count() == 2  # the others live on


def text_of_restore_problem(connection) -> str:
    return connection_restore_problem(Connection.all_objects.select_related("property").get(pk=connection.pk))


# --------------------------------------------------------------------------- properties


def test_removing_a_property_says_what_follows_then_takes_its_syncs_with_it(operator, operator_client, casa):
    prop, _airbnb, _booking, _vrbo = casa
    edit_page = operator_client.get(reverse("property-edit", args=[prop.pk])).content.decode()
    assert reverse("property-remove", args=[prop.pk]) in edit_page
    confirm = text(operator_client.get(reverse("property-remove", args=[prop.pk])))
    assert "Remove Casa Azul?" in confirm
    assert "The property and its 3 syncs leave every list, count, email and calendar: Airbnb, Booking.com, Vrbo." in confirm
    assert "The whole calendar (9 nights taken now): its URL answers “gone” from now on." in confirm
    assert Property.objects.filter(pk=prop.pk).exists()

    response = operator_client.post(reverse("property-remove", args=[prop.pk]))

    assert response["Location"] == reverse("property-list")
    assert not Property.objects.filter(pk=prop.pk).exists()
    assert not Connection.objects.filter(property_id=prop.pk).exists()
    assert dashboard_summary(user=operator).total == 0
    assert "Removed Casa Azul and its syncs." in text(operator_client.get(response["Location"]))  # once
    assert "Casa Azul" not in operator_client.get(reverse("property-list")).content.decode()
    assert "Casa Azul" not in operator_client.get(reverse("timeline")).content.decode()
    page = text(operator_client.get(reverse("property-detail", args=[prop.pk])))
    assert f"Removed on 10 January 2027 by {operator.username}; restore until 9 February 2027." in page
    assert Activity.objects.get(action="property_removed").params == {"syncs": 3}


def test_restoring_a_property_brings_back_the_syncs_removed_with_it_but_not_those_removed_before(clock, client, operator_client, casa):
    prop, airbnb, booking, vrbo = casa
    connections_remove(user=None, connections=[vrbo])
    clock.shift(timedelta(hours=1))
    property_remove(user=None, property=prop)
    assert client.get(url_of(prop, booking)).status_code == 410

    response = operator_client.post(reverse("property-restore", args=[prop.pk]))

    assert said(response)[-1] == "Restored Casa Azul with 2 syncs: its nights and export URLs work again as they were."
    assert set(Connection.objects.filter(property=prop)) == {airbnb, booking}
    assert Connection.all_objects.get(pk=vrbo.pk).archived_at is not None
    assert nights(client, url_of(prop, booking)) == [(d(3), d(6)), (d(20), d(23)), (d(30), d(31))]


def test_a_removed_propertys_name_is_kept_for_it_until_it_is_deleted(operator, casa):
    prop = casa[0]
    property_remove(user=None, property=prop)

    form = PropertyForm({"name": "casa  azul", "timezone": "Europe/Lisbon"}, user=operator)

    assert not form.is_valid()
    [error] = form.errors["name"]
    assert error == "Casa Azul is the name of a property removed on 10 January 2027. Restore it from its page, or choose another name."


# --------------------------------------------------------------------------- the bulk bar


def test_bulk_remove_asks_once_for_the_lot_then_removes_exactly_what_it_showed(operator_client, account, casa):
    _prop, airbnb, booking, vrbo = casa
    other = ConnectionFactory(property=PropertyFactory(account=account, name="Beach Loft"), portal=portal("airbnb"))

    confirm = operator_client.post(reverse("bulk-action"), {"action": "remove", "connection": [airbnb.pk, other.pk], "next": "/timeline/"})

    assert confirm.status_code == 200
    page = text(confirm)
    assert "Remove 2 syncs?" in page and "Beach Loft" in page and "Casa Azul" in page
    assert Connection.objects.count() == 4
    body = confirm.content.decode()
    assert body.count('name="connection"') == 2 and 'name="confirmed" value="1"' in body

    response = operator_client.post(
        reverse("bulk-action"), {"action": "remove", "confirmed": "1", "connection": [airbnb.pk, other.pk], "next": "/timeline/"}
    )

    assert response["Location"] == "/timeline/"
    assert set(Connection.objects.all()) == {booking, vrbo}
    assert said(response) == ["2 syncs removed: each can be restored from its page for 30 days."]
    assert Activity.objects.get(action="bulk_removed").params["count"] == 2


def test_bulk_remove_of_all_matching_a_filter_confirms_the_syncs_it_lists(operator_client, account, casa):
    _prop, airbnb, _booking, _vrbo = casa
    confirm = operator_client.post(reverse("bulk-action"), {"action": "remove", "all": "1", "portal": "airbnb"})
    body = confirm.content.decode()
    assert re.findall(r'name="connection" value="(\d+)"', body) == [str(airbnb.pk)]
    assert Connection.objects.count() == 3


# --------------------------------------------------------------------------- two accounts


def test_removing_in_one_account_changes_nothing_in_another_that_holds_the_same_link(client, operator_client, casa):
    _prop, airbnb, _booking, _vrbo = casa
    theirs = MembershipFactory()
    villa = PropertyFactory(account=theirs.account, name="Their Villa")
    handed = ConnectionFactory(property=villa, portal=portal("airbnb"), import_url=airbnb.import_url)
    their_booking = ConnectionFactory(property=villa, portal=portal("booking"))
    BlockFactory(property=villa, source=handed, kind="reserved", start_date=d(3), end_date=d(6))

    remove(operator_client, airbnb)

    assert Connection.objects.filter(pk=handed.pk).exists()
    assert dashboard_summary(user=theirs.user).total == 2
    assert nights(client, url_of(villa, their_booking)) == [(d(3), d(6))]
    assert operator_client.post(reverse("connection-remove", args=[handed.pk])).status_code == 404
    assert operator_client.post(reverse("connection-restore", args=[handed.pk])).status_code == 404
