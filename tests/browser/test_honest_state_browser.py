"""The overview never says all is well while something is not, in a real Chromium.

The operator adds a property with three syncs: one whose portal works, one whose link answers
404, and one whose server refuses connections (a closed port on 127.0.0.1), and syncs each. After
every sync the overview's tiles add up to the account's syncs, every failing sync is in the
attention list, and the properties list shows the property as failing. Then the operator switches
the 404 sync back on from its fix checklist: the checklist says the check failed, the sync is
paused again, and no "Restored" email goes out while it keeps failing.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from syncs import jobs
from syncs.models import Connection
from syncs.notifications import send_pause_notifications
from tests import feeds
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

PROPERTY = "Casa das Três Portas"



def tiles(page) -> dict[str, int]:
    """The overview's tiles, which must add up to the account's syncs."""
    counts = {}
    for tile in page.locator("#counts .count").all():
        counts[tile.get_attribute("data-state")] = int(tile.locator("strong").inner_text())
    assert sum(counts.values()) == Connection.objects.count(), counts
    return counts


def add_sync(page, property_id: int, *, portal: str, link: str) -> int:
    page.goto(f"/properties/{property_id}/connections/new/")
    page.get_by_label("The portal's calendar link").fill(link)
    page.get_by_label("Portal", exact=True).select_option(label=portal)
    page.get_by_label("Check the link now before saving").uncheck()
    page.get_by_role("button", name="Add the sync").click()
    expect(page).to_have_url(re.compile(r"/connections/\d+/$"))
    return int(re.search(r"/connections/(\d+)/$", page.url).group(1))


def sync_now(page, connection_id: int) -> None:
    """Sync now from the connection's page; the page reloads itself when the run is done."""
    page.goto(f"/connections/{connection_id}/")
    page.locator("#connection-actions").get_by_role("button", name="Sync now").click()
    expect(page.locator("#connection-actions").get_by_role("button", name="Sync now")).to_be_enabled(timeout=15_000)


def check_overview(page, shot, step: str, *, failing: dict[int, str]) -> dict[str, int]:
    page.goto("/")
    counts = tiles(page)
    for connection_id, state in failing.items():
        row = page.locator(f"#attention-{connection_id}")
        expect(row).to_be_visible()
        expect(row).to_have_attribute("data-state", state)
    expect(page.get_by_text("All syncs are working")).to_have_count(0)
    expect(page.get_by_text("Nothing needs your attention")).to_have_count(0)
    shot(page, f"{step}-overview")
    return counts


def check_property_list(page, shot, step: str, property_id: int, *, expected: list[str]) -> None:
    page.goto("/properties/")
    health = page.locator(f"#property-{property_id} td.health")
    for words in expected:
        expect(health).to_contain_text(words)
    expect(health).not_to_contain_text("OK")
    shot(page, f"{step}-properties")


def test_three_new_syncs_one_working_one_404_one_refused_are_each_counted_and_the_failing_ones_shown(
    page, demo, httpserver, free_port, settings, shot, monkeypatch, mailoutbox
):
    settings.SITE_URL = demo.base_url
    # Sync now runs within the request (SQLite's in-memory test database locks a table being
    # written against the page's reads; see test_fix_checklist_browser.py).
    monkeypatch.setattr(jobs, "hand_over", jobs.send)
    today = timezone.localdate()
    httpserver.expect_request("/airbnb.ics").respond_with_data(
        feeds.airbnb(("stay-1", today + timedelta(days=400), today + timedelta(days=403))), content_type="text/calendar"
    )
    httpserver.expect_request("/vrbo.ics").respond_with_data(b"Not Found", status=404, content_type="text/plain")

    log_in(page)
    page.goto("/properties/new/")
    page.get_by_label("Name").fill(PROPERTY)
    page.get_by_label("Time zone").fill("Europe/Lisbon")
    page.get_by_role("button", name="Add the property").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(PROPERTY)
    property_id = int(re.search(r"/properties/(\d+)/$", page.url).group(1))
    check_property_list(page, shot, "0", property_id, expected=["No sync yet"])

    # 1. The working one: new, it waits for its first sync, then works.
    working = add_sync(page, property_id, portal="Airbnb", link=httpserver.url_for("/airbnb.ics"))
    counts = check_overview(page, shot, "1a", failing={working: "waiting"})
    assert counts["waiting"] == 1
    sync_now(page, working)
    expect(page.get_by_role("heading", level=1).locator(".badge")).to_have_text("Working")
    page.goto("/")
    tiles(page)
    expect(page.locator(f"#attention-{working}")).to_have_count(0)
    shot(page, "1b-overview")

    # 2. The one answering 404: paused at once.
    gone = add_sync(page, property_id, portal="Vrbo", link=httpserver.url_for("/vrbo.ics"))
    sync_now(page, gone)
    expect(page.get_by_role("heading", level=1).locator(".badge")).to_have_text("Paused by errors")
    expect(page.locator("#state-box")).to_contain_text("Vrbo answered 404: the calendar link no longer exists.")
    check_overview(page, shot, "2", failing={gone: "paused"})
    check_property_list(page, shot, "2", property_id, expected=["Paused by errors"])

    # 3. The one whose server refuses connections: failing, retrying (it pauses at the third).
    refused = add_sync(page, property_id, portal="Booking.com", link=f"http://127.0.0.1:{free_port}/booking.ics")
    sync_now(page, refused)
    expect(page.get_by_role("heading", level=1).locator(".badge")).to_have_text("Failing, retrying")
    expect(page.locator("#state-box")).to_contain_text("could not be reached")
    counts = check_overview(page, shot, "3", failing={gone: "paused", refused: "failing"})
    assert (counts["paused"], counts["failing"]) == (2, 1)  # the demo's paused Vrbo sync, and ours
    attention = page.locator("#attention tbody tr")
    states = [attention.nth(i).get_attribute("data-state") for i in range(attention.count())]
    assert states == ["paused", "paused", "failing"]  # worst first
    check_property_list(page, shot, "3", property_id, expected=["Paused by errors", "Failing, retrying", "Working"])
    property_row = page.locator(f"#property-{property_id} td.health .badge").first
    expect(property_row).to_have_attribute("data-state", "paused")  # the worst first

    send_pause_notifications()  # as beat does every minute
    ours = [m.subject for m in mail.outbox if PROPERTY in m.subject]
    assert ours == [f"Paused: Vrbo sync of {PROPERTY}"]

    # 4. The 404 sync switched back on from its checklist: checked, fails, paused again, no "Restored".
    page.goto("/")
    page.locator(f"#attention-{gone}").get_by_role("button", name="Fix").click()
    step = page.locator("#step-switched_on")
    expect(step.locator(".badge").first).to_have_text("Needs fixing")
    with page.expect_response(lambda r: r.url.endswith("/fix/switched_on/") and r.request.method == "POST"):
        step.get_by_role("button", name="Switch it back on").click()
    step = page.locator("#step-switched_on")
    expect(step.locator("strong").first).to_contain_text("Switched back on, but the check failed")
    expect(step.locator("strong").first).to_contain_text("It is paused again.")
    shot(page, "4-checklist-check-failed")

    # The notifier's passes over the next hour: nothing is restored, so nothing says so.
    for minutes in (1, 15, 60):
        with time_machine.travel(timezone.now() + timedelta(minutes=minutes), tick=False):
            send_pause_notifications()
    ours = [m.subject for m in mail.outbox if PROPERTY in m.subject]
    assert ours == [f"Paused: Vrbo sync of {PROPERTY}"]
    assert not any(subject.startswith("Restored") for subject in ours)
    page.goto("/")
    check_overview(page, shot, "4", failing={gone: "paused", refused: "failing"})
    page.goto(f"/connections/{gone}/")
    expect(page.get_by_role("heading", level=1).locator(".badge")).to_have_text("Paused by errors")
    shot(page, "4-connection")
