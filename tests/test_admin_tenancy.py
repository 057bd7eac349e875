"""The admin as a staff user of another account, given every permission of the app: over every
admin model, lists, detail pages, forms, raw-id look-ups, deletes and saves, nothing of account A
is seen or changed."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from syncs.models import (
    Account,
    Activity,
    Block,
    BlockChange,
    BulkAction,
    Connection,
    DoubleBooking,
    Membership,
    OnboardingUpload,
    PauseEpisode,
    Portal,
    Property,
    StateChange,
    SyncRun,
    Webhook,
    WebhookDelivery,
)
from tests.factories import (
    BlockFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    SyncRunFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

SUPERUSER_ONLY = (Account, Membership, Portal)
# The records of the operators' own pages: superusers read them (support), nobody edits them here.
READ_ONLY = (BulkAction, DoubleBooking, Webhook, WebhookDelivery, OnboardingUpload, StateChange)
SCOPED = (Property, Connection, Block, SyncRun, PauseEpisode, BlockChange, Activity)


def account_objects(account: Account, tag: str) -> dict:
    prop = PropertyFactory(account=account, name=f"{tag} villa")
    connection = ConnectionFactory(property=prop)
    run = SyncRunFactory(connection=connection)
    block = BlockFactory(property=prop, source=connection, summary=f"{tag} block")
    return {
        Account: account,
        Property: prop,
        Connection: connection,
        SyncRun: run,
        Block: block,
        PauseEpisode: PauseEpisode.objects.create(connection=connection, reason="http_4xx"),
        BlockChange: BlockChange.objects.create(block=block, run=run, action="added"),
        Activity: Activity.objects.create(account=account, action="switched_on", connection=connection),
        Membership: account.memberships.first(),
    }


@pytest.fixture
def theirs() -> dict:
    return account_objects(MembershipFactory(account__name="Account A").account, "A")


@pytest.fixture
def staff() -> object:
    """A staff user of account B with every permission of the syncs app."""
    user = UserFactory(username="staff-b", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="syncs"))
    MembershipFactory(user=user, account__name="Account B")
    return user


@pytest.fixture
def mine(staff) -> dict:
    return account_objects(Account.of_user(staff), "B")


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def url(model, view: str, *args) -> str:
    return reverse(f"admin:syncs_{model._meta.model_name}_{view}", args=args)


def test_every_model_of_the_app_is_in_the_matrix():
    registered = {model for model in admin.site._registry if model._meta.app_label == "syncs"}
    assert registered == set(SUPERUSER_ONLY) | set(READ_ONLY) | set(SCOPED)


@pytest.mark.parametrize("model", SUPERUSER_ONLY + READ_ONLY, ids=lambda m: m.__name__)
def test_accounts_memberships_and_portals_are_for_superusers_only(staff_client, theirs, mine, model):
    obj = theirs.get(model) or Portal.objects.first()
    own = mine.get(model) or Portal.objects.first()
    for target in (url(model, "changelist"), url(model, "add"), url(model, "change", obj.pk), url(model, "change", own.pk),
                   url(model, "delete", own.pk), url(model, "changelist") + "?_to_field=id&_popup=1"):
        assert staff_client.get(target).status_code == 403, target
    assert staff_client.post(url(model, "change", own.pk), {"name": "Renamed"}).status_code == 403
    index = staff_client.get(reverse("admin:index")).content.decode()
    assert f"/admin/syncs/{model._meta.model_name}/" not in index


def test_a_staff_user_cannot_add_themself_to_another_account(staff_client, staff, theirs):
    response = staff_client.post(url(Membership, "add"), {"user": staff.pk, "account": theirs[Account].pk, "language": ""})
    assert response.status_code == 403
    assert Account.of_user(staff).name == "Account B"


@pytest.mark.parametrize("model", SCOPED, ids=lambda m: m.__name__)
def test_lists_and_raw_id_look_ups_show_nothing_of_another_account(staff_client, theirs, mine, model):
    for query in ("", "?_to_field=id&_popup=1", "?q=A", "?all=", "?o=1"):
        response = staff_client.get(url(model, "changelist") + query)
        assert response.status_code == 200, query
        shown = set(response.context["cl"].result_list)
        assert theirs[model] not in shown and mine[model] in shown, query
        page = response.content.decode()
        assert "A villa" not in page and "Account A" not in page, query


@pytest.mark.parametrize("model", SCOPED, ids=lambda m: m.__name__)
def test_detail_history_and_delete_pages_of_another_accounts_row_are_not_found(staff_client, theirs, model):
    obj = theirs[model]
    for view in ("change", "history", "delete"):
        response = staff_client.get(url(model, view, obj.pk))
        assert response.status_code == 302 and response["Location"] == reverse("admin:index"), view
    staff_client.post(url(model, "delete", obj.pk), {"post": "yes"})
    staff_client.post(url(model, "changelist"), {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"})
    assert model.objects.filter(pk=obj.pk).exists()


@pytest.mark.parametrize("model", SCOPED, ids=lambda m: m.__name__)
def test_no_form_offers_another_accounts_rows_as_choices(staff, theirs, mine, model):
    request = RequestFactory().get("/")
    request.user = staff
    model_admin = admin.site._registry[model]
    form = model_admin.get_form(request, obj=mine[model])()
    for name, field in form.fields.items():
        queryset = getattr(field, "queryset", None)
        if queryset is None:
            continue
        related = queryset.model
        if related is Portal:
            continue  # shared by every account, and not editable by staff
        if related in theirs:
            assert theirs[related] not in queryset, name
        if related._meta.model_name == "user":
            assert set(queryset) <= {staff}, name


def test_a_block_change_cannot_be_attached_to_another_accounts_block_by_its_raw_id(staff_client, theirs, mine):
    response = staff_client.post(
        url(BlockChange, "add"), {"block": theirs[Block].pk, "run": mine[SyncRun].pk, "action": "added"}
    )
    assert response.status_code == 200
    assert "block" in response.context["adminform"].form.errors
    response = staff_client.post(
        url(BlockChange, "add"), {"block": mine[Block].pk, "run": theirs[SyncRun].pk, "action": "added"}
    )
    assert "run" in response.context["adminform"].form.errors
    assert not BlockChange.objects.filter(block=theirs[Block]).exclude(pk=theirs[BlockChange].pk).exists()


def test_a_property_cannot_be_added_to_another_account_nor_moved_there(staff_client, theirs, mine):
    now = timezone.now()
    fields = {"name": "Sneaky", "timezone": "UTC", "calendar_version": 1,
              "calendar_changed_at_0": now.date().isoformat(), "calendar_changed_at_1": "10:00:00"}
    response = staff_client.post(url(Property, "add"), {**fields, "account": theirs[Account].pk})
    assert response.status_code == 200 and "account" in response.context["adminform"].form.errors
    assert not Property.objects.filter(name="Sneaky").exists()
    response = staff_client.post(url(Property, "change", mine[Property].pk), {**fields, "account": theirs[Account].pk})
    assert response.status_code == 200 and "account" in response.context["adminform"].form.errors
    mine[Property].refresh_from_db()
    assert mine[Property].account.name == "Account B"


def test_a_block_cannot_be_put_on_another_accounts_property_or_sync(staff_client, theirs, mine):
    block = mine[Block]
    response = staff_client.post(url(Block, "change", block.pk), {
        "property": theirs[Property].pk, "source": theirs[Connection].pk, "kind": "blocked",
        "start_date": block.start_date.isoformat(), "end_date": block.end_date.isoformat(), "uid": block.uid,
    })
    errors = response.context["adminform"].form.errors
    assert "property" in errors and "source" in errors
    block.refresh_from_db()
    assert block.property_id == mine[Property].pk


def test_the_property_list_filter_names_no_other_account(staff_client, theirs, mine):
    page = staff_client.get(url(Property, "changelist")).content.decode()
    assert "Account B" in page and "Account A" not in page


def test_a_superuser_still_sees_every_account(client, theirs, mine):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    for model in SCOPED:
        shown = set(client.get(url(model, "changelist")).context["cl"].result_list)
        assert {theirs[model], mine[model]} <= shown
    assert client.get(url(Membership, "changelist")).status_code == 200


def test_a_superuser_reads_the_operators_records_but_changes_none_and_never_sees_a_webhook_secret(client, mine):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    account = mine[Account]
    prop = mine[Property]
    webhook = Webhook.objects.create(account=account, url="https://hooks.example.com/x", events=["paused"], secret_nonce="n0nce-secret-value")
    rows = {
        BulkAction: BulkAction.objects.create(account=account, kind=BulkAction.Kind.SYNC_NOW, connection_ids=[1]),
        DoubleBooking: DoubleBooking.objects.create(property=prop, key="k", fingerprint="f", start_date=timezone.localdate(),
                                                    end_date=timezone.localdate()),
        Webhook: webhook,
        WebhookDelivery: WebhookDelivery.objects.create(webhook=webhook, event="paused"),
        OnboardingUpload: OnboardingUpload.objects.create(account=account, filename="syncs.csv"),
    }
    for model, obj in rows.items():
        assert client.get(url(model, "changelist")).status_code == 200, model
        page = client.get(url(model, "change", obj.pk))
        assert page.status_code == 200, model
        assert "n0nce-secret-value" not in page.content.decode()
        assert client.get(url(model, "add")).status_code == 403, model
        client.post(url(model, "delete", obj.pk), {"post": "yes"})
        assert model.objects.filter(pk=obj.pk).exists(), model


# --------------------------------------------------------------------------- other apps' admins


def other_apps_models() -> list:
    return [model for model in admin.site._registry if model._meta.app_label != "syncs"]


@pytest.fixture
def all_powerful_staff(staff):
    """The staff user of account B, given every permission of every app."""
    staff.user_permissions.set(Permission.objects.all())
    return staff


def test_the_admins_of_users_devices_lockouts_and_every_other_app_are_for_superusers_only(client, all_powerful_staff, theirs):
    from django.contrib.auth.models import Group
    from django_otp.plugins.otp_static.models import StaticDevice
    from django_otp.plugins.otp_totp.models import TOTPDevice

    victim = theirs[Membership].user
    TOTPDevice.objects.create(user=victim, name="app", confirmed=True)
    StaticDevice.objects.create(user=victim, name="codes", confirmed=True)
    Group.objects.create(name="support")
    client.force_login(all_powerful_staff)
    models = other_apps_models()
    labels = {model._meta.label for model in models}
    assert {"auth.User", "auth.Group", "otp_totp.TOTPDevice", "otp_static.StaticDevice", "axes.AccessAttempt",
            "axes.AccessLog", "axes.AccessFailureLog"} <= labels
    for model in models:
        names = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        pages = [reverse(f"{names}_changelist"), reverse(f"{names}_add")]
        row = model._default_manager.first()
        if row is not None:
            pages += [reverse(f"{names}_change", args=[row.pk]), reverse(f"{names}_delete", args=[row.pk])]
        for page in pages:
            assert client.get(page).status_code == 403, page
    index = client.get(reverse("admin:index")).content.decode()
    assert not any(f"/admin/{model._meta.app_label}/" in index for model in models)
    assert client.get(reverse("admin:autocomplete") + "?app_label=syncs&model_name=activity&field_name=user").status_code == 403


def test_staff_can_never_change_superuser_staff_groups_or_permissions_not_even_their_own(client, all_powerful_staff):
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="everything")
    group.permissions.set(Permission.objects.all())
    client.force_login(all_powerful_staff)
    own = reverse("admin:auth_user_change", args=[all_powerful_staff.pk])
    response = client.post(own, {
        "username": all_powerful_staff.username, "is_active": "on", "is_staff": "on", "is_superuser": "on",
        "groups": [group.pk], "user_permissions": [], "date_joined_0": "2027-01-01", "date_joined_1": "10:00:00",
    })
    assert response.status_code == 403
    assert client.post(reverse("admin:auth_user_password_change", args=[all_powerful_staff.pk]),
                       {"password1": "new pass phrase 9", "password2": "new pass phrase 9"}).status_code == 403
    all_powerful_staff.refresh_from_db()
    assert not all_powerful_staff.is_superuser
    assert not all_powerful_staff.groups.exists()
    assert all_powerful_staff.check_password("correct horse battery")


def test_a_superuser_still_manages_users_and_devices(client, theirs):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    for name in ("admin:auth_user_changelist", "admin:otp_totp_totpdevice_changelist", "admin:axes_accessattempt_changelist"):
        assert client.get(reverse(name)).status_code == 200, name
    victim = theirs[Membership].user
    assert client.get(reverse("admin:auth_user_change", args=[victim.pk])).status_code == 200


# --------------------------------------------------------------------------- the dashboard's checks in the admin


def connection_post(prop, portal_obj, import_url: str) -> dict:
    return {"property": prop.pk, "portal": portal_obj.pk, "direction": "two_way", "import_url": import_url,
            "enabled": "on", "sync_interval_minutes": "30", "export_summary": "Not available"}


def dashboard_errors(client, prop, data: dict) -> list[str]:
    page = client.post(reverse("connection-create", args=[prop.pk]), {**data, "check_now": ""})
    return [str(e) for e in page.context["form"].errors.get("import_url", [])]


@pytest.mark.parametrize("who", ["staff", "superuser"])
@pytest.mark.parametrize(
    "link", ["http://127.0.0.1:8000/cal.ics", "http://10.0.0.7/cal.ics", "http://[::1]/cal.ics",
             "https://user:pw@www.airbnb.com/calendar/ical/1.ics", "ftp://www.airbnb.com/x.ics", "not a link at all"],
)
def test_the_admin_refuses_a_link_the_dashboard_refuses_with_the_same_words(client, staff, mine, who, link, settings):
    settings.FETCH_ALLOW_LOOPBACK = False
    from tests.factories import portal

    Membership.objects.filter(user=staff).update(role=Membership.Role.OWNER)
    user = staff if who == "staff" else UserFactory(username="root", is_staff=True, is_superuser=True)
    if who == "superuser":
        MembershipFactory(user=user, account=mine[Account])
    client.force_login(user)
    data = connection_post(mine[Property], portal("airbnb"), link)
    before = Connection.objects.count()
    response = client.post(url(Connection, "add"), data)
    assert response.status_code == 200
    admin_errors = [str(e) for e in response.context["adminform"].form.errors.get("import_url", [])]
    assert admin_errors and admin_errors == dashboard_errors(client, mine[Property], data)
    assert Connection.objects.count() == before


def test_the_admin_refuses_a_second_sync_of_the_same_calendar_and_saves_a_tidied_link(client, staff, mine):
    from tests.factories import portal

    Membership.objects.filter(user=staff).update(role=Membership.Role.OWNER)
    client.force_login(staff)
    taken = mine[Connection].import_url
    duplicate = client.post(url(Connection, "add"), connection_post(mine[Property], portal("airbnb"), taken))
    errors = [str(e) for e in duplicate.context["adminform"].form.errors.get("import_url", [])]
    assert errors and errors == dashboard_errors(client, mine[Property], connection_post(mine[Property], portal("airbnb"), taken))
    assert Connection.objects.filter(import_url=taken).count() == 1

    # Moving another sync onto the same link is refused the same way.
    other = ConnectionFactory(property=mine[Property])
    moved = client.post(url(Connection, "change", other.pk), connection_post(mine[Property], portal("airbnb"), taken))
    assert moved.status_code == 200 and "import_url" in moved.context["adminform"].form.errors
    other.refresh_from_db()
    assert other.import_url != taken

    pasted = "  <www.airbnb.com/calendar/ical/777.ics?s=abc>\n"
    saved = client.post(url(Connection, "add"), connection_post(mine[Property], portal("airbnb"), pasted))
    assert saved.status_code == 302
    assert Connection.objects.filter(import_url="https://www.airbnb.com/calendar/ical/777.ics?s=abc").exists()
