"""Login, the landing page, and on every route that exists: account isolation, and what each
role (viewer, manager, owner) may see and do."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from syncs.export_tokens import export_token_ensure, export_url
from syncs.models import (
    Account,
    Activity,
    Block,
    BulkAction,
    ChecklistStep,
    Connection,
    ExportToken,
    Invitation,
    Membership,
    OnboardingUpload,
    Property,
    SyncRun,
    Undo,
    Webhook,
)
from syncs.removal import connections_remove, property_remove
from tests.factories import (
    BlockFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    SyncRunFactory,
    portal,
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
    "password_reset": "asks for a reset email (the same answer for every address)",
    "password_reset_done": "says that the email is on its way",
    "password_reset_confirm": "the emailed reset link: its token is the key",
    "password_reset_complete": "says that the password changed",
    "first-password": "the link create_account prints: its token is the key",
    "invitation-accept": "an invitation's link: its token is the key",
    "metrics": "Prometheus metrics: 404 unless METRICS_TOKEN is set, 401 without it (syncs/views/metrics.py)",
    "api-schema": "the API's OpenAPI schema: what the routes are, no account's data",
    "api-docs": "the API's reference page, made from the schema",
}
# The API's routes (syncs/api/urls.py): a token or a session, 401 without; their role x method
# matrix is tested in tests/test_api_access.py.
API_ROUTE_PREFIX = "api-"
# Which object an API route's <int:pk> names, by its collection.
API_PK_OBJECTS = {"properties": "property", "syncs": "connection", "blocks": "block"}
# Routes for any signed-in person, whatever their role: their own sign-in, not an account's data.
PERSONAL_ROUTES = {
    "profile", "password_change", "two-factor-setup", "recovery-codes", "two-factor-disable", "two-factor-verify",
    "account-switch", "my-alerts",
}
Role = Membership.Role
# The least role each account route needs (syncs/roles.py): the rule the views are checked against.
ROUTE_ROLES = {
    **dict.fromkeys(
        ["home", "overview-status", "activity", "property-list", "property-detail", "connection-detail",
         "connection-row", "connection-sync-state", "timeline", "bulk-detail", "bulk-progress", "property-list-csv"],
        Role.VIEWER,
    ),
    **dict.fromkeys(
        ["property-create", "property-edit", "connection-create", "connection-edit", "connection-switch",
         "connection-sync-now", "connection-accept-held", "connection-export-rotate", "connection-export-download",
         "property-export-download", "property-block-add", "block-remove", "connection-fix", "connection-fix-step",
         "bulk-action", "double-booking-handle", "property-assign", "onboarding", "onboarding-preview",
         "onboarding-progress", "onboarding-live", "onboarding-import", "onboarding-recheck", "exports-csv", "webhooks", "webhook-remove",
         "connection-remove", "connection-restore", "property-remove", "property-restore",
         "webhook-test", "undo", "account-settings"],
        Role.MANAGER,
    ),
    **dict.fromkeys(
        ["account-settings-save", "members", "member-invite", "member-role", "member-remove", "invitation-resend",
         "invitation-revoke"],
        Role.OWNER,
    ),
}
RANK = {Role.VIEWER: 0, Role.MANAGER: 1, Role.OWNER: 2}
# For routes that take an object's id: which object of the account to aim at.
OBJECT_KWARGS = {
    "property_id": "property", "connection_id": "connection", "run_id": "run", "block_id": "block",
    "membership_id": "membership", "invitation_id": "invitation", "bulk_id": "bulk", "webhook_id": "webhook",
    "upload_id": "upload", "undo_id": "undo",
}
# Routes that aim at another object of the same kind: restoring needs a removed one.
ROUTE_OBJECTS = {
    "connection-restore": {"connection_id": "removed_connection"},
    "property-restore": {"property_id": "removed_property"},
}
# Other route parameters, with a value that exists.
PLAIN_KWARGS = {"step": "link"}
# What every POST sends: enough for each form to do something if it is let through.
FORM = {
    "enabled": "0", "start": "2030-01-01", "end": "2030-01-03", "kind": "blocked", "name": "Mine now", "timezone": "UTC",
    "import_url": "https://www.airbnb.com/calendar/ical/1.ics", "role": "owner", "email": "new@example.com",
    "language": "en", "auto_resume": "on", "portal": "1", "direction": "two_way", "sync_interval_minutes": "30",
    "export_summary": "Not available", "confirmed": "1",
}


def project_routes(resolvers=None, prefix=""):
    """(name, route) for every named route of the project outside the admin."""
    for entry in resolvers if resolvers is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            if entry.app_name == "admin":
                continue
            yield from project_routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.name:
            yield entry.name, prefix + str(entry.pattern)


def account_objects(account, property_name: str) -> dict:
    """One of each kind of object a route can name, in ``account``."""
    connection = ConnectionFactory(property=PropertyFactory(account=account, name=property_name))
    export_token_ensure(property=connection.property, connection=connection)
    removed_property = PropertyFactory(account=account, name=f"{property_name} (sold)")
    ConnectionFactory(property=removed_property)
    removed_connection = ConnectionFactory(property=connection.property, portal=portal("vrbo"))
    property_remove(user=None, property=removed_property)
    connections_remove(user=None, connections=[removed_connection])
    return {
        "removed_property": removed_property, "removed_connection": removed_connection,
        "property": connection.property, "connection": connection, "run": SyncRunFactory(connection=connection),
        "block": BlockFactory(property=connection.property, source=None),
        "membership": MembershipFactory(account=account, role=Role.MANAGER),
        "invitation": Invitation.objects.create(
            account=account, email="invited@example.com", token_hash=uuid.uuid4().hex,
            expires_at=timezone.now() + timedelta(days=7),
        ),
        "bulk": BulkAction.objects.create(account=account, kind="sync_now", connection_ids=[connection.pk], awaited_ids=[connection.pk]),
        "webhook": Webhook.objects.create(account=account, url="https://hooks.example.com/x", events=["paused"], secret_nonce="n"),
        "upload": OnboardingUpload.objects.create(account=account, filename="f.csv", rows=[]),
        "undo": Undo.objects.create(account=account, kind="switch_off", versions={str(connection.pk): connection.settings_version}),
    }


@pytest.fixture
def two_accounts():
    mine, theirs = MembershipFactory(), MembershipFactory()
    return mine.user, account_objects(theirs.account, "Their Villa")


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


def test_every_route_is_classified_as_public_personal_or_needing_a_role():
    """A new route must be classified here, with the least role it needs; the tests below check it."""
    names = [name for name, _route in project_routes()]
    api = {n for n in names if n.startswith(API_ROUTE_PREFIX) and n not in PUBLIC_ROUTES}
    unclassified = [n for n in names if n not in PUBLIC_ROUTES and n not in PERSONAL_ROUTES and n not in ROUTE_ROLES and n not in api]
    assert unclassified == []
    assert set(ROUTE_ROLES) | PERSONAL_ROUTES | set(PUBLIC_ROUTES) | api == set(names)


def test_every_route_is_either_public_or_behind_the_login(client, two_accounts):
    """Its objects, and the roles, are tested by the next tests."""
    for name, route in project_routes():
        if name in PUBLIC_ROUTES:
            continue
        if name.startswith(API_ROUTE_PREFIX):
            response = client.get(reverse(name, kwargs={"pk": 1} if "<int:pk>" in route else {}))
            assert response.status_code == 401, f"{name} is reachable without a token or a session"
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
        list(Connection.all_objects.filter(property__account=prop.account).values()),
        list(Block.objects.filter(property=prop).values()),
        list(ExportToken.objects.filter(property=prop).values()),
        SyncRun.objects.filter(connection__property=prop).count(),
        Activity.objects.count(),
    )


def account_state(objects) -> tuple:
    """Everything a route could change in the objects' account."""
    prop = objects["property"]
    account = prop.account
    return (
        their_state(objects),
        list(Property.all_objects.filter(account=account).values()),
        Account.objects.values().get(pk=account.pk),
        list(Membership.objects.filter(account=account).values()),
        list(Invitation.objects.filter(account=account).values()),
        list(ChecklistStep.objects.filter(connection__property__account=account).values()),
    )


def route_kwargs(route: str, objects: dict, name: str = "") -> dict:
    aimed = OBJECT_KWARGS | ROUTE_OBJECTS.get(name, {})
    kwargs = {k: objects[obj].pk for k, obj in aimed.items() if f"<int:{k}>" in route}
    if "<int:pk>" in route:  # an API row (syncs/api/urls.py), named by its collection: api/v1/<collection>/<pk>/
        kwargs["pk"] = objects[API_PK_OBJECTS[route.split("/")[2]]].pk
    return kwargs | {k: v for k, v in PLAIN_KWARGS.items() if f":{k}>" in route}


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MANAGER, Role.OWNER])
def test_no_route_shows_or_changes_another_accounts_objects_by_id(client, two_accounts, role):
    me, theirs = two_accounts
    Membership.objects.filter(user=me).update(role=role)
    client.force_login(me)
    before = account_state(theirs)
    object_routes = [(name, route) for name, route in project_routes() if any(f"<int:{k}>" in route for k in OBJECT_KWARGS)]
    for name, route in object_routes:
        url = reverse(name, kwargs=route_kwargs(route, theirs, name))
        for response in (client.get(url), client.post(url, FORM)):
            # 403 only where the role alone refuses, before anything is looked up.
            allowed = (404, 405) if RANK[role] >= RANK[ROUTE_ROLES[name]] else (403, 405)
            assert response.status_code in allowed, f"{name} answered {response.status_code} to a {role}"
    assert account_state(theirs) == before
    assert len(object_routes) >= 14


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MANAGER, Role.OWNER])
def test_each_role_reaches_exactly_the_routes_it_may_in_its_own_account(client, role):
    me = MembershipFactory(role=role)
    mine = account_objects(me.account, "My Villa")
    client.force_login(me.user)
    routes = [(name, route) for name, route in project_routes() if name in ROUTE_ROLES]

    # First every request the role may not make: all refused (403), and nothing changed.
    before = account_state(mine)
    refused = set()
    for name, route in routes:
        if RANK[role] >= RANK[ROUTE_ROLES[name]]:
            continue
        url = reverse(name, kwargs=route_kwargs(route, mine, name))
        for method in (client.get, client.post):
            response = method(url, FORM) if method == client.post else method(url)
            assert response.status_code in (403, 405), f"{role} got {response.status_code} from {name}"
            if response.status_code == 403:
                refused.add(name)
    assert account_state(mine) == before
    assert refused == {name for name, _route in routes if RANK[role] < RANK[ROUTE_ROLES[name]]}

    # Then every request it may make: none refused.
    for name, route in routes:
        if RANK[role] < RANK[ROUTE_ROLES[name]]:
            continue
        url = reverse(name, kwargs=route_kwargs(route, mine, name))
        for response in (client.get(url), client.post(url, FORM)):
            assert response.status_code != 403, f"{role} was refused {name}"


def test_a_viewer_never_gets_a_secret_link_in_any_page(client):
    viewer = MembershipFactory(role=Role.VIEWER)
    mine = account_objects(viewer.account, "My Villa")
    connection = mine["connection"]
    connection.held_removals = 2
    connection.paused_at = timezone.now()
    connection.pause_reason = "timeout"
    connection.save()
    # A removed sync's export URL is shown to nobody (it answers 410).
    live_tokens = ExportToken.objects.filter(property=connection.property).exclude(connection__archived_at__isnull=False)
    secrets = [connection.import_url, *(export_url(t) for t in live_tokens)]
    export_token_ensure(property=connection.property)  # the property-wide one too
    secrets.append(export_url(ExportToken.objects.get(property=connection.property, connection=None)))
    pages = [reverse(name, kwargs=route_kwargs(route, mine, name)) for name, route in project_routes()
             if ROUTE_ROLES.get(name) == Role.VIEWER] + [reverse("profile")]
    # The pages of a removed sync and a removed property too (their history stays readable).
    secrets.append(mine["removed_connection"].import_url)
    pages += [reverse("connection-detail", args=[mine["removed_connection"].pk]),
              reverse("property-detail", args=[mine["removed_property"].pk])]

    def shown(page_client) -> str:
        return "".join(page_client.get(url).content.decode() for url in pages)

    client.force_login(viewer.user)
    seen = shown(client)
    assert "My Villa" in seen and "Airbnb" in seen
    assert [s for s in secrets if s in seen] == []
    assert "/ical/" not in seen
    # A manager of the same account sees them on the same pages (the test can tell).
    manager = Client()
    manager.force_login(mine["membership"].user)
    assert all(s in shown(manager) for s in secrets)


VIEWER_NOTE = {
    "en": "Your role in Sol Rentals is Viewer: you see everything here, but change nothing. Owners and managers can: ",
    "pt": "A sua função em Sol Rentals é Observador: vê tudo aqui, mas não altera nada. Os proprietários e gestores podem: ",
    "es": "Su función en Sol Rentals es Observador: lo ve todo aquí, pero no cambia nada. Los propietarios y gestores pueden: ",
}
AND = {"en": "and", "pt": "e", "es": "y"}
MORE = {"en": "and 2 more", "pt": "e mais 2", "es": "y 2 más"}


@pytest.mark.parametrize("language", ["en", "pt", "es"])
def test_a_viewer_is_told_her_role_and_who_can_change_things_where_a_manager_has_controls(client, language):
    viewer = MembershipFactory(role=Role.VIEWER, account__name="Sol Rentals", language=language,
                               user__first_name="Inês", user__last_name="Viewer")
    account = viewer.account
    MembershipFactory(account=account, role=Role.MANAGER, user__username="rui")
    MembershipFactory(account=account, role=Role.OWNER, user__username="ana", user__first_name="Ana", user__last_name="Lima")
    MembershipFactory(account=account, role=Role.VIEWER, user__username="vera")  # a viewer changes nothing either
    MembershipFactory(account=account, role=Role.MANAGER, user__username="gone", user__is_active=False)
    mine = account_objects(account, "My Villa")  # adds a manager with a generated username
    connection = mine["connection"]
    connection.paused_at, connection.pause_reason = timezone.now(), "timeout"
    connection.save()
    manager_name = mine["membership"].user.username
    pages = {
        "overview": reverse("home"), "property": reverse("property-detail", args=[connection.property_id]),
        "sync": reverse("connection-detail", args=[connection.pk]), "timeline": reverse("timeline"),
        "properties": reverse("property-list"),  # where managers add properties and act on ticked ones
    }
    client.force_login(viewer.user)
    for where, url in pages.items():
        page = client.get(url).content.decode()
        note = page[page.index('id="viewer-note"'):]
        note = note[:note.index("</p>")]
        # The owners first, then the managers, by name; a viewer and a disabled sign-in are not named.
        names = sorted([manager_name, "rui"], key=str.casefold)
        assert VIEWER_NOTE[language] + f"Ana Lima, {names[0]} {AND[language]} {names[1]}." in note, where
        assert "vera" not in note and "gone" not in note and "Inês" not in note
    # A manager has the controls, and no note.
    manager = Client()
    manager.force_login(mine["membership"].user)
    for url in pages.values():
        assert 'id="viewer-note"' not in manager.get(url).content.decode()

    # A few names, then how many more.
    for n in range(2):
        MembershipFactory(account=account, role=Role.MANAGER, user__username=f"zz{n}")
    page = client.get(pages["overview"]).content.decode()
    assert f"Ana Lima, {names[0]}, {names[1]} {MORE[language]}." in page


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
