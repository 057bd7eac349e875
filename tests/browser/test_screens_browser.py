"""Every page, as an operator on a laptop and on a phone would use it, in English, Portuguese and
Spanish: nothing wider than a 360 px screen, no word of a breadcrumb or heading broken across
two lines, and axe-core (vendored in tests/browser/vendor/,
never downloaded) finds no critical or serious accessibility problem, with the pages found from
the project's routes (tests/browser/screens.py)."""

from __future__ import annotations

import pytest

from tests.browser.screens import (
    PHONE_360,
    Page,
    axe_serious,
    owner_pages,
    page_width,
    words_broken,
)
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

LANGUAGES = ("en", "pt", "es")
DESKTOP = {"width": 1280, "height": 900}



def open_page(browser_page, target: Page) -> None:
    browser_page.goto(target.path)
    browser_page.wait_for_load_state("networkidle")
    if target.wait_for_steps:  # every step has checked itself
        expect(browser_page.locator(".step-loading:visible")).to_have_count(0, timeout=30_000)
        expect(browser_page.locator(".checklist .step > p > .badge")).to_have_count(7, timeout=30_000)


def set_language(language: str) -> None:
    from syncs.models import Membership

    Membership.objects.filter(user__username="demo").update(language=language)


@pytest.fixture
def pages(demo) -> list[Page]:
    found = owner_pages(demo)
    names = {page.name for page in found}
    # The pages of the issue, at least: the overview, lists, the property, the connection, the
    # checklist, members, settings, activity, forms, the person's own page, signing in.
    assert {
        "home", "property-list", "property-detail", "connection-detail", "connection-fix", "members",
        "account-settings", "activity", "property-create", "property-edit", "connection-create",
        "connection-edit", "profile", "password_change", "login", "password_reset",
        "timeline", "webhooks", "my-alerts", "onboarding", "onboarding-preview", "bulk-detail",
    } <= names, names
    return found


def _visit_all(new_page, pages: list[Page], *, viewport: dict, language: str, phone: bool, shot, check):
    set_language(language)
    options = {"is_mobile": True, "has_touch": True} if phone else {}
    signed_in = new_page(viewport=viewport, **options)
    signed_out = new_page(viewport=viewport, **options)
    # Signed out, the language is the one chosen on the page (a cookie), as a visitor does it.
    signed_out.context.add_cookies([{"name": "django_language", "value": language, "domain": "127.0.0.1", "path": "/"}])
    log_in(signed_in)
    for target in pages:
        browser_page = signed_in if target.signed_in else signed_out
        open_page(browser_page, target)
        expect(browser_page.locator("html")).to_have_attribute("lang", language)
        check(target, browser_page)
        shot(browser_page, f"{language}-{viewport['width']}-{target.name}")


# Every page of the app, in each language (one test each, so that a parallel run spreads them):
# longer than one page's test.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("language", LANGUAGES)
def test_no_page_is_wider_than_a_360_px_phone_in_any_language_and_axe_finds_nothing_serious_there(
    new_page, pages, shot, language
):
    too_wide, findings, broken = [], [], []

    def check(target: Page, browser_page) -> None:
        width = page_width(browser_page)
        if width > PHONE_360["width"]:
            too_wide.append(f"{language} {target.name} ({target.path}): {width} px")
        # Breadcrumbs and headings wrap between words, never inside one ("Prop/ertie/s").
        words = words_broken(browser_page, "main nav[aria-label=breadcrumb], main h1")
        if words:
            broken.append(f"{language} {target.name}: {words}")
        if language == "en" or target.name in ("home", "property-list", "property-detail", "connection-fix", "activity", "timeline", "webhooks"):
            findings.extend(f"{language} {target.name}: {line}" for line in axe_serious(browser_page))

    _visit_all(new_page, pages, viewport=PHONE_360, language=language, phone=True, shot=shot, check=check)
    assert not too_wide, "wider than the 360 px screen:\n" + "\n".join(too_wide)
    assert not broken, "words broken across two lines:\n" + "\n".join(broken)
    assert not findings, "axe-core, on a phone:\n" + "\n".join(findings)


# Every page of the app, in three languages: longer than one page's test.
@pytest.mark.timeout(900)
def test_axe_finds_no_critical_or_serious_problem_on_any_page_on_a_laptop(new_page, pages, shot):
    findings = []

    def check(target: Page, browser_page) -> None:
        findings.extend(f"{target.name}: {line}" for line in axe_serious(browser_page))

    _visit_all(new_page, pages, viewport=DESKTOP, language="en", phone=False, shot=shot, check=check)
    assert not findings, "axe-core, on a laptop:\n" + "\n".join(findings)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_skip_links_stay_out_of_sight_on_a_phone_until_the_keyboard_reaches_them(new_page, demo, shot, language):
    """The overview's second skip link ("Saltar a lo que necesita su atención") takes two lines
    on a 360 px screen: a link moved up by a fixed height left its second line showing, an
    underlined stray word above the top bar."""
    set_language(language)
    page = new_page(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    log_in(page)
    links = page.locator("a.skip-link")
    expect(links).to_have_count(3)
    for index in range(3):
        box = links.nth(index).bounding_box()
        assert box["y"] + box["height"] <= 0, f"{links.nth(index).inner_text()!r} shows at {box} before it has the focus"
    shot(page, f"{language}-unfocused")
    for index in range(3):
        page.keyboard.press("Tab")
        expect(links.nth(index)).to_be_focused()
        box = links.nth(index).bounding_box()
        assert box["y"] >= 0 and box["x"] >= 0 and box["x"] + box["width"] <= 360, f"{links.nth(index).inner_text()!r} at {box}"
    shot(page, f"{language}-focused")


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_syncs_facts_leave_their_values_room_on_a_phone(new_page, demo, shot, language):
    """The sync page's facts are a label and a value side by side: a label that took all the
    width it wanted ("Última sincronização bem-sucedida") left the values one letter a line
    ("m/o/s/t/r/a/r", "n/u/n/c/a"). Only a link may break anywhere."""
    set_language(language)
    page = new_page(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    log_in(page)
    page.goto(f"/connections/{demo.ids['Apartamento Sol/vrbo']}/")
    facts = page.locator("dl.facts")
    expect(facts).to_be_visible()
    broken = [word for word in words_broken(page, "dl.facts dt, dl.facts dd") if "://" not in word]
    shot(page, language)
    assert not broken, f"words broken across lines in the sync's facts: {broken}"
