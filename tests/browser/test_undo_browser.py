"""Confirm or undo, in a real Chromium on the demo: syncs switched off (many at once, or one in its
row) come back exactly as they were with one Undo, reached by keyboard; removing a webhook and
opening nights again ask first, with JavaScript and without."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from syncs.models import Block, Connection, Property, Webhook
from tests.browser.screens import axe_serious
from tests.browser.signing_in import log_in

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (fails with REQUIRE_SERVICES=1), saying why
    expect = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_bulk_switch_off_then_undo_puts_every_sync_back_as_it_was(page, demo, shot):
    picked = [demo.ids["Casa do Rio/airbnb"], demo.ids["Casa do Rio/booking"], demo.ids["Apartamento Sol/vrbo"]]
    before = {pk: (c.enabled, c.paused_at, c.next_sync_at) for pk, c in Connection.objects.in_bulk(picked).items()}
    page.clock.install()
    log_in(page)
    page.goto("/timeline/")
    expect(page.locator(f"#tl-sync-{demo.ids['Apartamento Sol/vrbo']}")).to_have_attribute("data-state", "paused")
    for pk in picked:
        page.locator(f"#pick-{pk}").check()
    page.locator("#bulk-bar").get_by_role("button", name="Switch off").click()

    toast = page.locator("#toasts .toast.undo")
    expect(toast).to_contain_text("3 syncs switched off.")
    for pk in picked:
        expect(page.locator(f"#tl-sync-{pk}")).to_have_attribute("data-state", "switched_off")
    # The focus stays on the button used, the message is read out, and the keyboard reaches its
    # Undo by Alt+Z.
    expect(page.locator("#bulk-bar").get_by_role("button", name="Switch off")).to_be_focused()
    expect(page.locator("#live-status")).to_have_text("3 syncs switched off.")
    page.clock.run_for(31_000)  # still offered half a minute later
    expect(toast.get_by_role("button", name="Undo")).to_be_visible()
    assert axe_serious(page) == []
    shot(page, "1-switched-off")
    page.keyboard.press("Alt+z")

    expect(page.locator("#toasts .toast")).to_contain_text("3 syncs switched back on, as they were before.")
    expect(page).to_have_url(demo.url("/timeline/"))
    expect(page.locator(f"#tl-sync-{demo.ids['Apartamento Sol/vrbo']}")).to_have_attribute("data-state", "paused")
    for pk in picked[:2]:
        expect(page.locator(f"#tl-sync-{pk}")).not_to_have_attribute("data-state", "switched_off")
    after = {pk: (c.enabled, c.paused_at, c.next_sync_at) for pk, c in Connection.objects.in_bulk(picked).items()}
    assert after == before
    shot(page, "2-undone")
    page.goto("/activity/")
    expect(page.locator("#activity tbody tr[data-action=switch_off_undone]")).to_contain_text("undid a switch-off")


def test_one_sync_switched_off_in_its_row_is_switched_back_on_by_undo(page, demo, shot):
    log_in(page)
    page.goto(f"/properties/{demo.ids['Casa do Rio']}/")
    row = page.locator(f"#connection-{demo.ids['Casa do Rio/airbnb']}")
    row.get_by_role("button", name="Switch off the Airbnb sync").click()
    expect(row.locator(".badge").first).to_have_text("Switched off")
    toast = page.locator("#toasts .toast.undo")
    expect(toast).to_contain_text("Airbnb sync switched off.")
    expect(row.get_by_role("button", name="Switch on the Airbnb sync")).to_be_focused()
    shot(page, "1-switched-off")
    toast.get_by_role("button", name="Undo").click()
    expect(page.locator("#toasts .toast")).to_contain_text("1 sync switched back on, as it was before.")
    expect(page).to_have_url(demo.url(f"/properties/{demo.ids['Casa do Rio']}/"))
    expect(row.locator(".badge").first).to_have_text("Working")
    assert Connection.objects.get(pk=demo.ids["Casa do Rio/airbnb"]).enabled


@pytest.mark.parametrize("javascript", [True, False], ids=["with-javascript", "without-javascript"])
def test_removing_a_webhook_asks_first_and_says_its_secret_is_lost(new_page, demo, shot, javascript):
    hook = Webhook.objects.create(
        account=Property.objects.get(pk=demo.ids["Casa do Rio"]).account,
        url="https://hooks.example.com/ops", events=["paused"], secret_nonce="n",
    )
    page = new_page(java_script_enabled=javascript)
    log_in(page)
    page.goto("/alerts/webhooks/")
    article = page.locator(f"#webhook-{hook.pk}")
    article.get_by_text("Remove", exact=True).click()
    question = article.locator(f"#remove-webhook-{hook.pk}")
    expect(question).to_contain_text("Remove the webhook to hooks.example.com?")
    expect(question).to_contain_text("Its signing secret cannot be shown again")
    assert Webhook.objects.filter(pk=hook.pk).exists()  # nothing happened yet
    if javascript:  # axe-core runs in the page
        assert axe_serious(page) == []
    shot(page, "1-asked")
    question.get_by_role("button", name="Yes, remove the webhook").click()
    expect(page.locator("#toasts")).to_contain_text("Webhook removed.")
    expect(page.locator(f"#webhook-{hook.pk}")).to_have_count(0)
    assert not Webhook.objects.filter(pk=hook.pk).exists()


def test_opening_nights_again_asks_first_naming_who_will_see_them_free(page, demo, shot):
    prop = demo.ids["Casa do Rio"]
    start = timezone.localdate() + timedelta(days=60)
    block = Block.objects.create(
        property_id=prop, source=None, kind="reserved", start_date=start, end_date=start + timedelta(days=2),
        summary="Direct: Ana", first_seen_at=timezone.now(), last_seen_at=timezone.now(),
    )
    log_in(page)
    page.goto(f"/properties/{prop}/")
    question = page.locator(f"#open-again-{block.pk}")
    question.locator("summary").click()
    expect(question).to_contain_text("This is a booking made here: its guest's nights become free.")
    expect(question).to_contain_text("will see these nights free the next time they read our calendar")
    expect(question).to_contain_text("Airbnb")
    assert Block.objects.get(pk=block.pk).removed_at is None
    assert axe_serious(page) == []
    shot(page, "1-asked")
    question.get_by_role("button", name="Yes, open these nights").click()
    expect(page.locator("#toasts")).to_contain_text("Nights opened again.")
    assert Block.objects.get(pk=block.pk).removed_at is not None
