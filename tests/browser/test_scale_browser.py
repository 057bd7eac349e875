"""Operating at scale in a real Chromium, on the demo: the timeline shows the double booking and
the paused sync; two syncs switched off in one action, in the activity log as one entry; a
double booking marked handled comes back when a stay moves."""

from __future__ import annotations

from datetime import timedelta

import pytest

from syncs.models import Activity, Block, Connection
from syncs.webhooks import scan_double_bookings
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

PHONE = {"width": 360, "height": 740}


def test_the_timeline_shows_the_demos_double_booking_and_paused_sync(page, demo, shot):
    log_in(page)
    page.goto("/timeline/")
    loft = page.locator(f"#tl-property-{demo.ids['Beach Loft Algarve']}")
    expect(loft.locator("td.conflict").first).to_be_visible()
    expect(loft.locator("td.conflict .night.portal-airbnb").first).to_be_attached()
    expect(loft.locator("td.conflict .night.portal-vrbo").first).to_be_attached()
    expect(loft).to_contain_text("possible double booking")
    paused = page.locator(f"#tl-sync-{demo.ids['Apartamento Sol/vrbo']}")
    expect(paused).to_have_attribute("data-state", "paused")
    flag = paused.locator(".tl-flag")
    expect(flag).to_have_text("Paused by errors")
    flag.focus()
    expect(paused.locator(".tl-why")).to_be_visible()
    expect(paused.locator(".tl-why")).to_contain_text("404")
    expect(flag).to_have_attribute("href", f"/connections/{demo.ids['Apartamento Sol/vrbo']}/fix/")
    # Every colour of the legend and of the syncs' labels is drawn (an empty swatch had no height).
    for swatch in [*page.locator("#timeline-legend .swatch").all(), *page.locator("#timeline-rows .swatch").all()]:
        box = swatch.bounding_box()
        assert box and box["width"] >= 10 and box["height"] >= 10, swatch.evaluate("e => e.outerHTML")
    shot(page, "1-desktop")
    # Filtered by state: only the paused sync's property.
    page.get_by_label("State").select_option("paused")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#timeline-rows > tr[id^=tl-property]")).to_have_count(1)
    expect(page.locator("#timeline-rows")).to_contain_text("Apartamento Sol")


def test_the_timeline_works_on_a_phone(new_page, demo, shot):
    page = new_page(viewport=PHONE)
    log_in(page)
    page.goto("/timeline/")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # the page does not scroll sideways
    scroller = page.locator(".timeline-scroll")
    assert page.evaluate("(el) => el.scrollWidth > el.clientWidth", scroller.element_handle())  # the nights do
    name = page.locator(f"#tl-property-{demo.ids['Casa do Rio']} th")
    before = name.bounding_box()["x"]
    scroller.evaluate("(el) => el.scrollLeft = 400")
    assert abs(name.bounding_box()["x"] - before) < 1  # the property's name stays in view
    shot(page, "phone")


def test_two_syncs_switched_off_in_one_action_are_one_entry_of_the_activity_log(page, demo, shot):
    log_in(page)
    page.goto("/timeline/")
    first, second = demo.ids["Casa do Rio/airbnb"], demo.ids["Casa do Rio/booking"]
    page.locator(f"#pick-{first}").check()
    page.locator(f"#pick-{second}").check()
    page.locator("#bulk-bar").get_by_role("button", name="Switch off").click()
    expect(page.locator("#toasts")).to_contain_text("2 syncs switched off.")
    expect(page.locator(f"#tl-sync-{first}")).to_have_attribute("data-state", "switched_off")
    expect(page.locator(f"#tl-sync-{second}")).to_have_attribute("data-state", "switched_off")
    assert not Connection.objects.get(pk=first).enabled and not Connection.objects.get(pk=second).enabled
    assert Connection.objects.filter(enabled=False).count() == 2
    shot(page, "1-switched-off")
    page.goto("/activity/")
    entry = page.locator("#activity tbody tr[data-action=bulk_switched_off]")
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text("switched several syncs off at once")
    expect(entry).to_contain_text("2 syncs")
    expect(entry).to_contain_text("demo")
    assert Activity.objects.filter(action="switched_off").count() == 0  # one entry, not one per sync
    shot(page, "2-activity")


def test_a_double_booking_marked_handled_comes_back_when_a_stay_moves(page, demo, shot):
    log_in(page)
    page.goto("/")
    item = page.locator("#conflicts .conflict-item", has_text="Beach Loft Algarve")
    item.get_by_text("Mark as handled").first.click()
    item.get_by_label("Note (what you did)").fill("Called the Vrbo guest, moved to Casa do Rio")
    item.get_by_role("button", name="Mark as handled").click()
    expect(page.locator("#toasts")).to_contain_text("Marked as handled")
    expect(page.locator("#conflicts")).to_have_count(0)
    handled = page.locator("#handled-conflicts")
    expect(handled).to_contain_text("Beach Loft Algarve")
    handled.locator("summary").click()
    expect(handled).to_contain_text("Called the Vrbo guest")
    expect(page.locator("#all-good, #attention").first).to_be_visible()
    shot(page, "1-handled")

    # The Vrbo stay moves by a night (as the next sync of a changed feed would write it).
    vrbo = Connection.objects.get(pk=demo.ids["Beach Loft Algarve/vrbo"])
    airbnb_nights = Block.objects.filter(source_id=demo.ids["Beach Loft Algarve/airbnb"], removed_at__isnull=True)
    clashing = next(
        b for b in Block.objects.filter(source=vrbo, removed_at__isnull=True)
        if any(a.start_date < b.end_date and b.start_date < a.end_date for a in airbnb_nights)
    )
    Block.objects.filter(pk=clashing.pk).update(end_date=clashing.end_date + timedelta(days=1))
    page.reload()
    expect(page.locator("#conflicts")).to_contain_text("Beach Loft Algarve")
    expect(page.locator("#handled-conflicts")).to_have_count(0)
    # The scan records it, with no user.
    scan_double_bookings(now=clashing.last_seen_at)
    assert Activity.objects.filter(action="double_booking_back", user=None).count() == 1
    shot(page, "2-back")
