"""The operator's screens in a real Chromium: the month calendar of a property with eight syncs
of three portals, the fix checklist (statuses on load, a new link pasted into step 2, the final
check refused while the import fails, and the whole checklist without JavaScript), and copy
buttons that copy or say they could not."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from syncs.portals import HERE_LOOK, LOOKS
from tests.browser.signing_in import log_in
from tests.browser.test_fix_checklist_browser import VrboPortal, vrbo_portal  # noqa: F401 (a fixture)

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (fails with REQUIRE_SERVICES=1), saying why
    expect = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PHONE = {"width": 390, "height": 844}



def rgb(hex_colour: str) -> str:
    value = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(value[i:i + 2], 16) for i in (0, 2, 4)))


def background(locator) -> str:
    return locator.evaluate("e => getComputedStyle(e).backgroundColor")


# --------------------------------------------------------------------------- the month calendar


@pytest.fixture
def eight_syncs(demo):
    """Casa do Rio with eight syncs: three Airbnb, three Booking.com, two Vrbo, each with its own
    nights in a month ahead, one night booked on Airbnb 2 and Vrbo 1 both, and one closed here."""
    from syncs.models import Block, Connection, Portal, Property

    prop = Property.objects.get(pk=demo.ids["Casa do Rio"])
    Block.objects.filter(property=prop).delete()
    month = (prop.local_today().replace(day=1) + timedelta(days=70)).replace(day=1)
    portals = {p.slug: p for p in Portal.objects.all()}
    for n, slug in enumerate(["airbnb", "airbnb", "booking", "booking", "vrbo"]):
        Connection.objects.create(property=prop, portal=portals[slug], import_url=f"https://example.com/{slug}-{n}.ics")
    syncs = {}
    for slug in ("airbnb", "booking", "vrbo"):
        for number, connection in enumerate(prop.connections.filter(portal__slug=slug).order_by("pk"), start=1):
            syncs[f"{slug}{number}"] = connection
    assert len(syncs) == 8

    def block(key: str, first: int, nights: int, kind: str = "blocked"):
        Block.objects.create(property=prop, source=syncs[key] if key else None, kind=kind,
                             start_date=month.replace(day=first), end_date=month.replace(day=first + nights))

    for day, key in enumerate(syncs, start=1):  # each sync its own night, from the 1st to the 8th
        block(key, day, 1, "reserved" if key.startswith("airbnb") else "blocked")
    block("airbnb2", 12, 3, "reserved")  # the 12th to the 14th ...
    block("vrbo1", 14, 2, "reserved")  # ... and the 14th is also booked on Vrbo: a double booking
    block(None, 20, 2)  # closed here
    return prop, month, syncs


def test_a_portal_has_one_colour_in_cells_and_legend_and_a_double_booking_shows_both_sources(
    page, demo, eight_syncs, shot
):
    from syncs.models import Connection, Portal

    prop, month, _syncs = eight_syncs
    log_in(page)
    page.goto(f"/properties/{prop.pk}/?month={month:%Y-%m}")
    calendar = page.locator("#calendar")
    grid = calendar.get_by_role("table")
    expect(grid).to_have_accessible_name(month.strftime("%B %Y"))
    expect(grid.get_by_role("columnheader")).to_have_count(7)
    legend = calendar.locator(".legend")
    # One entry per portal, whatever its number of syncs; the syncs told apart by their labels.
    expect(legend.locator(".swatch:not(.conflict-swatch)")).to_have_count(4)  # Airbnb, Booking.com, Vrbo, closed here
    expect(legend).to_contain_text("Airbnb (Airbnb 1, Airbnb 2, Airbnb 3)")
    expect(legend).to_contain_text("Booking.com (Booking.com 1, Booking.com 2, Booking.com 3)")
    expect(legend).to_contain_text("Vrbo (Vrbo 1, Vrbo 2)")
    expect(legend).to_contain_text("Closed here")
    shot(page, "1-month")

    colours = {}
    for slug in ("airbnb", "booking", "vrbo"):
        colours[slug] = background(legend.locator(f".swatch.portal-{slug}"))
        assert colours[slug] == rgb(LOOKS[slug].background)
        cells = grid.locator(f".night.portal-{slug}")
        assert cells.count() >= 2
        for index in range(cells.count()):
            assert background(cells.nth(index)) == colours[slug], f"a {slug} night in another colour"
    assert len(set(colours.values())) == 3
    here = grid.locator(".night.here")
    expect(here).to_have_count(2)
    assert background(here.first) == rgb(HERE_LOOK.background)

    # The double-booked night shows both sources, marked, and says so in words when focused.
    double = grid.locator("td.conflict")
    expect(double).to_have_count(1)
    expect(double.locator(".night.conflict")).to_have_count(2)
    expect(double.locator(".night")).to_have_text(["AB2", "VR1"])
    info = double.locator(".night-info")
    double.get_by_role("button").focus()
    expect(info).to_be_visible()
    expect(info).to_contain_text("possible double booking")
    expect(info.locator("li")).to_have_count(2)
    expect(info.locator("li").nth(0)).to_contain_text("Airbnb 2: reserved,")
    expect(info.locator("li").nth(1)).to_contain_text("Vrbo 1: reserved,")
    expect(info.locator("li").nth(0)).to_contain_text("(check-out)")
    shot(page, "2-double-booking-focused")

    # A ninth sync repaints nothing: every portal keeps its colour, every night its mark.
    marks = grid.locator(".night").all_inner_texts()
    Connection.objects.create(property=prop, portal=Portal.objects.get(slug="vrbo"), import_url="https://example.com/v9.ics")
    page.reload()
    for slug, colour in colours.items():
        assert background(page.locator(f"#calendar .legend .swatch.portal-{slug}")) == colour
    assert page.locator("#calendar table .night").all_inner_texts() == marks
    expect(page.locator("#calendar .legend")).to_contain_text("Vrbo (Vrbo 1, Vrbo 2, Vrbo 3)")


# --------------------------------------------------------------------------- the fix checklist


def open_checklist(page, connection_id: int) -> None:
    page.goto(f"/connections/{connection_id}/fix/")
    # Every step checks itself as the page loads: no step is left unchecked or "Checking…".
    expect(page.locator(".checklist summary .badge.status-unchecked")).to_have_count(0, timeout=30_000)
    expect(page.locator(".step-loading:visible")).to_have_count(0, timeout=30_000)


def test_every_step_shows_its_status_on_load_and_a_new_link_pasted_in_step_2_brings_the_sync_back(
    page, demo, vrbo_portal, shot  # noqa: F811 (the fixture)
):
    connection_id = demo.ids["Apartamento Sol/vrbo"]
    log_in(page)
    open_checklist(page, connection_id)
    badges = page.locator(".checklist summary .badge")
    expect(badges).to_have_count(7)
    expect(page.locator("#badge-switched_on")).to_have_text("Needs fixing")
    expect(page.locator("#badge-link")).to_have_text("Needs fixing")
    # The final check waits for the import: nothing to add while Vrbo's calendar fails.
    final = page.locator("#step-final_check")
    expect(final).to_contain_text("This check starts once Vrbo's calendar is read without error")
    expect(final.get_by_role("button", name="Add the test block")).to_have_count(0)
    shot(page, "1-statuses-on-load")

    page.locator("#step-link-item summary").click()
    link = page.locator("#step-link")
    link.get_by_label("Paste the new link from Vrbo").fill(f"  {vrbo_portal.url}  ")
    link.get_by_role("button", name="Check and save the new link").click()
    link = page.locator("#step-link")
    expect(link.locator("strong").first).to_have_text("The new link works and is saved.", timeout=20_000)
    expect(link).to_contain_text("Found 2 bookings and blocks")
    expect(page.locator("#badge-link")).to_have_text("OK")
    # The steps that read the sync's state checked again by themselves: it works again.
    expect(page.locator("#badge-switched_on")).to_have_text("OK", timeout=15_000)
    expect(page.locator("#step-switched_on")).to_contain_text("The sync is switched on and running.")
    expect(page.locator("#step-final_check")).to_contain_text("A test night is closed on every portal that reads")
    expect(page.locator("#test-night-audience")).to_contain_text("Airbnb, Booking.com, Vrbo")
    shot(page, "2-new-link-saved")

    page.goto("/")
    expect(page.locator(f"#attention-{connection_id}")).to_have_count(0)


def test_a_link_refused_in_step_2_says_why_once_with_the_focus_on_it(page, demo, shot):
    connection_id = demo.ids["Apartamento Sol/vrbo"]
    log_in(page)
    open_checklist(page, connection_id)
    page.locator("#step-link-item summary").click()
    link = page.locator("#step-link")
    field = link.get_by_label("Paste the new link from Vrbo")
    field.fill("not a link at all")
    link.get_by_role("button", name="Check and save the new link").click()
    field = page.locator("#step-link").get_by_label("Paste the new link from Vrbo")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()
    expect(page.locator("#step-link .field-error")).to_have_text(
        "“not a link at all” is not a link. Paste the calendar link the portal gives you; it starts with https://."
    )
    shot(page, "1-refused")


def check_now(page, step: str) -> None:
    item = page.locator(f"#step-{step}-item")
    if item.locator("details").get_attribute("open") is None:
        item.locator("summary").click()
    item.get_by_role("button", name=re.compile("^Check (now|again)$")).click()


def test_the_whole_checklist_works_without_javascript(new_page, demo, vrbo_portal, shot):  # noqa: F811
    from syncs.models import Block

    connection_id = demo.ids["Apartamento Sol/vrbo"]
    page = new_page(java_script_enabled=False)
    log_in(page)
    page.goto(f"/connections/{connection_id}/fix/")
    expect(page.get_by_text("Checking…").locator("visible=true")).to_have_count(0)
    # Each step is a form: decided from the page's read ("Check again"), or read from the portal when asked ("Check now").
    expect(page.locator(".checklist button", has_text=re.compile("^Check (now|again)$"))).to_have_count(7)
    shot(page, "1-no-javascript")

    check_now(page, "link")
    expect(page).to_have_url(re.compile(r"\?check=link"))
    link = page.locator("#step-link")
    expect(link.locator(".badge").first).to_have_text("Needs fixing")
    expect(link).to_contain_text("Vrbo answered 404")
    link.get_by_label("Paste the new link from Vrbo").fill(vrbo_portal.url)
    link.get_by_role("button", name="Check and save the new link").click()
    expect(page.locator("#step-link strong").first).to_have_text("The link works and gives a calendar.")
    # A worker reads the new link (eager here, in a thread of its own): the page never waits on the portal.
    expect(page.locator("#toasts")).to_contain_text("the new link is being read now, and the sync resumes if it works")
    shot(page, "2-new-link")
    from syncs.models import Connection

    for _ in range(100):
        if not Connection.objects.filter(pk=connection_id, sync_requested_at__isnull=False).exists():
            break
        page.wait_for_timeout(100)

    check_now(page, "switched_on")
    expect(page.locator("#step-switched_on strong").first).to_have_text("The sync is switched on and running.")
    check_now(page, "final_check")
    final = page.locator("#step-final_check")
    expect(final.locator(".badge").first).to_have_text("Needs you")
    final.get_by_role("button", name="Add the test block").click()
    final = page.locator("#step-final_check")
    expect(final.locator(".badge").first).to_have_text("Waiting")
    expect(final.locator(".findings li").first).to_contain_text("Waiting for Vrbo to read the test block")
    assert Block.objects.current().filter(property_id=demo.ids["Apartamento Sol"], source__isnull=True).count() == 1
    final.get_by_role("button", name="End the check and remove the test block").click()
    expect(page.locator("#step-final_check .badge").first).to_have_text("Needs you")
    assert not Block.objects.current().filter(property_id=demo.ids["Apartamento Sol"], source__isnull=True).exists()
    shot(page, "3-final-check")


# --------------------------------------------------------------------------- copy buttons

# Plain http on a host that is not localhost: no clipboard API, only the browser's copy command.
_NO_CLIPBOARD_API = """
Object.defineProperty(Navigator.prototype, "clipboard", {get: () => undefined});
window.addEventListener("copy", e => { window.__copied = e.clipboardData.getData("text/plain"); });
"""
_NO_COPY_AT_ALL = _NO_CLIPBOARD_API + "document.execCommand = () => false;"


def test_copy_export_url_copies_without_the_clipboard_api_or_says_it_could_not_and_selects_the_link(
    new_page, demo, shot
):
    from syncs.export_tokens import export_url
    from syncs.models import ExportToken

    connection_id = demo.ids["Casa do Rio/booking"]
    expected = export_url(ExportToken.objects.get(connection_id=connection_id, expires_at__isnull=True))
    page = new_page()
    page.add_init_script(_NO_CLIPBOARD_API)
    log_in(page)
    page.goto(f"/properties/{demo.ids['Casa do Rio']}/")
    row = page.locator(f"#connection-{connection_id}")
    row.get_by_role("button", name="Copy export URL").click()
    expect(row.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("window.__copied") == expected

    refused = new_page(viewport=PHONE)
    refused.add_init_script(_NO_COPY_AT_ALL)
    log_in(refused)
    refused.goto(f"/properties/{demo.ids['Casa do Rio']}/")
    row = refused.locator(f"#connection-{connection_id}")
    row.get_by_role("button", name="Copy export URL").click()
    expect(row.locator(".copy-failed")).to_have_text("Could not copy: the link is selected, copy it by hand")
    field = row.locator(f"#export-url-{connection_id}")
    expect(field).to_be_visible()
    expect(field).to_be_focused()
    assert field.evaluate("f => [f.selectionStart, f.selectionEnd]") == [0, len(expected)]
    expect(refused.locator("#live-status")).to_have_text("Could not copy: the link is selected, copy it by hand")
    shot(refused, "1-copy-by-hand")
