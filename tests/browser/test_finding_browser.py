"""Finding things in a real Chromium, on the demo: on a 360x740 phone the properties list and the
timeline start with their data on the first screen, in English, Portuguese and Spanish; the list
is searched without accents, filtered by health, sorted and downloaded as it is shown; a
manager reaches email alerts and webhooks from the menu."""

from __future__ import annotations

import csv
import io
import re

import pytest

from syncs.models import Membership, Property
from tests.browser.screens import axe_serious, page_width
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
LAPTOP = {"width": 1280, "height": 800}
# The nights a phone shows at once, beside the property's name, without scrolling sideways.
NIGHTS_ON_A_PHONE = 10


def _visible_nights(page) -> int:
    return page.evaluate("""() => {
        const scroller = document.querySelector('.timeline-scroll').getBoundingClientRect();
        return Array.from(document.querySelectorAll('#timeline thead .tl-day'))
            .filter(day => day.getBoundingClientRect().right <= Math.min(scroller.right, window.innerWidth)).length;
    }""")


@pytest.mark.parametrize("language", ["en", "pt", "es"])
def test_on_a_phone_the_properties_and_the_timeline_start_on_the_first_screen(new_page, demo, shot, language):
    Membership.objects.filter(user__username="demo").update(language=language)  # an owner: every control shown
    page = new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    log_in(page)

    page.goto("/properties/")
    first = page.locator("#property-table tbody tr").first
    expect(first).to_be_visible()
    name = first.locator(".card-title a").bounding_box()
    health = first.locator("td.health").bounding_box()
    assert name["y"] + name["height"] <= PHONE["height"], f"the first property's name is at y = {name['y']:.0f}"
    assert health["y"] + health["height"] <= PHONE["height"], f"its health ends at y = {health['y'] + health['height']:.0f}"
    assert page_width(page) <= PHONE["width"]
    shot(page, f"{language}-1-properties")
    # The filters are one tap away, and work.
    page.locator("#property-filters summary").click()
    page.locator("#property-filters select[name=state]").select_option("paused")
    page.locator("#property-filters .filters button").click()
    expect(page.locator("#property-table tbody tr")).to_have_count(1)
    expect(page.locator("#property-table tbody")).to_contain_text("Apartamento Sol")
    assert axe_serious(page) == []

    page.goto("/timeline/")
    row = page.locator("#timeline-rows > tr[id^=tl-property]").first
    expect(row).to_be_visible()
    box = row.locator("th a").first.bounding_box()
    assert box["y"] + box["height"] <= PHONE["height"], f"the timeline's first property is at y = {box['y']:.0f}"
    shot(page, f"{language}-2-timeline")
    nights = _visible_nights(page)
    assert nights >= NIGHTS_ON_A_PHONE, (nights, page.evaluate(
        "[innerWidth, document.querySelector('.timeline-scroll').getBoundingClientRect().right,"
        " document.querySelector('#timeline thead .tl-name').getBoundingClientRect().width]"))
    assert page_width(page) <= PHONE["width"]
    assert axe_serious(page) == []


def test_on_a_laptop_the_list_tools_are_open_and_the_first_property_on_the_first_screen(new_page, demo, shot):
    page = new_page(viewport=LAPTOP)
    log_in(page)
    page.goto("/properties/")
    expect(page.get_by_label("Health")).to_be_visible()
    box = page.locator("#property-table tbody tr").first.bounding_box()
    assert box["y"] + box["height"] <= LAPTOP["height"], f"the first property ends at y = {box['y'] + box['height']:.0f}"
    # What to do with ticked properties shows at the first tick.
    expect(page.locator("#bulk-bar").get_by_role("button", name="Switch off")).to_be_hidden()
    page.locator("#property-table tbody input[type=checkbox]").first.check()
    expect(page.locator("#bulk-bar").get_by_role("button", name="Switch off")).to_be_visible()
    page.goto("/timeline/")
    expect(page.get_by_label("State")).to_be_visible()
    assert page.locator("#timeline-rows > tr").first.bounding_box()["y"] < LAPTOP["height"]
    shot(page, "timeline")


def test_an_operator_finds_a_property_without_its_accents_sorts_the_list_and_downloads_it(new_page, demo, shot):
    demo_account = Property.objects.get(pk=demo.ids["Casa do Rio"]).account
    Property.objects.create(account=demo_account, name="Ático Lisboa", timezone="Europe/Lisbon")
    page = new_page(viewport=LAPTOP)
    log_in(page)
    page.goto("/properties/")
    # By name, Ático comes between Apartamento and Beach, not after every plain letter as in a byte order.
    expect(page.locator("#property-table tbody tr").nth(1)).to_contain_text("Ático Lisboa")
    page.get_by_label("Search by name").fill("ATICO")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#property-table tbody tr")).to_have_count(1)
    expect(page.locator("#property-table tbody")).to_contain_text("Ático Lisboa")
    shot(page, "1-found")

    page.get_by_label("Search by name").fill("")
    page.get_by_label("Sort by").select_option("health")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"sort=health"))
    rows = page.locator("#property-table tbody tr")
    expect(rows.first).to_contain_text("Apartamento Sol")  # its paused sync: the worst
    expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Health")
    shown = [text.strip() for text in page.locator("#property-table tbody .card-title").all_inner_texts()]
    with page.expect_download() as download:
        page.get_by_role("link", name="Download this list (CSV)").click()
    data = open(download.value.path(), encoding="utf-8-sig").read()  # noqa: SIM115 (read at once)
    listed = list(csv.reader(io.StringIO(data)))
    assert listed[0][:4] == ["Property", "Time zone", "Syncs", "Health"]
    assert [row[0] for row in listed[1:]] == shown
    shot(page, "2-by-health")

    # The column headings sort too, the other way on a second click.
    page.locator("#property-table thead").get_by_role("link", name="Health").click()
    expect(page).to_have_url(re.compile(r"sort=-health"))
    expect(rows.last).to_contain_text("Apartamento Sol")


def test_a_manager_reaches_email_alerts_and_webhooks_from_the_menu(new_page, demo, shot):
    Membership.objects.filter(user__username="demo").update(role=Membership.Role.MANAGER)
    page = new_page(viewport=LAPTOP)
    log_in(page)
    menu = page.get_by_role("navigation", name="Menu")
    menu.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks")
    expect(menu.get_by_role("link", name="Webhooks")).to_have_attribute("aria-current", "page")
    menu.get_by_role("link", name="Email alerts").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your alerts")
    shot(page, "alerts")
