"""The add/edit forms, used as an operator uses them: paste a link copied from a portal, read
what the page says, and find the sync (or nothing at all) saved."""

from __future__ import annotations

import html
from datetime import date, timedelta
from unittest import mock

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from syncs import editing
from syncs.engine.task import connection_sync_leased
from syncs.explain import describe
from syncs.export_tokens import export_token_ensure, export_url, token_from_nonce
from syncs.models import (
    Account,
    Activity,
    Block,
    Connection,
    ExportToken,
    PauseEpisode,
    Property,
    SyncRun,
)
from tests import feeds
from tests.factories import ConnectionFactory, PropertyFactory, UserFactory, portal
from tests.jobs import recorded_hand_over

pytestmark = pytest.mark.django_db

FEED_PATH = "/calendar/ical/4242.ics"
AIRBNB_LINK = "https://www.airbnb.com/calendar/ical/1234567.ics?s=0a1b2c3d4e5f"
BOOKING_LINK = "https://admin.booking.com/hotel/hoteladmin/ical.html?t=9f8e7d6c-5b4a"


@pytest.fixture
def account(operator):
    return Account.of_user(operator)


@pytest.fixture
def flat(account):
    return PropertyFactory(account=account, name="Casa Azul", timezone="Europe/Lisbon")


@pytest.fixture
def theirs():
    """A property and a sync of another account."""
    connection = ConnectionFactory(property=PropertyFactory(name="Their Villa"))
    return connection.property, connection


def add_sync(client, prop, **fields):
    data = {"import_url": "", "portal": "", "direction": "two_way", "sync_interval_minutes": 30,
            "export_summary": "Not available", **fields}
    return client.post(reverse("connection-create", kwargs={"property_id": prop.pk}), data)


def edit_sync(client, connection, **fields):
    data = {"import_url": connection.import_url, "portal": connection.portal_id, "direction": connection.direction,
            "sync_interval_minutes": connection.sync_interval_minutes, "export_summary": connection.export_summary,
            **fields}
    return client.post(reverse("connection-edit", kwargs={"connection_id": connection.pk}), data)


def page(response) -> str:
    """The page's text as the operator reads it (entities decoded)."""
    return html.unescape(response.content.decode())


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def field_errors(response, field: str) -> list[str]:
    return [str(e) for e in response.context["form"].errors.get(field, [])]


# --------------------------------------------------------------------------- properties


def test_an_operator_adds_a_property_and_lands_on_its_page(operator_client, account):
    response = operator_client.post(reverse("property-create"), {"name": "  Casa   Azul ", "timezone": "Europe/Lisbon"})

    prop = Property.objects.get(account=account)
    assert response.status_code == 302
    assert response["Location"] == reverse("property-detail", kwargs={"property_id": prop.pk})
    assert (prop.name, prop.timezone) == ("Casa Azul", "Europe/Lisbon")
    assert said(response) == ["Added Casa Azul. Now add its calendar syncs, one per portal."]
    assert Activity.objects.get(account=account).action == Activity.Action.PROPERTY_CREATED
    assert ExportToken.objects.filter(property=prop, connection=None).exists()


def test_the_new_property_form_offers_the_time_zone_of_the_last_property_added(operator_client, account):
    response = operator_client.get(reverse("property-create"))
    assert response.context["form"]["timezone"].value() == "Europe/Lisbon"

    PropertyFactory(account=account, timezone="America/New_York")
    response = operator_client.get(reverse("property-create"))
    assert response.status_code == 200
    assert response.context["form"]["timezone"].value() == "America/New_York"
    assert '<option value="Asia/Tokyo">' in page(response)  # the list to choose from


def test_a_name_already_used_in_the_account_is_refused_in_plain_words(operator_client, flat):
    response = operator_client.post(reverse("property-create"), {"name": "casa azul", "timezone": "Europe/Madrid"})

    assert response.status_code == 200
    assert field_errors(response, "name") == ["You already have a property called “casa azul”. Choose another name."]
    assert 'aria-invalid="true"' in page(response)
    assert 'value="Europe/Madrid"' in page(response)  # what was typed is kept
    assert Property.objects.count() == 1


def test_another_account_may_use_the_same_name(operator_client, account):
    PropertyFactory(name="Casa Azul")
    response = operator_client.post(reverse("property-create"), {"name": "Casa Azul", "timezone": "Europe/Lisbon"})
    assert response.status_code == 302
    assert Property.objects.filter(account=account, name="Casa Azul").exists()


def test_an_unknown_time_zone_is_refused_and_a_sloppy_spelling_is_corrected(operator_client, account):
    response = operator_client.post(reverse("property-create"), {"name": "Casa", "timezone": "Europe/Lisboa"})
    assert response.status_code == 200
    assert field_errors(response, "timezone") == [
        "“Europe/Lisboa” is not a time zone name. Choose one from the list, such as Europe/Lisbon."
    ]
    assert not Property.objects.exists()

    response = operator_client.post(reverse("property-create"), {"name": "Casa", "timezone": "america/new york"})
    assert response.status_code == 302
    assert Property.objects.get(account=account).timezone == "America/New_York"


def test_a_name_taken_at_the_same_moment_is_refused_by_the_service_too(operator, flat):
    with pytest.raises(ValidationError) as refused:
        editing.property_create(user=operator, name="Casa Azul", timezone="Europe/Lisbon")
    assert "name" in refused.value.error_dict
    assert Property.objects.count() == 1
    assert not Activity.objects.exists()


def test_editing_a_property_records_what_changed_and_rereads_feeds_after_a_zone_change(operator_client, flat):
    connection = ConnectionFactory(property=flat, etag='"v1"', last_modified="Sat, 09 Jan 2027 10:00:00 GMT",
                                   body_fingerprint="f" * 64)
    url = reverse("property-edit", kwargs={"property_id": flat.pk})

    response = operator_client.post(url, {"name": "Casa Azul", "timezone": "Atlantic/Madeira"})

    assert response.status_code == 302
    assert response["Location"] == reverse("property-detail", kwargs={"property_id": flat.pk})
    flat.refresh_from_db()
    connection.refresh_from_db()
    assert flat.timezone == "Atlantic/Madeira"
    assert (connection.etag, connection.last_modified, connection.body_fingerprint) == ("", "", "")
    activity = Activity.objects.get(action=Activity.Action.PROPERTY_EDITED)
    assert activity.params == {"fields": ["timezone"]}
    assert "new time zone" in said(response)[0]


def test_renaming_a_property_is_recorded_and_saving_it_unchanged_records_nothing(operator_client, flat):
    response = operator_client.post(
        reverse("property-edit", kwargs={"property_id": flat.pk}), {"name": "Casa Azul 2", "timezone": "Europe/Lisbon"}
    )
    assert response.status_code == 302
    flat.refresh_from_db()
    assert flat.name == "Casa Azul 2"
    assert Activity.objects.get().params == {"fields": ["name"]}
    # Saving again with nothing changed records nothing.
    response = operator_client.post(
        reverse("property-edit", kwargs={"property_id": flat.pk}), {"name": "Casa Azul 2", "timezone": "Europe/Lisbon"}
    )
    assert said(response)[-1] == "Nothing to save: Casa Azul 2 was already like this."
    assert Activity.objects.count() == 1


# --------------------------------------------------------------------------- adding a sync


def test_an_operator_pastes_an_airbnb_link_with_spaces_and_webcal_and_the_sync_is_added(operator_client, flat):
    pasted = "  webcal://www.airbnb.com/calendar/ical/\n1234567.ics?s=0a1b2c 3d4e5f\u200b \n"

    response = add_sync(operator_client, flat, import_url=pasted)

    connection = Connection.objects.get(property=flat)
    assert response.status_code == 302
    assert response["Location"] == reverse("connection-detail", kwargs={"connection_id": connection.pk})
    assert connection.import_url == AIRBNB_LINK
    assert connection.portal == portal("airbnb")
    assert connection.direction == Connection.Direction.TWO_WAY
    assert connection.sync_interval_minutes == 30
    assert connection.export_summary == "Not available"
    assert connection.next_sync_at is not None  # due at once
    assert said(response) == ["Added the Airbnb sync of Casa Azul. We recognised Airbnb from the link."]
    activity = Activity.objects.get()
    assert (activity.action, activity.connection, activity.property) == (
        Activity.Action.CONNECTION_CREATED, connection, flat
    )
    assert ExportToken.objects.filter(connection=connection, expires_at=None).exists()


def test_the_new_sync_form_shows_where_to_find_the_link_and_sensible_defaults(operator_client, flat, settings):
    settings.SYNC_DEFAULT_INTERVAL_MINUTES = 15
    response = operator_client.get(reverse("connection-create", kwargs={"property_id": flat.pk}))

    text = page(response)
    assert response.status_code == 200
    assert "Calendar > Availability > Connect calendars > Export calendar" in text
    assert "Rates & Availability > Sync calendars > Export" in text
    assert "Calendar > Import/Export > Export" in text
    form = response.context["form"]
    assert form["sync_interval_minutes"].value() == 15
    assert form["direction"].value() == "two_way"
    assert form["export_summary"].value() == "Not available"
    assert form["check_now"].value() is True
    assert f'href="{reverse("property-detail", kwargs={"property_id": flat.pk})}"' in text  # cancel


def test_a_link_that_contradicts_the_chosen_portal_is_refused_and_the_form_keeps_the_values(operator_client, flat):
    response = add_sync(operator_client, flat, import_url=BOOKING_LINK, portal=portal("airbnb").pk,
                        sync_interval_minutes=45, export_summary="Closed")

    assert response.status_code == 200
    assert field_errors(response, "portal") == [
        "This looks like a link from Booking.com, but you chose Airbnb. "
        "Choose Booking.com, or paste the link Airbnb gives you."
    ]
    text = page(response)
    assert BOOKING_LINK in text
    assert 'value="45"' in text
    assert 'value="Closed"' in text
    assert not Connection.objects.exists()
    assert not Activity.objects.exists()


def test_a_link_we_do_not_recognise_needs_a_portal(operator_client, flat):
    response = add_sync(operator_client, flat, import_url="https://ical.example-rentals.com/feed/abc.ics")
    assert field_errors(response, "portal") == ["We do not recognise this link's address: choose the portal it comes from."]

    response = add_sync(operator_client, flat, import_url="https://ical.example-rentals.com/feed/abc.ics",
                        portal=portal("other").pk)
    assert response.status_code == 302
    assert Connection.objects.get().portal == portal("other")


def test_our_own_export_url_pasted_back_is_refused(operator_client, flat, settings):
    settings.SITE_URL = "https://sync.example.net"
    ours = export_url(export_token_ensure(property=flat))
    refusal = (
        "This is the calendar we publish for this property: paste it into the portal, not here. "
        "Here goes the link the portal gives you."
    )
    token = token_from_nonce(ExportToken.objects.get(property=flat).nonce)

    for pasted in (
        ours,
        ours.replace("https://", "webcal://"),
        "https://sync.example.net/ical/some-old-token.ics",  # our host and our URL shape, any token
        f"https://203.0.113.7/ical/{token}.ics",  # reached by another name, the token is one of ours
    ):
        response = add_sync(operator_client, flat, import_url=pasted, portal=portal("airbnb").pk)
        assert field_errors(response, "import_url") == [refusal], pasted
    assert not Connection.objects.exists()


@pytest.mark.parametrize(
    "link",
    [
        "http://10.0.0.5/x.ics",
        "http://127.0.0.1/x.ics",
        "http://localhost/calendar.ics",
        "http://[::1]/x.ics",
        "http://169.254.169.254/latest/meta-data/",
        "http://0x7f.1/x.ics",
        "http://192.168.1.20/x.ics",
    ],
)
def test_a_link_to_a_private_or_local_address_is_refused(operator_client, flat, settings, link):
    settings.FETCH_ALLOW_LOOPBACK = False
    response = add_sync(operator_client, flat, import_url=link, portal=portal("other").pk)

    assert response.status_code == 200
    assert field_errors(response, "import_url") == [describe("blocked_address")]
    assert not Connection.objects.exists()


def test_a_link_with_a_user_name_and_password_is_refused(operator_client, flat):
    response = add_sync(operator_client, flat, import_url="https://me:secret@www.airbnb.com/calendar/ical/1.ics")

    [error] = field_errors(response, "import_url")
    assert error.startswith(describe("invalid_url"))
    assert "user name or password" in error
    assert not Connection.objects.exists()


@pytest.mark.parametrize("link", ["ftp://www.airbnb.com/x.ics", "file:///etc/passwd", "javascript:alert(1)"])
def test_links_that_are_not_web_addresses_are_refused(operator_client, flat, link):
    response = add_sync(operator_client, flat, import_url=link, portal=portal("other").pk)
    [error] = field_errors(response, "import_url")
    assert error.startswith(describe("invalid_url"))
    assert not Connection.objects.exists()


def test_the_same_link_twice_on_one_property_is_refused_naming_the_sync_that_has_it(operator_client, flat):
    ConnectionFactory(property=flat, portal=portal("airbnb"), import_url=AIRBNB_LINK)

    for pasted in (AIRBNB_LINK, AIRBNB_LINK.replace("https://", "webcal://"), AIRBNB_LINK.replace("https", "http")):
        response = add_sync(operator_client, flat, import_url=pasted)
        assert field_errors(response, "import_url") == [
            "This property already imports this link, in its Airbnb sync. Edit that sync instead."
        ], pasted
    assert Connection.objects.count() == 1


def test_an_export_only_sync_needs_no_link_but_an_importing_one_does(operator_client, flat):
    response = add_sync(operator_client, flat, direction="import_only", portal=portal("vrbo").pk)
    assert field_errors(response, "import_url") == ["Paste the portal's calendar link, or make the sync export-only."]

    response = add_sync(operator_client, flat, direction="export_only", portal=portal("vrbo").pk)
    assert response.status_code == 302
    connection = Connection.objects.get()
    assert (connection.direction, connection.import_url) == ("export_only", "")
    assert ExportToken.objects.filter(connection=connection).exists()


def test_syncing_more_often_than_every_5_minutes_is_refused(operator_client, flat):
    response = add_sync(operator_client, flat, import_url=AIRBNB_LINK, sync_interval_minutes=2)
    assert field_errors(response, "sync_interval_minutes") == ["Ensure this value is greater than or equal to 5."]
    assert not Connection.objects.exists()


def test_a_plain_http_link_is_saved_with_a_warning(operator_client, flat):
    response = add_sync(operator_client, flat, import_url=AIRBNB_LINK.replace("https://", "http://"))
    assert response.status_code == 302
    assert Connection.objects.get().import_url.startswith("http://")
    assert said(response)[1] == (
        "This link is not encrypted (http://); the portal probably offers https. We will tell you if https works."
    )


def test_a_failure_while_saving_leaves_nothing_half_saved(operator_client, flat):
    with (
        mock.patch("syncs.editing.activity_record", side_effect=RuntimeError("disk full")),
        pytest.raises(RuntimeError),
    ):
        add_sync(operator_client, flat, import_url=AIRBNB_LINK)
    assert not Connection.objects.exists()
    assert not ExportToken.objects.filter(connection__isnull=False).exists()


# --------------------------------------------------------------------------- checking the link now


def test_checking_the_link_now_reads_the_portal_and_says_what_it_found(clock, operator_client, flat, portal_server):
    portal_server.expect_request(FEED_PATH).respond_with_data(
        feeds.airbnb(
            ("a", date(2027, 3, 3), date(2027, 3, 6)), ("b", date(2027, 7, 1), date(2027, 7, 8)),
            blocked=(("n1", date(2027, 11, 1), date(2027, 11, 20)),),
        ),
        content_type="text/calendar",
    )
    link = portal_server.url_for(FEED_PATH)

    response = add_sync(operator_client, flat, import_url=link, portal=portal("airbnb").pk, check_now="on")

    assert response.status_code == 302
    assert Connection.objects.get().import_url == link
    success, warning = said(response)
    assert success == (
        "Added the Airbnb sync of Casa Azul. "
        "Found 3 bookings and blocks from 3 March to 20 November 2027 (Airbnb calendar)."
    )
    assert warning.startswith("This link is not encrypted (http://)")
    assert len(portal_server.log) == 1


def test_a_link_the_portal_answers_404_is_not_saved(operator_client, flat, portal_server):
    portal_server.expect_request(FEED_PATH).respond_with_data("Not Found", status=404)

    response = add_sync(operator_client, flat, import_url=portal_server.url_for(FEED_PATH),
                        portal=portal("airbnb").pk, check_now="on")

    assert response.status_code == 200
    assert field_errors(response, "import_url") == ["Airbnb answered 404: the calendar link no longer exists."]
    assert "Airbnb answered 404: the calendar link no longer exists." in page(response)
    assert not Connection.objects.exists()
    assert not Activity.objects.exists()


def test_a_link_that_returns_a_login_page_is_not_saved(operator_client, flat, portal_server):
    portal_server.expect_request(FEED_PATH).respond_with_data(
        "<!DOCTYPE html><html><body><form>Log in to continue</form></body></html>", content_type="text/html"
    )

    response = add_sync(operator_client, flat, import_url=portal_server.url_for(FEED_PATH),
                        portal=portal("booking").pk, check_now="on")

    assert response.status_code == 200
    assert field_errors(response, "import_url") == [describe("not_ical")]
    assert not Connection.objects.exists()


def test_a_failing_http_link_whose_https_version_works_says_add_an_s(operator_client, flat, portal_server):
    portal_server.expect_request(FEED_PATH).respond_with_data("Gone", status=410)

    with mock.patch("syncs.editing.https_variant_works", return_value=True) as probe:
        response = add_sync(operator_client, flat, import_url=portal_server.url_for(FEED_PATH),
                            portal=portal("vrbo").pk, check_now="on")

    assert field_errors(response, "import_url") == [
        "Vrbo answered 410: the calendar link was deleted. "
        "Its https:// version works: add an “s” after http and save again."
    ]
    probe.assert_called_once()
    # Within what is left of the check's ten seconds.
    assert probe.call_args.args == (portal_server.url_for(FEED_PATH),)
    assert 0 < probe.call_args.kwargs["deadline"] <= 10
    assert not Connection.objects.exists()


def test_a_sync_saved_without_the_check_is_not_fetched(operator_client, flat, portal_server):
    response = add_sync(operator_client, flat, import_url=portal_server.url_for(FEED_PATH), portal=portal("other").pk)
    assert response.status_code == 302
    assert portal_server.log == []


# --------------------------------------------------------------------------- editing a sync


def test_changing_the_link_makes_the_next_sync_read_the_new_feed_from_scratch(operator_client, flat):
    later = timezone.now() + timedelta(minutes=25)
    connection = ConnectionFactory(
        property=flat, portal=portal("airbnb"), import_url=AIRBNB_LINK, etag='"v7"',
        last_modified="Sat, 09 Jan 2027 10:00:00 GMT", body_fingerprint="f" * 64, https_works=False,
        next_sync_at=later, lease_holder="worker-1:abc", lease_until=later,
    )
    new_link = "https://www.airbnb.com/calendar/ical/7654321.ics?s=ffee"

    response = edit_sync(operator_client, connection, import_url=new_link)

    assert response.status_code == 302
    assert response["Location"] == reverse("connection-detail", kwargs={"connection_id": connection.pk})
    connection.refresh_from_db()
    assert connection.import_url == new_link
    assert (connection.etag, connection.last_modified, connection.body_fingerprint) == ("", "", "")
    assert connection.https_works is None
    assert connection.next_sync_at <= timezone.now()
    assert connection.lease_holder == ""  # a sync of the old link still running is dropped
    assert Activity.objects.get(action=Activity.Action.CONNECTION_EDITED).params == {"fields": ["import_url"]}
    assert "reads the new link from scratch" in said(response)[0]


def _paused_sync(flat, **fields) -> Connection:
    connection = ConnectionFactory(
        property=flat, portal=portal("other"), paused_at=timezone.now() - timedelta(hours=5),
        pause_reason="http_4xx", pause_params={"status": 404}, consecutive_failures=1, **fields,
    )
    PauseEpisode.objects.create(connection=connection, started_at=connection.paused_at, reason="http_4xx", params={"status": 404})
    return connection


def test_a_new_link_for_a_paused_sync_is_read_by_a_worker_at_once_and_resumes_it_when_it_works(
    operator_client, flat, portal_server
):
    today = timezone.localdate()
    stay = (today + timedelta(days=10), today + timedelta(days=13))
    portal_server.expect_request(FEED_PATH).respond_with_data(feeds.airbnb(("new-stay", *stay)), content_type="text/calendar")
    connection = _paused_sync(flat)

    with (
        recorded_hand_over() as enqueue,
        TestCase.captureOnCommitCallbacks(execute=True),
    ):
        response = edit_sync(operator_client, connection, import_url=portal_server.url_for(FEED_PATH))

    # Handed to a worker at once: the request never waits on the portal.
    assert response.status_code == 302
    assert "the new link is being read now, and the sync resumes if it works" in said(response)[0]
    assert enqueue.syncs() == [connection.pk]
    connection.refresh_from_db()
    assert connection.checking_since is not None and connection.sync_requested_at is not None
    # The worker's read works: the pause ends, ended by the edit.
    connection_sync_leased(connection_id=connection.pk, trigger=SyncRun.Trigger.MANUAL)
    connection.refresh_from_db()
    assert (connection.paused_at, connection.sync_requested_at) == (None, None)
    assert PauseEpisode.objects.get(connection=connection).ended_by == "edit"
    assert Block.objects.get(source=connection).uid == "new-stay@airbnb.com"
    # The activity says what the operator did (edited the sync, not pressed "Sync now"), and
    # that the sync resumed by itself.
    assert list(Activity.objects.values_list("action", "user")) == [
        (Activity.Action.RESUMED, None), (Activity.Action.CONNECTION_EDITED, connection.property.account.memberships.get().user_id),
    ]


def test_a_new_link_for_a_switched_off_sync_waits_for_the_operator_to_switch_it_on(operator_client, flat, portal_server):
    connection = _paused_sync(flat, enabled=False)

    with (
        recorded_hand_over() as enqueue,
        TestCase.captureOnCommitCallbacks(execute=True),
    ):
        response = edit_sync(operator_client, connection, import_url=portal_server.url_for(FEED_PATH))

    assert response.status_code == 302
    assert "This sync is switched off: switch it on to read the new link." in said(response)[0]
    assert not enqueue
    connection.refresh_from_db()
    assert connection.sync_requested_at is None
    assert connection.paused_at is not None


def test_editing_other_settings_keeps_what_the_sync_knows_about_the_feed(operator_client, flat):
    connection = ConnectionFactory(property=flat, portal=portal("airbnb"), etag='"v7"', body_fingerprint="f" * 64)

    response = edit_sync(operator_client, connection, sync_interval_minutes=60, export_summary="Closed")

    assert response.status_code == 302
    connection.refresh_from_db()
    assert (connection.sync_interval_minutes, connection.export_summary) == (60, "Closed")
    assert (connection.etag, connection.body_fingerprint) == ('"v7"', "f" * 64)
    assert Activity.objects.get().params == {"fields": ["sync_interval_minutes", "export_summary"]}


def test_a_sync_is_not_its_own_duplicate_and_saving_it_unchanged_records_nothing(operator_client, flat):
    connection = ConnectionFactory(property=flat, portal=portal("airbnb"))

    response = edit_sync(operator_client, connection)

    assert response.status_code == 302
    assert said(response) == ["Nothing to save: the Airbnb sync was already like this."]
    assert not Activity.objects.exists()


def test_editing_follows_the_same_rules_as_adding(operator_client, flat):
    ConnectionFactory(property=flat, portal=portal("booking"), import_url=BOOKING_LINK)
    connection = ConnectionFactory(property=flat, portal=portal("airbnb"), import_url=AIRBNB_LINK)

    response = edit_sync(operator_client, connection, import_url=BOOKING_LINK)

    assert response.status_code == 200
    assert field_errors(response, "import_url") == [
        "This property already imports this link, in its Booking.com sync. Edit that sync instead."
    ]
    # One problem, one error: the link is the other sync's, which says everything.
    assert field_errors(response, "portal") == []
    connection.refresh_from_db()
    assert connection.import_url == AIRBNB_LINK


def test_a_sync_that_starts_exporting_gets_its_export_url(operator_client, flat):
    connection = ConnectionFactory(property=flat, portal=portal("airbnb"), direction="import_only")
    assert not ExportToken.objects.filter(connection=connection).exists()

    response = edit_sync(operator_client, connection, direction="two_way")

    assert response.status_code == 302
    assert ExportToken.objects.filter(connection=connection, expires_at=None).exists()


# --------------------------------------------------------------------------- who may do what


def _snapshot():
    return (
        list(Property.objects.order_by("pk").values()),
        list(Connection.objects.order_by("pk").values()),
        Activity.objects.count(),
        ExportToken.objects.count(),
    )


def test_another_accounts_property_and_sync_give_404_and_stay_as_they_were(operator_client, theirs):
    prop, connection = theirs
    before = _snapshot()
    routes = [
        (reverse("property-edit", kwargs={"property_id": prop.pk}), {"name": "Mine now", "timezone": "UTC"}),
        (reverse("connection-create", kwargs={"property_id": prop.pk}),
         {"import_url": BOOKING_LINK, "direction": "two_way", "sync_interval_minutes": 30, "export_summary": "x"}),
        (reverse("connection-edit", kwargs={"connection_id": connection.pk}),
         {"import_url": BOOKING_LINK, "direction": "two_way", "sync_interval_minutes": 30, "export_summary": "x"}),
    ]
    for url, data in routes:
        assert operator_client.get(url).status_code == 404, url
        assert operator_client.post(url, data).status_code == 404, url
    assert _snapshot() == before


def test_adding_a_property_only_ever_adds_to_the_operators_own_account(operator_client, account, theirs):
    response = operator_client.post(reverse("property-create"), {"name": "Their Villa", "timezone": "UTC"})
    assert response.status_code == 302
    assert Property.objects.get(name="Their Villa", account=account)
    assert Property.objects.filter(name="Their Villa").count() == 2


def test_looking_at_the_forms_never_changes_anything(operator_client, flat):
    connection = ConnectionFactory(property=flat, portal=portal("airbnb"), direction="import_only")
    before = _snapshot()
    for url in (
        reverse("property-create"),
        reverse("property-edit", kwargs={"property_id": flat.pk}),
        reverse("connection-create", kwargs={"property_id": flat.pk}),
        reverse("connection-edit", kwargs={"connection_id": connection.pk}),
    ):
        response = operator_client.get(url)
        assert response.status_code == 200, url
        assert response.context["form"].errors == {}
    assert _snapshot() == before


def test_the_forms_ask_anonymous_visitors_to_log_in(client, flat):
    connection = ConnectionFactory(property=flat)
    for url in (
        reverse("property-create"),
        reverse("property-edit", kwargs={"property_id": flat.pk}),
        reverse("connection-create", kwargs={"property_id": flat.pk}),
        reverse("connection-edit", kwargs={"connection_id": connection.pk}),
    ):
        response = client.post(url, {"name": "x"})
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert Property.objects.count() == 1


def test_a_user_of_no_account_cannot_add_a_property(client):
    client.force_login(UserFactory())
    assert client.get(reverse("property-create")).status_code == 403
    assert client.post(reverse("property-create"), {"name": "Casa", "timezone": "UTC"}).status_code == 403
    assert not Property.objects.exists()


def test_the_forms_answer_only_get_and_post(operator_client, flat):
    response = operator_client.put(reverse("property-edit", kwargs={"property_id": flat.pk}))
    assert response.status_code == 405


def test_the_empty_property_form_proposes_the_zone_of_the_latest_property(operator_client, operator):
    PropertyFactory(account=Account.of_user(operator), name="Tokyo flat", timezone="Asia/Tokyo")
    page = operator_client.get(reverse("property-create")).content.decode()
    assert 'value="Asia/Tokyo"' in page
