"""Login, the landing page, and account isolation on every route that exists."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from syncs.models import Account, Activity, Block, Connection, ExportToken, Property, SyncRun
from tests.factories import (
    BlockFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    SyncRunFactory,
)

pytestmark = pytest.mark.django_db

# Routes anyone may reach, with why. Every other route needs a login and is account-scoped.
PUBLIC_ROUTES = {
    "login": "the log-in form",
    "logout": "ends a session",
    "demo-portal-feed": "demo portal feeds (404 unless DEMO_MODE)",
    "healthz": "service health for load balancers (no secrets)",
    "export-feed": "portals read export URLs without a login: the 256-bit token is the key",
    "set_language": "the language selector, on the log-in page too (sets a cookie; stored for a signed-in user)",
}
# For routes that take an object's id: which object of the *other* account to aim at.
OBJECT_KWARGS = {"property_id": "property", "connection_id": "connection", "run_id": "run", "block_id": "block"}
# Other route parameters, with a value that exists.
PLAIN_KWARGS = {"step": "link"}


def project_routes(resolvers=None, prefix=""):
    """(name, route) for every named route of the project outside the admin."""
    for entry in resolvers if resolvers is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            if entry.app_name == "admin":
                continue
            yield from project_routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.name:
            yield entry.name, prefix + str(entry.pattern)


@pytest.fixture
def two_accounts():
    mine, theirs = MembershipFactory(), MembershipFactory()
    their_connection = ConnectionFactory(property=PropertyFactory(account=theirs.account, name="Their Villa"))
    run = SyncRunFactory(connection=their_connection)
    block = BlockFactory(property=their_connection.property, source=None)
    objects = {"property": their_connection.property, "connection": their_connection, "run": run, "block": block}
    return mine.user, objects


def test_the_login_page_is_served_to_anonymous_visitors(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content
    assert b'name="password"' in response.content


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_an_operator_logs_in_with_username_and_password_and_lands_on_the_overview(client):
    membership = MembershipFactory(user__username="ana")
    ConnectionFactory(property=PropertyFactory(account=membership.account, name="Casa Azul"))
    response = client.post(reverse("login"), {"username": "ana", "password": "correct horse battery"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("home")
    assert "Overview" in response.content.decode()
    assert "Casa Azul" in client.get(reverse("property-list")).content.decode()


def test_a_wrong_password_is_refused_with_a_message(client):
    MembershipFactory(user__username="ana")
    response = client.post(reverse("login"), {"username": "ana", "password": "nope"})
    assert response.status_code == 200
    assert "enter a correct username and password" in response.content.decode()


def test_repeated_wrong_passwords_lock_the_login_for_that_user_and_address(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    MembershipFactory(user__username="ana")
    for _ in range(3):
        client.post(reverse("login"), {"username": "ana", "password": "nope"})
    response = client.post(reverse("login"), {"username": "ana", "password": "correct horse battery"})
    assert response.status_code == 429
    assert "Too many failed log-in attempts" in response.content.decode()


def test_logging_out_is_a_post_and_ends_the_session(operator_client):
    assert operator_client.get(reverse("logout")).status_code == 405
    response = operator_client.post(reverse("logout"))
    assert response.status_code == 302
    assert operator_client.get(reverse("home")).status_code == 302


def test_the_property_page_lists_each_connection_with_its_state(operator_client, operator):
    prop = PropertyFactory(account=Account.of_user(operator), name="Casa Azul")
    ConnectionFactory(property=prop, enabled=False)
    page = operator_client.get(reverse("property-detail", args=[prop.pk])).content.decode()
    assert "Casa Azul" in page
    assert "Switched off" in page


def test_an_operator_opens_their_property_and_connection_pages(operator_client, operator):
    connection = ConnectionFactory(property=PropertyFactory(account=Account.of_user(operator), name="Casa Azul"))
    SyncRunFactory(connection=connection, outcome="ok_changed")
    page = operator_client.get(reverse("property-detail", args=[connection.property.pk])).content.decode()
    assert "Casa Azul" in page
    assert reverse("connection-detail", args=[connection.pk]) in page
    page = operator_client.get(reverse("connection-detail", args=[connection.pk])).content.decode()
    assert "Sync history" in page
    assert "Synced: the calendar changed and was updated." in page


def test_a_paused_connection_says_why_in_plain_words(operator_client, operator):
    from django.utils import timezone

    connection = ConnectionFactory(
        property=PropertyFactory(account=Account.of_user(operator)),
        paused_at=timezone.now(), pause_reason="http_4xx", pause_params={"status": 404},
    )
    SyncRunFactory(connection=connection, outcome="http_4xx", error_code="http_4xx", error_params={"status": 404})
    expected = "Airbnb answered 404: the calendar link no longer exists."
    assert expected in operator_client.get(reverse("home")).content.decode()
    page = operator_client.get(reverse("connection-detail", args=[connection.pk])).content.decode()
    assert page.count(expected) == 2  # the pause banner and the history row


def test_no_list_ever_shows_another_accounts_properties(client, two_accounts):
    me, _theirs = two_accounts
    client.force_login(me)
    for name in ("home", "property-list", "activity"):
        assert "Their Villa" not in client.get(reverse(name)).content.decode()
    assert "Their Villa" not in client.get(reverse("property-list"), {"q": "Villa"}).content.decode()


@pytest.mark.parametrize("page", ["home", "property-list", "property-detail"])
def test_pages_make_the_same_number_of_queries_for_few_or_many_rows(
    operator_client, operator, django_assert_max_num_queries, page
):
    account = Account.of_user(operator)
    first = PropertyFactory(account=account)
    ConnectionFactory(property=first, paused_at=timezone.now(), pause_reason="http_4xx", pause_params={"status": 404})
    url = reverse(page, args=[first.pk] if page == "property-detail" else [])
    with django_assert_max_num_queries(40) as few:
        operator_client.get(url)
    for _ in range(15):
        prop = PropertyFactory(account=account)
        ConnectionFactory.create_batch(3, property=prop, paused_at=timezone.now(), pause_reason="timeout")
    ConnectionFactory.create_batch(4, property=first, paused_at=timezone.now(), pause_reason="timeout")
    with django_assert_max_num_queries(len(few.captured_queries)):
        operator_client.get(url)


def test_every_route_is_either_public_or_behind_the_login(client, two_accounts):
    """A new route must be classified here; its objects are tested by the next test."""
    for name, route in project_routes():
        if name in PUBLIC_ROUTES:
            continue
        kwargs = {k: 1 for k in OBJECT_KWARGS if f"<int:{k}>" in route}
        kwargs |= {k: v for k, v in PLAIN_KWARGS.items() if f":{k}>" in route}
        known = [f"int:{k}>" for k in OBJECT_KWARGS] + [f"slug:{k}>" for k in PLAIN_KWARGS]
        unknown = {part for part in route.split("<")[1:] if not any(part.startswith(k) for k in known)}
        assert not unknown, f"route {name!r} ({route}) has parameters this test does not know"
        response = client.get(reverse(name, kwargs=kwargs))
        assert response.status_code in (302, 405), f"{name} is reachable without logging in"
        if response.status_code == 302:
            assert response["Location"].startswith(reverse("login"))


def their_state(objects) -> tuple:
    prop = objects["property"]
    return (
        Property.objects.values().get(pk=prop.pk),
        list(Connection.objects.filter(property=prop).values()),
        list(Block.objects.filter(property=prop).values()),
        list(ExportToken.objects.filter(property=prop).values()),
        SyncRun.objects.filter(connection__property=prop).count(),
        Activity.objects.count(),
    )


def test_no_route_shows_or_changes_another_accounts_objects_by_id(client, two_accounts):
    me, theirs = two_accounts
    client.force_login(me)
    before = their_state(theirs)
    form = {"enabled": "0", "start": "2030-01-01", "end": "2030-01-03", "kind": "blocked", "name": "Mine now",
            "timezone": "UTC", "import_url": "https://www.airbnb.com/calendar/ical/1.ics"}
    object_routes = [(name, route) for name, route in project_routes() if any(f"<int:{k}>" in route for k in OBJECT_KWARGS)]
    for name, route in object_routes:
        kwargs = {k: theirs[obj].pk for k, obj in OBJECT_KWARGS.items() if f"<int:{k}>" in route}
        kwargs |= {k: v for k, v in PLAIN_KWARGS.items() if f":{k}>" in route}
        for response in (client.get(reverse(name, kwargs=kwargs)), client.post(reverse(name, kwargs=kwargs), form)):
            assert response.status_code in (404, 405), f"{name} answered {response.status_code}"
    assert their_state(theirs) == before
    assert len(object_routes) >= 10


def test_state_changes_are_refused_by_get(operator_client, operator):
    connection = ConnectionFactory(property=PropertyFactory(account=Account.of_user(operator)))
    for name in ("connection-switch", "connection-sync-now", "connection-accept-held", "connection-export-rotate"):
        assert operator_client.get(reverse(name, args=[connection.pk])).status_code == 405
    connection.refresh_from_db()
    assert connection.enabled
    assert connection.sync_requested_at is None


def test_staff_who_are_not_superusers_see_only_their_account_in_the_admin(client, two_accounts):
    me, theirs = two_accounts
    from django.contrib.auth.models import Permission

    me.is_staff = True
    me.save()
    me.user_permissions.add(*Permission.objects.filter(content_type__app_label="syncs"))
    mine = ConnectionFactory(property=PropertyFactory(account=Account.of_user(me), name="My Flat"))
    client.force_login(me)
    listing = client.get(reverse("admin:syncs_connection_changelist")).content.decode()
    assert "My Flat" in listing
    assert "Their Villa" not in listing
    assert client.get(reverse("admin:syncs_connection_change", args=[theirs["connection"].pk])).status_code == 302
    assert client.get(reverse("admin:syncs_connection_change", args=[mine.pk])).status_code == 200


def test_demo_feeds_exist_only_in_demo_mode(client, settings):
    url = reverse("demo-portal-feed", kwargs={"portal": "airbnb", "key": "casa-do-rio-airbnb"})
    settings.DEMO_MODE = False
    assert client.get(url).status_code == 404
    settings.DEMO_MODE = True
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/calendar")
    assert response.content.startswith(b"BEGIN:VCALENDAR")
    missing = reverse("demo-portal-feed", kwargs={"portal": "vrbo", "key": "apartamento-sol-vrbo"})
    assert client.get(missing).status_code == 404


def test_an_admin_edit_of_the_link_drops_a_sync_in_flight_and_reads_the_new_link_from_scratch(rf, admin_user):
    from django.contrib.admin.sites import site

    later = timezone.now() + timedelta(minutes=25)
    connection = ConnectionFactory(etag='"v1"', body_fingerprint="f" * 64, lease_holder="claimed", lease_until=later, next_sync_at=later)
    connection.import_url = "https://www.airbnb.com/calendar/ical/999.ics?s=abc"
    request = rf.post("/admin/")
    request.user = admin_user

    site._registry[Connection].save_model(request, connection, SimpleNamespace(changed_data=["import_url"]), change=True)

    connection.refresh_from_db()
    assert connection.import_url.endswith("999.ics?s=abc")
    assert (connection.lease_holder, connection.etag, connection.body_fingerprint) == ("", "", "")
    assert connection.next_sync_at <= timezone.now()
