"""Every query that reads across properties, with two accounts whose data would show if the
account filter went missing: double bookings on the overview and in the digest, the timeline,
the properties list and its search, the CSVs, the onboarding file's property look-up, bulk
actions and the webhooks' scans (issue 33). Each account has the same shape (a double booking,
a paused sync, activity), so a missing filter shows the other account's names."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from syncs.activity import activity_record
from syncs.conflicts import conflicts_listed
from syncs.digests import digest_message
from syncs.export_tokens import export_token_ensure
from syncs.models import (
    Activity,
    Block,
    Connection,
    ExportToken,
    Membership,
    OnboardingUpload,
    PauseEpisode,
    Property,
    WebhookDelivery,
)
from syncs.sync_state import state_record
from syncs.webhooks import scan_double_bookings, scan_not_reading, webhook_create
from tests.conftest import NOW
from tests.factories import (
    BlockFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    portal,
)
from tests.helpers import d

pytestmark = pytest.mark.django_db

MINE, THEIRS = "Casa Azul", "Villa Outra"



def account_with(name: str, *, role=Membership.Role.OWNER) -> Membership:
    """An account whose property ``name`` has a double booking (Airbnb and Booking.com on the
    same nights), a paused sync, and a line in the activity log."""
    membership = MembershipFactory(role=role)
    prop = PropertyFactory(account=membership.account, name=name, timezone="Europe/Lisbon")
    airbnb = ConnectionFactory(property=prop, portal=portal("airbnb"))
    booking = ConnectionFactory(property=prop, portal=portal("booking"))
    ConnectionFactory(property=prop, portal=portal("vrbo"), paused_at=NOW, pause_reason="timeout")
    BlockFactory(property=prop, source=airbnb, uid=f"{name}-a", kind="reserved", start_date=d(10), end_date=d(13))
    BlockFactory(property=prop, source=booking, uid=f"{name}-b", kind="reserved", start_date=d(11), end_date=d(14))
    activity_record(user=membership.user, action=Activity.Action.PROPERTY_CREATED, property=prop)
    return membership


@pytest.fixture
def mine(clock):
    return account_with(MINE)


@pytest.fixture
def theirs(clock):
    return account_with(THEIRS)


@pytest.fixture
def signed_in(client, mine, theirs):
    client.force_login(mine.user)
    return client


def text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


@pytest.mark.parametrize(
    "url",
    [
        reverse("home"),
        reverse("overview-status"),
        reverse("property-list"),
        reverse("property-list") + "?q=villa",
        reverse("property-list") + "?health=attention",
        reverse("property-list-csv"),
        reverse("exports-csv"),
        reverse("timeline"),
        reverse("timeline") + "?q=villa",
        reverse("timeline") + "?state=paused",
        reverse("activity"),
        reverse("webhooks"),
        reverse("onboarding"),
    ],
)
def test_no_page_of_one_account_shows_another_account_s_property(signed_in, url):
    assert THEIRS not in text(signed_in.get(url))


def test_the_overview_lists_the_account_s_own_double_booking_and_no_other(signed_in, mine):
    assert MINE in text(signed_in.get(reverse("home")))
    listed = conflicts_listed(account=mine.account)
    assert [marked.conflict.property.name for marked in listed.unhandled] == [MINE]


def test_the_digest_tells_of_the_account_s_own_syncs_and_double_bookings_only(mine, theirs):
    PauseEpisode.objects.create(connection=Connection.objects.get(property__name=THEIRS, portal__slug="vrbo"),
                                reason="timeout")
    PauseEpisode.objects.create(connection=Connection.objects.get(property__name=MINE, portal__slug="vrbo"),
                                reason="timeout")
    message = digest_message(membership=mine, since=NOW - timedelta(days=1), now=timezone.now())
    assert message is not None
    body = message.body + "".join(str(content) for content, _type in message.alternatives)
    assert MINE in body
    assert THEIRS not in body


def test_the_double_booking_scan_tells_each_account_s_webhooks_of_its_own_only(mine, theirs, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    for membership in (mine, theirs):
        webhook_create(user=membership.user, account=membership.account, url="http://127.0.0.1:9/hook",
                       events=["double_booking"], slack_text=False)
    assert scan_double_bookings(now=timezone.now()) == 2
    told = {
        (delivery.webhook.account_id, delivery.payload["property"])
        for delivery in WebhookDelivery.objects.select_related("webhook")
    }
    assert told == {(mine.account_id, MINE), (theirs.account_id, THEIRS)}


def test_a_file_naming_another_account_s_property_adds_a_property_of_one_s_own(signed_in, mine, theirs):
    link = "https://www.airbnb.com/calendar/ical/424242.ics?s=new"
    data = f"Property,Time zone,Portal,Import link\n{THEIRS},Europe/Madrid,Airbnb,{link}\n".encode()
    signed_in.post(reverse("onboarding"), {"file": SimpleUploadedFile("syncs.csv", data, "text/csv")}, follow=True)
    checked = OnboardingUpload.objects.get()
    assert [row["action"] for row in checked.rows] == ["add"]
    signed_in.post(reverse("onboarding-import", args=[checked.pk]))
    made = Connection.objects.get(import_url=link)
    assert made.property.account_id == mine.account_id
    assert made.property.timezone == "Europe/Madrid"  # a new property, with the row's zone
    assert Connection.objects.filter(property__account=theirs.account).count() == 3
    assert Property.objects.filter(name=THEIRS).count() == 2


def test_bulk_actions_on_all_matching_touch_the_account_s_own_syncs_only(signed_in, mine, theirs):
    signed_in.post(reverse("bulk-action"), {"action": "switch_off", "all": "1", "state": "paused", "next": "/timeline/"})
    assert list(Connection.objects.filter(enabled=False).values_list("property__name", flat=True)) == [MINE]
    assert Connection.objects.get(property__name=THEIRS, portal__slug="vrbo").enabled


def test_bulk_actions_on_ticked_syncs_ignore_another_account_s(signed_in, mine, theirs):
    others = list(Connection.objects.filter(property__account=theirs.account).values_list("pk", flat=True))
    own = Connection.objects.get(property__name=MINE, portal__slug="airbnb")
    signed_in.post(reverse("bulk-action"), {"action": "switch_off", "connection": [own.pk, *others]})
    assert list(Connection.objects.filter(enabled=False).values_list("pk", flat=True)) == [own.pk]


def test_the_account_s_blocks_are_unchanged_by_another_account_s_pages(signed_in, theirs):
    """What a page shows of a property it may not see: nothing (404), and nothing changes."""
    other = Property.objects.get(name=THEIRS)
    assert signed_in.get(reverse("property-detail", args=[other.pk])).status_code == 404
    assert signed_in.get(reverse("timeline") + f"?property={other.pk}").status_code in (200, 404)
    assert Block.objects.filter(property=other).count() == 2


def not_reading_sync(membership: Membership) -> Connection:
    """A two-way sync of the account's property whose export URL no portal read in days."""
    connection = Connection.objects.get(property__account=membership.account, portal__slug="airbnb")
    Connection.objects.filter(pk=connection.pk).update(last_success_at=timezone.now())
    token = export_token_ensure(property=connection.property, connection=connection)
    ExportToken.objects.filter(pk=token.pk).update(created_at=timezone.now() - timedelta(days=5))
    state_record([connection.pk])  # written raw above: decided as the product's writes are
    return connection


def test_the_not_reading_scan_tells_each_account_of_its_own_syncs_once(mine, theirs, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    for membership in (mine, theirs):
        webhook_create(user=membership.user, account=membership.account, url="http://127.0.0.1:9/hook",
                       events=["not_reading"], slack_text=False)
        not_reading_sync(membership)
    assert scan_not_reading(now=timezone.now()) == 2
    told = {(d.webhook.account_id, d.payload["property"]) for d in WebhookDelivery.objects.select_related("webhook")}
    assert told == {(mine.account_id, MINE), (theirs.account_id, THEIRS)}
    assert scan_not_reading(now=timezone.now()) == 0  # told once: neither account's scan forgets the other's
    assert WebhookDelivery.objects.count() == 2


def test_an_account_that_subscribes_later_is_told_of_its_own_not_reading_sync(mine, theirs, settings):
    """The first account's scan reads its own syncs only: the other account, which had no webhook
    for it yet, is told when it subscribes."""
    settings.FETCH_ALLOW_LOOPBACK = True
    webhook_create(user=mine.user, account=mine.account, url="http://127.0.0.1:9/hook", events=["not_reading"],
                   slack_text=False)
    not_reading_sync(mine)
    not_reading_sync(theirs)
    assert scan_not_reading(now=timezone.now()) == 1
    webhook_create(user=theirs.user, account=theirs.account, url="http://127.0.0.1:9/other", events=["not_reading"],
                   slack_text=False)
    assert scan_not_reading(now=timezone.now()) == 1
    told = [(d.webhook.account_id, d.payload["property"]) for d in WebhookDelivery.objects.select_related("webhook")
            .order_by("pk")]
    assert told == [(mine.account_id, MINE), (theirs.account_id, THEIRS)]
