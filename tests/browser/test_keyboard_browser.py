"""Keyboard only, in a real Chromium: the switch, "Sync now", the fix checklist and the bulk
selection, driven with page.keyboard alone. After every swap the focus is on the control just
used (or its replacement), never on <body>, and what happened is said in the page's one polite
live region (#live-status). Skip links lead to the syncs and to what needs attention.
"""

from __future__ import annotations

import pytest

from syncs import jobs
from tests.browser.signing_in import log_in

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

MOST_TABS = 60



def focused(page) -> str:
    """What has the focus, as a person would name it (tag, id, accessible words)."""
    return page.evaluate(
        """() => { const a = document.activeElement;
                   return a === document.body ? "<body>" :
                     `${a.tagName.toLowerCase()}#${a.id} ${(a.getAttribute("aria-label") || a.textContent || "").trim()}`; }"""
    )


def tab_to(page, locator, *, backwards: bool = False) -> int:
    """Press Tab until ``locator`` has the focus; returns how many presses it took."""
    for presses in range(1, MOST_TABS + 1):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        if locator.evaluate("element => element === document.activeElement"):
            return presses
    raise AssertionError(f"{MOST_TABS} Tabs did not reach {locator}; the focus is on {focused(page)}")


def test_switch_and_sync_now_by_keyboard_keep_the_focus_and_say_what_happened(page, demo, shot):
    connection_id = demo.ids["Casa do Rio/airbnb"]
    log_in(page)
    page.goto(f"/properties/{demo.ids['Casa do Rio']}/")
    row = page.locator(f"#connection-{connection_id}")
    live = page.locator("#live-status")

    # Two skip links, then the syncs: the first switch is four keys away (it was 18 Tabs).
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the syncs")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#connections")).to_be_focused()
    switch_off = row.get_by_role("button", name="Switch off the Airbnb sync")
    assert tab_to(page, switch_off) == 2  # the sync's own link, then its switch
    shot(page, "1-on-the-switch")

    page.keyboard.press("Enter")
    switch_on = row.get_by_role("button", name="Switch on the Airbnb sync")
    expect(switch_on).to_be_focused()  # the new button, in the row htmx swapped in
    expect(live).to_have_text("Airbnb sync switched off.")
    page.keyboard.press("Enter")
    expect(switch_off).to_be_focused()
    expect(live).to_have_text("Airbnb sync switched on: it syncs within a minute.")
    shot(page, "2-switched-back-on")

    page.keyboard.press("Tab")
    sync_now = row.get_by_role("button", name="Sync now")
    expect(sync_now).to_be_focused()  # the next Tab goes on from the row, not from the top
    page.keyboard.press("Enter")
    expect(live).to_have_text("Syncing Airbnb now…")
    expect(sync_now).to_be_focused()
    # The row polls while the sync runs; when it is done it says so, and the focus stayed.
    expect(row.locator(".badge-syncing")).to_have_count(0, timeout=15_000)
    expect(live).to_have_text("Airbnb: Working")
    expect(sync_now).to_be_focused()
    expect(sync_now).to_be_enabled()
    page.keyboard.press("Tab")
    expect(row.get_by_role("button", name="Copy export URL")).to_be_focused()
    shot(page, "3-synced")


def test_the_fix_checklist_by_keyboard_keeps_the_focus_on_the_step_and_says_its_result(page, demo, monkeypatch, shot):
    # The sync the checklist asks for runs within the request (see test_fix_checklist_browser.py:
    # SQLite's in-memory test database locks a table a background thread writes).
    monkeypatch.setattr(jobs, "hand_over", jobs.send)
    connection_id = demo.ids["Apartamento Sol/vrbo"]
    log_in(page)
    page.goto(f"/connections/{connection_id}/fix/")
    live = page.locator("#live-status")
    link = page.locator("#step-link")

    summary = page.locator("#step-link-item summary")
    tab_to(page, summary)
    page.keyboard.press("Enter")  # opens the step, which checks the link
    expect(link.locator(".badge")).to_have_text("Needs fixing", timeout=15_000)
    check_again = link.get_by_role("button", name="Check again", exact=True)
    tab_to(page, check_again)
    page.keyboard.press("Enter")
    expect(live).to_have_text("Needs fixing: Vrbo answered 404: the calendar link no longer exists.", timeout=15_000)
    expect(check_again).to_be_focused()
    shot(page, "1-checked-again")

    resync_summary = page.locator("#step-resync-item summary")
    tab_to(page, resync_summary)
    page.keyboard.press("Enter")
    resync = page.locator("#step-resync")
    run = resync.get_by_role("button", name="Run the sync now")
    expect(run).to_be_visible(timeout=15_000)
    tab_to(page, run)
    page.keyboard.press("Enter")
    expect(resync.locator(".badge")).to_have_text("Needs fixing", timeout=15_000)
    expect(live).to_contain_text("Needs fixing: Vrbo answered 404: the calendar link no longer exists.")
    expect(run).to_be_focused()
    assert focused(page) != "<body>"
    shot(page, "2-ran-again")


def test_bulk_selection_by_keyboard_comes_back_to_the_button_used_and_says_what_it_did(page, demo, shot):
    log_in(page)
    live = page.locator("#live-status")

    # The overview's second skip link leads to what needs attention.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to what needs your attention")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#attention")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#attention input[type=checkbox]").first).to_be_focused()
    # The third leads past every row to what can be done with the ticked ones.
    page.goto("/")
    for _ in range(3):
        page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to acting on the ticked syncs")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.locator("#bulk-all")).to_be_focused()

    page.goto("/timeline/")
    first = page.locator(f"#pick-{demo.ids['Casa do Rio/airbnb']}")
    second = page.locator(f"#pick-{demo.ids['Casa do Rio/booking']}")
    tab_to(page, first)
    page.keyboard.press("Space")
    tab_to(page, second)
    page.keyboard.press("Space")
    expect(first).to_be_checked()
    expect(second).to_be_checked()
    switch_off = page.locator("#bulk-bar").get_by_role("button", name="Switch off")
    tab_to(page, switch_off, backwards=True)
    shot(page, "1-two-selected")
    page.keyboard.press("Enter")

    page.wait_for_url("**/timeline/**")
    expect(live).to_have_text("2 syncs switched off.")
    expect(page.locator("#bulk-bar").get_by_role("button", name="Switch off")).to_be_focused()
    expect(page.locator(f"#tl-sync-{demo.ids['Casa do Rio/airbnb']}")).to_have_attribute("data-state", "switched_off")
    shot(page, "2-switched-off")


def test_the_checklists_run_says_its_result_when_a_worker_ends_it(page, demo, monkeypatch, shot):
    """As in production: a worker runs the sync the checklist asked for, and the page's poll
    brings the result as every step out of band. A person who pressed "Run the sync now" heard
    "Syncing Vrbo now" and then nothing: the region still said so after the sync had failed."""
    asked = []
    monkeypatch.setattr(jobs, "hand_over", asked.append)  # the broker, with no worker yet
    connection_id = demo.ids["Apartamento Sol/vrbo"]
    log_in(page)
    page.goto(f"/connections/{connection_id}/fix/")
    live = page.locator("#live-status")
    resync = page.locator("#step-resync")

    tab_to(page, page.locator("#step-resync-item summary"))
    page.keyboard.press("Enter")
    run = resync.get_by_role("button", name="Run the sync now")
    expect(run).to_be_visible(timeout=15_000)
    tab_to(page, run)
    page.keyboard.press("Enter")
    expect(live).to_have_text("Waiting: Syncing Vrbo now: the result appears here.")
    expect(page.locator("#checklist-watch[hx-trigger]")).to_have_count(1)  # the page looks again meanwhile
    shot(page, "1-running")

    assert len(asked) == 1, asked
    jobs.send(asked[0])  # the worker takes the job (eager here: the sync runs now, and fails on the 404)
    expect(page.locator("#checklist-watch[hx-trigger]")).to_have_count(0, timeout=15_000)
    expect(resync.locator(".badge")).to_have_text("Needs fixing")
    expect(live).to_contain_text("Needs fixing: Vrbo answered 404: the calendar link no longer exists.")
    expect(run).to_be_focused()
    shot(page, "2-result-said")
