"""Confirm or undo every destructive action: switching syncs off is undone in one click, exactly
as it was; removing a webhook and opening nights again ask first. Every path works as a plain
form, without JavaScript."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from syncs.export_tokens import export_token_ensure
from syncs.models import Activity, Block, Connection, Membership, PauseEpisode, Undo, Webhook
from syncs.operator_actions import connection_set_enabled
from syncs.removal import connections_remove
from syncs.sync_settings import connection_settings_update
from syncs.undo import WINDOW
from tests.factories import (
    BlockFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    portal,
)

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def manager(client):
    membership = MembershipFactory(role=Membership.Role.MANAGER)
    client.force_login(membership.user)
    return membership


# What "as it was" means: every field of the row but the bookkeeping the switch itself moves on.
# The state itself is compared; when it was entered again is the undo's moment, not the old one.
BOOKKEEPING = {"settings_version", "updated_at", "lease_holder", "lease_until", "state_since", "state_changes_at"}


def as_it_is(connection: Connection) -> dict:
    row = Connection.objects.filter(pk=connection.pk).values().get()
    return {name: value for name, value in row.items() if name not in BOOKKEEPING}


def undo_form(page: str) -> tuple[str, str]:
    """The Undo button's form in a page: its action and the page it comes back to."""
    form = re.search(r'<form method="post" action="(/undo/(\d+)/)" class="inline undo-form" id="undo-\2"[^>]*>.*?</form>', page, re.S)
    assert form, "no Undo in the page"
    back = re.search(r'name="next" value="([^"]*)" form="undo-\d+"', form.group(0)).group(1)
    assert re.search(r'<button type="submit" class="undo-button" form="undo-\d+" aria-keyshortcuts="Alt\+Z"[^>]*>Undo</button>', form.group(0))
    assert re.search(r'name="csrfmiddlewaretoken" value="\w+" form="undo-\d+"', form.group(0))
    return form.group(1), html.unescape(back)


def test_bulk_switch_off_then_undo_puts_every_sync_back_exactly_as_it_was(client, manager):
    now = timezone.now()
    prop = PropertyFactory(account=manager.account, name="Casa Azul")
    working = ConnectionFactory(property=prop, last_success_at=now, next_sync_at=now + timedelta(minutes=17))
    paused = ConnectionFactory(
        property=prop, portal=portal("vrbo"), paused_at=now - timedelta(hours=3), pause_reason="http_4xx",
        pause_params={"status": 404}, consecutive_failures=1, probe_next_at=now + timedelta(minutes=40),
    )
    PauseEpisode.objects.create(connection=paused, started_at=paused.paused_at, reason="http_4xx")
    checking = ConnectionFactory(
        property=prop, portal=portal("booking"), paused_at=now - timedelta(hours=1), pause_reason="timeout",
        checking_since=now - timedelta(minutes=2),
    )
    already_off = ConnectionFactory(property=prop, enabled=False)
    syncs = [working, paused, checking, already_off]
    before = {c.pk: as_it_is(c) for c in syncs}

    response = client.post(
        reverse("bulk-action"), {"action": "switch_off", "connection": [c.pk for c in syncs], "next": "/timeline/"}, follow=True
    )
    page = response.content.decode()
    assert "3 syncs switched off." in page and "1 selected sync was left as it was" in page
    assert not Connection.objects.filter(pk__in=[c.pk for c in syncs], enabled=True).exists()
    action, back = undo_form(page)
    assert back == "/timeline/"

    undone = client.post(action, {"next": back}, follow=True)
    assert undone.redirect_chain[-1][0] == "/timeline/"
    assert "3 syncs switched back on, as they were before." in undone.content.decode()
    for connection in syncs:
        assert as_it_is(connection) == before[connection.pk]  # the paused one still paused, the turn kept...
    assert not Connection.objects.get(pk=already_off.pk).enabled  # ...and one the action did not change, still off
    entry = Activity.objects.get(action="switch_off_undone")
    assert (entry.user, entry.params) == (manager.user, {"count": 3, "left": 0})


def test_an_undo_leaves_a_sync_changed_since_as_it_is_and_says_so(client, manager):
    prop = PropertyFactory(account=manager.account, name="Casa Azul")
    first, edited, again = ConnectionFactory.create_batch(3, property=prop)
    client.post(reverse("bulk-action"), {"action": "switch_off", "connection": [first.pk, edited.pk, again.pk]})
    colleague = MembershipFactory(account=manager.account, role=Membership.Role.MANAGER).user
    connection_settings_update(connection_id=edited.pk, values={"sync_interval_minutes": 60})  # someone edits it
    connection_set_enabled(connection=again, enabled=True, user=colleague)  # someone switches it on...
    connection_set_enabled(connection=again, enabled=False, user=colleague)  # ...and off again

    page = client.post(reverse("undo", args=[Undo.objects.get().pk]), follow=True).content.decode()
    assert "1 sync switched back on, as it was before." in page
    assert "2 syncs were left as they are: someone changed them after they were switched off (Casa Azul · Airbnb, Casa Azul · Airbnb)" in page
    assert list(Connection.objects.filter(pk__in=[first.pk, edited.pk, again.pk]).order_by("pk").values_list("enabled", flat=True)) == [
        True, False, False,
    ]
    assert Activity.objects.get(action="switch_off_undone").params == {"count": 1, "left": 2}
    log = client.get(reverse("activity")).content.decode()
    assert "undid a switch-off" in log and "1 sync put back as it was; 2 changed since, left as they are" in log



def test_an_undo_names_a_sync_removed_since_and_leaves_it_removed(client, manager):
    """Switched off, then removed by a colleague before the Undo: the answer was "0 syncs
    switched back on, as they were before", naming nothing (the removed sync was not even read)."""
    prop = PropertyFactory(account=manager.account, name="Casa Azul")
    kept, removed = ConnectionFactory(property=prop), ConnectionFactory(property=prop, portal=portal("vrbo"))
    client.post(reverse("bulk-action"), {"action": "switch_off", "connection": [kept.pk, removed.pk]})
    colleague = MembershipFactory(account=manager.account, role=Membership.Role.MANAGER).user
    connections_remove(user=colleague, connections=[removed])

    page = client.post(reverse("undo", args=[Undo.objects.get().pk]), follow=True).content.decode()
    assert "1 sync switched back on, as it was before." in page
    assert "1 sync was left as it is: someone changed it after it was switched off (Casa Azul · Vrbo)" in page
    removed_now = Connection.all_objects.get(pk=removed.pk)
    assert removed_now.archived_at is not None and not removed_now.enabled
    assert Connection.objects.get(pk=kept.pk).enabled
    assert Activity.objects.get(action="switch_off_undone").params == {"count": 1, "left": 1}

def test_an_undo_works_once(client, manager):
    connection = ConnectionFactory(property=PropertyFactory(account=manager.account))
    client.post(reverse("bulk-action"), {"action": "switch_off", "connection": [connection.pk]})
    url = reverse("undo", args=[Undo.objects.get().pk])
    client.post(url)
    connection_set_enabled(connection=connection, enabled=False, user=manager.user)
    page = client.post(url, follow=True).content.decode()
    assert "This was undone already." in page
    assert not Connection.objects.get(pk=connection.pk).enabled
    assert Activity.objects.filter(action="switch_off_undone").count() == 1


def test_an_undo_offer_runs_out(client, manager):
    connection = ConnectionFactory(property=PropertyFactory(account=manager.account))
    client.post(reverse("bulk-action"), {"action": "switch_off", "connection": [connection.pk]})
    with time_machine.travel(timezone.now() + WINDOW + timedelta(seconds=1)):
        page = client.post(reverse("undo", args=[Undo.objects.get().pk]), follow=True).content.decode()
    assert "Too late to undo" in page
    assert not Connection.objects.get(pk=connection.pk).enabled


def test_only_managers_and_owners_of_the_account_undo_and_only_by_a_post(client, manager):
    connection = ConnectionFactory(property=PropertyFactory(account=manager.account))
    client.post(reverse("bulk-action"), {"action": "switch_off", "connection": [connection.pk]})
    url = reverse("undo", args=[Undo.objects.get().pk])
    assert client.get(url).status_code == 405
    viewer = MembershipFactory(account=manager.account, role=Membership.Role.VIEWER)
    client.force_login(viewer.user)
    assert client.post(url).status_code == 403
    client.force_login(MembershipFactory().user)  # an owner of another account
    assert client.post(url).status_code == 404
    assert not Connection.objects.get(pk=connection.pk).enabled
    assert Undo.objects.get().undone_at is None


def test_switching_one_sync_off_on_its_page_offers_undo_without_javascript(client, manager):
    connection = ConnectionFactory(
        property=PropertyFactory(account=manager.account), paused_at=timezone.now(), pause_reason="timeout"
    )
    before = as_it_is(connection)
    page_url = reverse("connection-detail", args=[connection.pk])
    response = client.post(reverse("connection-switch", args=[connection.pk]), {"enabled": "0", "next": page_url}, follow=True)
    page = response.content.decode()
    assert "Airbnb sync switched off." in page
    action, back = undo_form(page)
    assert back == page_url
    client.post(action, {"next": back})
    assert as_it_is(connection) == before  # paused by errors again, not "checking"
    entry = Activity.objects.get(action="switch_off_undone")
    assert (entry.connection_id, entry.params["count"]) == (connection.pk, 1)


def test_switching_one_sync_off_in_its_row_offers_undo_in_the_messages(client, manager):
    connection = ConnectionFactory(property=PropertyFactory(account=manager.account))
    property_url = reverse("property-detail", args=[connection.property_id])
    fragment = client.post(
        reverse("connection-switch", args=[connection.pk]), {"enabled": "0"}, HTTP_HX_CURRENT_URL=f"http://testserver{property_url}",
        **HTMX,
    ).content.decode()
    # The toasts area is swapped inside (its words are said through #live-status), and the Undo comes back to the page.
    assert '<div id="toasts" class="toasts" hx-swap-oob="innerHTML">' in fragment
    toast = fragment[fragment.index('<div id="toasts"'):]
    assert "Airbnb sync switched off." in toast
    assert undo_form(toast)[1] == property_url
    assert "data-dismiss-toast" in toast


def test_switching_off_a_sync_already_off_offers_nothing_to_undo(client, manager):
    connection = ConnectionFactory(property=PropertyFactory(account=manager.account), enabled=False)
    response = client.post(reverse("connection-switch", args=[connection.pk]), {"enabled": "0"})
    assert [m.extra_tags for m in get_messages(response.wsgi_request)] == [""]
    assert not Undo.objects.exists()


def test_bulk_actions_other_than_switching_off_offer_no_undo(client, manager):
    connection = ConnectionFactory(property=PropertyFactory(account=manager.account), enabled=False)
    page = client.post(reverse("bulk-action"), {"action": "switch_on", "connection": [connection.pk]}, follow=True).content.decode()
    assert "1 sync switched on." in page and "undo-form" not in page


# --------------------------------------------------------------------------- asking first


def test_removing_a_webhook_asks_first_on_the_page_and_says_its_secret_cannot_be_shown_again(client):
    owner = MembershipFactory()
    client.force_login(owner.user)
    hook = Webhook.objects.create(account=owner.account, url="https://hooks.example.com/x", events=["paused"], secret_nonce="n")
    page = client.get(reverse("webhooks")).content.decode()
    confirm = page[page.index(f'<details class="confirm" id="remove-webhook-{hook.pk}">'):]
    confirm = confirm[:confirm.index("</details>")]
    assert "Remove the webhook to hooks.example.com?" in confirm
    assert "Its signing secret cannot be shown again" in confirm
    assert 'name="confirmed" value="1"' in confirm and "Yes, remove the webhook" in confirm


def test_a_webhook_removal_not_confirmed_shows_the_question_on_its_own_page_and_removes_nothing(client):
    owner = MembershipFactory()
    client.force_login(owner.user)
    hook = Webhook.objects.create(account=owner.account, url="https://hooks.example.com/x", events=["paused"], secret_nonce="n")
    url = reverse("webhook-remove", args=[hook.pk])
    page = client.post(url).content.decode()
    assert "<h1>Remove the webhook to hooks.example.com?</h1>" in page
    assert f'action="{url}"' in page and f'href="{reverse("webhooks")}"' in page
    assert Webhook.objects.filter(pk=hook.pk).exists()
    assert client.post(url, {"confirmed": "1"}).status_code == 302
    assert not Webhook.objects.filter(pk=hook.pk).exists()
    assert Activity.objects.get().action == "webhook_removed"


def test_opening_nights_again_asks_first_naming_the_portals_that_will_see_them_free(client, manager):
    prop = PropertyFactory(account=manager.account)
    airbnb = ConnectionFactory(property=prop)
    ConnectionFactory(property=prop, portal=portal("booking"), direction=Connection.Direction.IMPORT_ONLY)
    export_token_ensure(property=prop, connection=airbnb)
    block = BlockFactory(property=prop, source=None, kind="reserved", summary="Direct: Ana")
    page = client.get(reverse("property-detail", args=[prop.pk])).content.decode()
    confirm = page[page.index(f'<details class="confirm" id="open-again-{block.pk}">'):]
    confirm = confirm[:confirm.index("</details>")]
    assert "Open again the nights from" in confirm  # the button's name says which nights
    assert "This is a booking made here: its guest&#x27;s nights become free." in confirm
    assert "Airbnb will see these nights free the next time they read our calendar" in confirm  # not Booking.com: import only

    url = reverse("block-remove", args=[block.pk])
    asked = client.post(url).content.decode()  # a form without the confirmation: asked on a page of its own
    assert "Yes, open these nights" in asked and Block.objects.get(pk=block.pk).removed_at is None
    client.post(url, {"confirmed": "1"})
    assert Block.objects.get(pk=block.pk).removed_at is not None
