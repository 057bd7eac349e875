"""Syncs from a file in a real Chromium, on the demo: the live check of a file with a link that
answers 404, one that answers a web page and one that never answers ends with a verdict on
every row; and the export, uploaded back unchanged, changes nothing."""

from __future__ import annotations

import socket

import pytest

from syncs.models import Connection, OnboardingUpload
from syncs.onboarding import live
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


@pytest.fixture
def silent_port():
    """A port that takes connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


def test_the_live_check_of_a_404_a_web_page_and_a_hanging_link_ends_with_a_verdict_per_row(
    page, demo, httpserver, silent_port, monkeypatch, shot
):
    # A short fetch deadline: the hanging link's verdict comes after it.
    monkeypatch.setattr(live, "LINK_CHECK_SECONDS", 1.5)
    httpserver.expect_request("/gone.ics").respond_with_data("Not Found", status=404)
    httpserver.expect_request("/login.ics").respond_with_data(
        "<!DOCTYPE html><html><body><form>Sign in</form></body></html>", content_type="text/html"
    )
    base = httpserver.url_for("/")
    data = (
        "Property,Time zone,Portal,Import link\n"
        f"Casa Nova,Europe/Lisbon,Other,{base}gone.ics\n"
        f"Casa Nova,Europe/Lisbon,Other,{base}login.ics\n"
        f"Casa Nova,Europe/Lisbon,Other,http://127.0.0.1:{silent_port}/slow.ics\n"
    ).encode()
    log_in(page)
    page.goto("/onboarding/")
    page.set_input_files("#onboarding-file", files=[{"name": "new.csv", "mimeType": "text/csv", "buffer": data}])
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator("#summary")).to_contain_text("3 to add")
    expect(page.locator("#row-4")).to_contain_text("new property")
    shot(page, "1-checked")
    page.get_by_role("button", name="Check each new link live first").click()
    # The page polls until every row has its verdict, then stops.
    expect(page.locator("#onboarding")).to_contain_text("Links checked: 3 of 3", timeout=20_000)
    expect(page.locator("#row-2 .live-verdict")).to_contain_text("The portal answered 404")
    expect(page.locator("#row-3 .live-verdict")).to_contain_text("The link returned a web page, not a calendar")
    expect(page.locator("#row-4 .live-verdict")).to_contain_text("The portal took too long to answer.")
    assert page.locator("#onboarding").get_attribute("hx-get") is None  # the poll stopped
    shot(page, "2-verdicts")
    assert not Connection.objects.filter(property__name="Casa Nova").exists()  # checked, never saved


def test_the_demos_export_uploaded_back_unchanged_changes_nothing(page, demo, shot):
    before = list(Connection.objects.order_by("pk").values())
    log_in(page)
    page.goto("/onboarding/")
    with page.expect_download() as download:
        page.locator("#export-link").click()
    exported = download.value.path().read_bytes()
    page.set_input_files("#onboarding-file", files=[{"name": "syncs.csv", "mimeType": "text/csv", "buffer": exported}])
    page.get_by_role("button", name="Check the file").click()
    expect(page.locator("#nothing-to-do")).to_contain_text("Nothing to change")
    expect(page.locator("#onboarding-table tbody tr[data-action=same]")).to_have_count(len(before))
    expect(page.locator("#import-button")).to_have_count(0)
    shot(page, "1-nothing-to-change")
    assert [row["errors"] for row in OnboardingUpload.objects.get().rows] == [[]] * len(before)
    assert list(Connection.objects.order_by("pk").values()) == before
