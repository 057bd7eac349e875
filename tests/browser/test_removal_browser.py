"""Removing a sync in a real Chromium, as an operator would: from its edit page, through the page
that says what follows, to a sync gone from the overview's tiles and the timeline, whose export
URL answers 410 Gone and whose history stays readable; then restored, and everything back."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from syncs.export_tokens import export_token_ensure, token_from_nonce
from syncs.models import Connection
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



def export_path(connection_id: int) -> str:
    connection = Connection.all_objects.select_related("property").get(pk=connection_id)
    token = export_token_ensure(property=connection.property, connection=connection)
    return reverse("export-feed", kwargs={"token": token_from_nonce(token.nonce)})


def test_an_operator_removes_a_sync_sees_it_gone_everywhere_and_restores_it(page, demo, shot):
    sync_id, property_id = demo.ids["Casa do Rio/airbnb"], demo.ids["Casa do Rio"]
    feed = export_path(sync_id)
    assert page.request.get(demo.url(feed)).status == 200
    log_in(page)
    total = int(page.locator("#counts").get_attribute("data-total"))

    # From the sync's edit page, to the page that says what follows.
    page.goto(f"/connections/{sync_id}/edit/")
    page.get_by_role("button", name="Remove…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Remove the Airbnb sync of Casa do Rio?")
    expect(page.locator(".gone")).to_contain_text("The calendar we publish for Airbnb")
    expect(page.locator(".gone")).to_contain_text("its URL answers “gone” from now on")
    expect(page.locator(".portal-settings")).to_contain_text("remove the calendar imported from us in Airbnb's calendar settings")
    expect(page.locator("#remove-confirm")).to_contain_text("for 30 days you can restore what you remove")
    shot(page, "confirm")
    page.get_by_role("button", name="Remove the sync").click()

    expect(page).to_have_url(re.compile(rf"/properties/{property_id}/$"))
    expect(page.locator(".toast").first).to_contain_text("Removed the Airbnb sync of Casa do Rio")
    expect(page.locator(f"#connection-{sync_id}")).to_have_count(0)
    expect(page.locator("#removed-syncs")).to_contain_text("1 removed sync")

    # Gone from the overview's tiles and the timeline; its export URL says so to the portal.
    page.goto("/")
    expect(page.locator("#counts")).to_have_attribute("data-total", str(total - 1))
    shot(page, "overview")
    page.goto("/timeline/")
    expect(page.locator(f"#tl-sync-{demo.ids['Casa do Rio/booking']}")).to_have_count(1)
    expect(page.locator(f"#tl-sync-{sync_id}")).to_have_count(0)
    gone = page.request.get(demo.url(feed))
    assert gone.status == 410

    # Its history stays readable, on its own page, which restores it.
    page.goto(f"/properties/{property_id}/")
    page.locator("#removed-syncs summary").click()
    page.locator("#removed-syncs").get_by_role("link", name="Airbnb").click()
    expect(page.locator("#removed")).to_contain_text("Removed on")
    expect(page.locator("#removed")).to_contain_text("by demo; restore until")
    expect(page.get_by_role("heading", name="Sync history")).to_be_visible()
    expect(page.locator("table").first).to_contain_text("Synced")
    shot(page, "removed")
    page.get_by_role("button", name="Restore").click()

    expect(page.locator(".toast").first).to_contain_text("Restored the Airbnb sync of Casa do Rio")
    expect(page.locator("#removed")).to_have_count(0)
    assert page.request.get(demo.url(feed)).status == 200
    page.goto("/")
    expect(page.locator("#counts")).to_have_attribute("data-total", str(total))
    page.goto("/timeline/")
    expect(page.locator(f"#tl-sync-{sync_id}")).to_have_count(1)
    shot(page, "restored")
