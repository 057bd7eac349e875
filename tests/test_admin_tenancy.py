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
READ_ONLY = (BulkAction, DoubleBooking, Webhook, WebhookDelivery, OnboardingUpload)
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
