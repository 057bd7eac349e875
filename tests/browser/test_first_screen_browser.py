"""The overview's first screen is what needs the operator: on a 1280x800 laptop and on a 360x740
phone, in English, Portuguese and Spanish, the first Fix link is wholly on the screen without
scrolling, with the demo's data and with a bigger account (20 properties, 4 double bookings and
5 paused syncs); the page stays within the phone's width and axe finds nothing serious; and when
nothing needs the operator, the first screen says so, and only then."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from syncs.conflicts import double_bookings_record
from syncs.models import Block, Connection, Membership
from syncs.sync_state import state_record
from tests.browser.screens import axe_serious, page_width
from tests.browser.signing_in import log_in
from tests.factories import AccountFactory, BlockFactory, ConnectionFactory, PropertyFactory, portal

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (fails with REQUIRE_SERVICES=1), saying why
    expect = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
LANGUAGES = ("en", "pt", "es")
FIX = {"en": "Fix", "pt": "Corrigir", "es": "Corregir"}
PASSWORD = "a-long-password-1"



def wholly_on_screen(page, locator) -> dict:
    """The element's box, asserted to lie wholly within the viewport of a page not scrolled."""
    assert page.evaluate("window.scrollY") == 0
    box = locator.bounding_box()
    size = page.viewport_size
    assert box is not None, "not drawn"
    assert box["x"] >= 0 and box["y"] >= 0, box
    assert box["x"] + box["width"] <= size["width"] and box["y"] + box["height"] <= size["height"], (box, size)
    return box


def open_overview(new_page, *, username: str, password: str, language: str, viewport: dict):
    Membership.objects.filter(user__username=username).update(language=language)
    phone = viewport["width"] < 600
    page = new_page(viewport=viewport, **({"is_mobile": True, "has_touch": True} if phone else {}))
    log_in(page, username, password)
    page.goto("/")
    page.wait_for_load_state("networkidle")
    expect(page.locator("html")).to_have_attribute("lang", language)
    return page


@pytest.fixture
def big_account(demo):
    """An owner's account of 20 properties, two syncs each (Airbnb and Vrbo, both working), of
    which 5 paused by errors, and 4 properties double booked (both portals, the same nights)."""
    owner = get_user_model().objects.create_user("big", email="big@example.com", password=PASSWORD)
    account = AccountFactory(name="Big Rentals")
    Membership.objects.create(user=owner, account=account, role=Membership.Role.OWNER)
    now, today = timezone.now(), timezone.localdate()
    for n in range(20):
        prop = PropertyFactory(account=account, name=f"Apartment {n + 1:02d}")
        syncs = [
            ConnectionFactory(property=prop, portal=portal(slug), last_success_at=now, last_attempt_at=now,
                              next_sync_at=now + timedelta(minutes=30),
                              import_url=f"https://example.com/{prop.pk}/{slug}.ics")
            for slug in ("airbnb", "vrbo")
        ]
        if n < 5:
            type(syncs[1]).objects.filter(pk=syncs[1].pk).update(
                paused_at=now - timedelta(hours=n + 1), pause_reason="http_4xx", pause_params={"status": 404},
            )
            state_record([syncs[1].pk])  # as the record that paused it decides its state
        if 5 <= n < 9:
            first = today + timedelta(days=3 + n)
            for sync in syncs:
                BlockFactory(property=prop, source=sync, kind="reserved", start_date=first, end_date=first + timedelta(days=2))
    return "big"


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_the_first_fix_link_is_on_the_first_screen_with_the_demo_and_a_bigger_account_in_every_language(
    new_page, demo, big_account, viewport, shot
):
    problems = []
    for username, password, paused, doubles in (("demo", "demo", 1, 1), (big_account, PASSWORD, 5, 4)):
        for language in LANGUAGES:
            page = open_overview(new_page, username=username, password=password, language=language, viewport=viewport)
            attention = page.locator("#attention")
            # What needs the operator comes first: the syncs, then the double bookings to check.
            expect(attention.locator("#attention-syncs tbody tr")).to_have_count(paused)
            expect(attention.locator("#conflicts .conflict-item")).to_have_count(doubles)
            fix = attention.get_by_role("button", name=FIX[language], exact=True).first
            expect(fix).to_have_attribute("href", re.compile(r"^/connections/\d+/fix/$"))
            wholly_on_screen(page, fix)
            assert attention.bounding_box()["y"] < page.locator("#conflicts").bounding_box()["y"]
            assert page.locator("#conflicts").bounding_box()["y"] < page.locator("#counts").bounding_box()["y"]
            # Nothing but the page's title above the list.
            assert page.locator("main > *").first.evaluate("e => e.tagName") == "H1"
            assert page.locator("main > *").nth(1).get_attribute("id") == "status"
            assert page.locator("#status > *").first.get_attribute("id") == "attention"
            # The counts: one line, the states no sync is in left out.
            expect(page.locator("#counts .count")).to_have_count(2)
            if viewport is PHONE and page_width(page) > PHONE["width"]:
                problems.append(f"{username} {language}: {page_width(page)} px wide")
            problems.extend(f"{username} {language}: {line}" for line in axe_serious(page))
            shot(page, f"{username}-{language}")
            page.context.close()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_when_nothing_needs_the_operator_the_first_screen_says_so_and_only_then(new_page, demo, viewport, shot):
    paused = Connection.objects.filter(pk=demo.ids["Apartamento Sol/vrbo"])
    page = open_overview(new_page, username="demo", password="demo", language="en", viewport=viewport)
    expect(page.get_by_text("All syncs are working; no double bookings")).to_have_count(0)  # one is paused
    page.context.close()

    # The paused sync read without error since, and the double booking's second stay gone.
    now = timezone.now()
    paused.update(paused_at=None, pause_reason="", pause_params={}, last_error_code="", last_error_params={},
                  consecutive_failures=0, last_success_at=now, last_attempt_at=now, next_sync_at=now + timedelta(minutes=30))
    state_record([paused.get().pk])  # as the record of that read decides its state
    Block.objects.filter(property_id=demo.ids["Beach Loft Algarve"], source__portal__slug="vrbo").delete()
    double_bookings_record(property_ids=[demo.ids["Beach Loft Algarve"]])  # as every writer of blocks does
    page = open_overview(new_page, username="demo", password="demo", language="en", viewport=viewport)
    good = page.locator("#all-good")
    expect(good).to_contain_text("All syncs are working; no double bookings.")
    wholly_on_screen(page, good)
    expect(page.locator("#attention-syncs, #conflicts")).to_have_count(0)
    shot(page, "all-good")
