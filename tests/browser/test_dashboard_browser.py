"""The operator's stories, told in a real Chromium against the demo account.

Each test starts from `make run`'s demo (seeded, feeds imported once) on the live server, logs
in through the login form and clicks its way as a person would. Every page is screenshotted to
var/test-artifacts/browser/, and any console error, uncaught exception, CSP violation or answer
of 500 fails the test (see conftest.py).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.browser.signing_in import log_in, submit_login

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (fails with REQUIRE_SERVICES=1), saying why
    expect = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    # Portals come from a data migration: restore them after each flush of the live database.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PAUSED_WORDS = "Vrbo answered 404: the calendar link no longer exists."
PHONE = {"width": 390, "height": 844}



def mark_the_page(page) -> None:
    """A marker that only survives if the page is never reloaded."""
    page.evaluate("window.__marker = 1")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"


def property_page(page, demo, name: str) -> None:
    page.goto("/")
    page.get_by_role("link", name="Properties", exact=True).first.click()
    page.get_by_role("link", name=name, exact=True).click()
    expect(page).to_have_url(demo.url(f"/properties/{demo.ids[name]}/"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)


# --------------------------------------------------------------------------- 1. logging in


def test_the_operator_logs_in_and_sees_what_is_broken_first(page, demo, shot):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    expect(page.get_by_text("Demo: log in as demo / demo.")).to_be_visible()
    shot(page, "1-login")

    submit_login(page, "demo", "not-the-password")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Please enter a correct username and password.")
    expect(page.get_by_label("Username")).to_have_value("demo")
    shot(page, "2-wrong-password")

    log_in(page)
    expect(page).to_have_url(demo.url("/"))
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    paused = page.locator(f"#attention-{demo.ids['Apartamento Sol/vrbo']}")
    expect(paused).to_contain_text("Vrbo")
    expect(paused).to_contain_text("Apartamento Sol")
    expect(paused).to_contain_text(PAUSED_WORDS)
    fix = paused.get_by_role("button", name="Fix")
    expect(fix).to_be_visible()
    expect(fix).to_have_attribute("href", re.compile(rf"^/connections/{demo.ids['Apartamento Sol/vrbo']}/"))

    conflicts = page.locator("#conflicts")
    expect(conflicts).to_be_visible()
    expect(conflicts).to_contain_text("Possible double booking")
    expect(conflicts).to_contain_text("Beach Loft Algarve")
    expect(conflicts).to_contain_text("booked on Airbnb, Vrbo")
    # What needs the operator first, under the title: the paused sync, then the double booking
    # to check; the counts after them.
    assert page.locator("#status > *").first.get_attribute("id") == "attention"
    assert paused.bounding_box()["y"] < conflicts.bounding_box()["y"] < page.locator(".counts").bounding_box()["y"]
    assert fix.bounding_box()["y"] + fix.bounding_box()["height"] <= page.viewport_size["height"]
    shot(page, "3-overview")

    fix.click()  # opens this sync's page (its fix checklist)
    expect(page).to_have_url(re.compile(rf"/connections/{demo.ids['Apartamento Sol/vrbo']}/"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Vrbo")
    expect(page.get_by_role("navigation", name="breadcrumb")).to_contain_text("Apartamento Sol")
    page.wait_for_load_state("networkidle")
    shot(page, "4-fix")


# --------------------------------------------------------------------------- 2. on and off


def test_switching_a_sync_off_and_on_changes_only_its_row(page, demo, shot):
    log_in(page)
    property_page(page, demo, "Casa do Rio")
    row = page.locator(f"#connection-{demo.ids['Casa do Rio/airbnb']}")
    expect(row.locator(".badge").first).to_have_text("Working")
    shot(page, "1-property")
    mark_the_page(page)

    row.get_by_role("button", name="Switch off the Airbnb sync").click()
    expect(row.locator(".badge").first).to_have_text("Switched off")
    expect(page.locator("#toasts .toast")).to_contain_text("Airbnb sync switched off.")
    expect(row.get_by_role("button", name="Switch on the Airbnb sync")).to_be_visible()
    assert_not_reloaded(page)
    shot(page, "2-switched-off")

    row.get_by_role("button", name="Switch on the Airbnb sync").click()
    expect(row.locator(".badge").first).to_have_text("Working")
    expect(page.locator("#toasts .toast")).to_contain_text("Airbnb sync switched on: it syncs within a minute.")
    expect(row.get_by_role("button", name="Switch off the Airbnb sync")).to_be_visible()
    assert_not_reloaded(page)
    # The other rows were left alone.
    expect(page.locator(f"#connection-{demo.ids['Casa do Rio/booking']} .badge").first).to_have_text("Working")
    shot(page, "3-switched-on")


# --------------------------------------------------------------------------- 3. sync now


def test_sync_now_shows_progress_then_the_row_comes_back_and_the_run_is_in_the_history(page, demo, shot):
    connection_id = demo.ids["Casa do Rio/airbnb"]
    log_in(page)
    property_page(page, demo, "Casa do Rio")
    row = page.locator(f"#connection-{connection_id}")
    mark_the_page(page)

    row.get_by_role("button", name="Sync now").click()
    expect(row.locator(".badge-syncing")).to_have_text("Syncing…")
    expect(row.get_by_role("button", name="Sync now")).to_be_disabled()
    expect(page.locator("#toasts .toast")).to_contain_text("Syncing Airbnb now…")
    shot(page, "1-syncing")

    # The row polls every 2 s and comes back once the run is done.
    expect(row.locator(".badge").first).to_have_text("Working", timeout=15_000)
    expect(row.locator(".badge-syncing")).to_have_count(0)
    expect(row.get_by_role("button", name="Sync now")).to_be_enabled()
    expect(row).not_to_have_attribute("hx-trigger", "every 2s")
    assert_not_reloaded(page)
    shot(page, "2-done")

    row.get_by_role("link", name="Airbnb").click()
    expect(page).to_have_url(demo.url(f"/connections/{connection_id}/"))
    history = page.locator("section", has=page.get_by_role("heading", name="Sync history")).locator("tbody tr")
    expect(history).to_have_count(2)  # the demo's first import, then this one
    expect(history.first.locator("td").nth(1)).to_have_text("Sync now")
    expect(history.nth(1).locator("td").nth(1)).to_have_text("Scheduled")
    shot(page, "3-history")


# --------------------------------------------------------------------------- 4. the calendar


def test_the_month_calendar_goes_to_the_next_month_with_taken_days_coloured(page, demo, shot):
    from syncs.models import Property

    today = Property.objects.get(pk=demo.ids["Casa do Rio"]).local_today()
    this_month = today.replace(day=1)
    next_month = (this_month + timedelta(days=32)).replace(day=1)
    log_in(page)
    property_page(page, demo, "Casa do Rio")
    calendar = page.locator("#calendar")
    expect(calendar.get_by_role("heading", level=2)).to_have_text(this_month.strftime("%B %Y"))
    expect(calendar.locator(".legend")).to_contain_text("Airbnb")
    shot(page, "1-this-month")

    calendar.get_by_role("link", name="Next month").click()
    expect(page).to_have_url(demo.url(f"/properties/{demo.ids['Casa do Rio']}/?month={next_month:%Y-%m}#calendar"))
    calendar = page.locator("#calendar")
    expect(calendar.get_by_role("heading", level=2)).to_have_text(next_month.strftime("%B %Y"))
    expect(calendar.get_by_role("table")).to_have_accessible_name(next_month.strftime("%B %Y"))
    taken = calendar.locator(".day.taken .night")
    assert taken.count() > 0, "the demo's next month has bookings, none is shown"
    free_colour = calendar.locator(".day:not(.taken):not(.out)").first.evaluate("d => getComputedStyle(d).backgroundColor")
    for index in range(taken.count()):
        colour = taken.nth(index).evaluate("d => getComputedStyle(d).backgroundColor")
        assert colour != free_colour, f"taken night {taken.nth(index).inner_text()} is not coloured"
    shot(page, "2-next-month")

    calendar.get_by_role("link", name="Previous month").click()
    expect(page.locator("#calendar").get_by_role("heading", level=2)).to_have_text(this_month.strftime("%B %Y"))


# --------------------------------------------------------------------------- 5. download


def test_the_ics_downloaded_from_a_row_is_a_calendar_without_guest_details(page, demo, shot, tmp_path):
    # Booking.com's export holds the nights of Airbnb (whose feed has guest names, phone digits
    # and reservation links) and Vrbo (whose feed has "Reserved - <name>").
    connection_id = demo.ids["Casa do Rio/booking"]
    log_in(page)
    property_page(page, demo, "Casa do Rio")
    row = page.locator(f"#connection-{connection_id}")
    shot(page, "1-property")
    with page.expect_download() as download_info:
        row.get_by_role("button", name="Download .ics").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".ics")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    body = saved.read_bytes()

    assert body.startswith(b"BEGIN:VCALENDAR\r\n")
    assert body.rstrip(b"\r\n").endswith(b"END:VCALENDAR")
    assert b"\n" not in body.replace(b"\r\n", b""), "a line ends with a bare LF"
    assert b"SUMMARY:Not available\r\n" in body
    assert body.count(b"BEGIN:VEVENT") > 0
    for guest_data in (b"Reserved - ", b"Phone", b"airbnb.com/hosting", b"Reservation URL"):
        assert guest_data not in body, f"guest data {guest_data!r} in the export"


# --------------------------------------------------------------------------- 6. adding a sync


def test_adding_a_sync_by_pasting_an_airbnb_link(page, demo, shot):
    from syncs.models import Connection

    log_in(page)
    property_page(page, demo, "Casa do Rio")
    page.get_by_role("button", name="Add a portal").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Add a calendar sync")
    shot(page, "1-form")

    page.get_by_label("The portal's calendar link").fill("  webcal://www.airbnb.com/calendar/ical/123456.ics?s=abc  ")
    expect(page.get_by_label("Portal", exact=True)).to_have_value("")  # "Recognise it from the link"
    # The check reads the calendar live, and these tests never leave the machine.
    page.get_by_label("Check the link now before saving").uncheck()
    shot(page, "2-filled")
    page.get_by_role("button", name="Add the sync").click()

    expect(page).to_have_url(re.compile(r"/connections/\d+/$"))
    connection_id = int(re.search(r"/connections/(\d+)/$", page.url).group(1))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Airbnb")
    expect(page.locator("#toasts")).to_contain_text("We recognised Airbnb from the link.")
    link = page.locator("#import-url")
    expect(link).to_have_attribute("data-full", "https://www.airbnb.com/calendar/ical/123456.ics?s=abc")
    expect(link).not_to_contain_text("s=abc")  # masked until asked
    page.get_by_role("button", name="show").click()
    expect(link).to_have_text("https://www.airbnb.com/calendar/ical/123456.ics?s=abc")
    shot(page, "3-connection")
    connection = Connection.objects.select_related("portal").get(pk=connection_id)
    assert (connection.portal.slug, connection.import_url) == (
        "airbnb", "https://www.airbnb.com/calendar/ical/123456.ics?s=abc"
    )

    page.get_by_role("link", name="Activity", exact=True).click()
    entry = page.locator("tbody tr").first
    expect(entry).to_contain_text("demo")
    expect(entry).to_contain_text("added the sync")
    expect(entry).to_contain_text("Airbnb · Casa do Rio")
    shot(page, "4-activity")


# --------------------------------------------------------------------------- 7. on a phone


def _page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def _phone(new_page):
    return new_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)


def test_on_a_phone_logging_in_works(new_page, demo, shot):
    page = _phone(new_page)
    page.goto("/accounts/login/")
    assert _page_width(page) <= PHONE["width"] + 1
    shot(page, "1-login")
    log_in(page)
    expect(page).to_have_url(demo.url("/"))
    expect(page.get_by_text(PAUSED_WORDS)).to_be_visible()
    expect(page.locator(f"#attention-{demo.ids['Apartamento Sol/vrbo']}").get_by_role("button", name="Fix")).to_be_visible()
    shot(page, "2-overview")


def test_on_a_phone_the_overview_and_the_property_page_do_not_overflow_sideways(new_page, demo, shot):
    page = _phone(new_page)
    log_in(page)
    expect(page.get_by_text(PAUSED_WORDS)).to_be_visible()
    widths = {"overview": _page_width(page)}
    shot(page, "1-overview")
    page.goto(f"/properties/{demo.ids['Casa do Rio']}/")
    expect(page.locator("#connections")).to_be_visible()
    widths["property page"] = _page_width(page)
    shot(page, "2-property")
    too_wide = {name: width for name, width in widths.items() if width > PHONE["width"] + 1}
    assert not too_wide, f"wider than the {PHONE['width']} px phone: {too_wide}"


# --------------------------------------------------------------------------- 8. every page, clean


def test_every_page_loads_its_styles_and_scripts_without_console_errors_or_csp_violations(
    page, demo, problems, shot
):
    log_in(page)
    expect(page).to_have_url(demo.url("/"))
    visited = []

    def visit(path: str, step: str) -> None:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        # Our stylesheet applies (the dark top bar) and htmx runs: nothing blocked by the CSP.
        assert page.locator(".topbar").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(29, 35, 48)"
        assert page.evaluate("typeof window.htmx") == "object", f"htmx did not load on {path}"
        visited.append(path)
        shot(page, step)

    visit("/", "1-overview")
    visit("/properties/", "2-properties")
    for index, name in enumerate(("Casa do Rio", "Apartamento Sol", "Beach Loft Algarve"), start=3):
        visit(f"/properties/{demo.ids[name]}/", f"{index}-property")
    visit(f"/connections/{demo.ids['Beach Loft Algarve/vrbo']}/", "6-connection")
    visit(f"/connections/{demo.ids['Apartamento Sol/vrbo']}/", "7-connection-paused")
    page.goto("/")
    visit(page.get_by_role("button", name="Fix").first.get_attribute("href"), "7b-fix")
    visit(f"/properties/{demo.ids['Casa do Rio']}/connections/new/", "8-add-sync")
    visit(f"/connections/{demo.ids['Casa do Rio/vrbo']}/edit/", "9-edit-sync")
    visit(f"/properties/{demo.ids['Casa do Rio']}/edit/", "10-edit-property")
    visit("/properties/new/", "11-new-property")
    visit("/activity/", "12-activity")
    # An htmx swap too: the overview's status refresh, as its 30 s timer would do it.
    page.goto("/")
    with page.expect_response(lambda response: "/overview/status/" in response.url):
        page.evaluate("htmx.ajax('GET', '/overview/status/', {target: '#status', swap: 'outerHTML'})")
    expect(page.locator("#status")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    visit("/accounts/login/", "13-logged-out")

    assert not problems.items, "The browser reported problems:\n" + "\n".join(problems.items)
    assert len(visited) == 14
