"""The operator's screens, without a browser: one look per portal (and its contrast), the sync
labels, the menu's current page, the forms' single errors and warnings, the checklist's new link
and final check, the tables' headers and the export URL's confirmation."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone, translation

from syncs.blocks import TEST_BLOCK_SUMMARY
from syncs.engine.task import connection_sync_leased
from syncs.management.commands.portal_colours import STYLESHEET, with_portal_css
from syncs.models import Account, Block, Connection, SyncRun
from syncs.portals import CATALOGUE, HERE_LOOK, LOOKS, portal_css
from syncs.sync_labels import label_syncs
from tests import feeds
from tests.factories import BlockFactory, ConnectionFactory, PropertyFactory, portal
from tests.jobs import recorded_hand_over

HTMX = {"HTTP_HX_REQUEST": "true"}


def contrast(first: str, second: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""

    def luminance(colour: str) -> float:
        channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# --------------------------------------------------------------------------- one look per portal


def test_every_portal_has_its_own_colour_and_mark_and_its_text_meets_wcag_aa():
    looks = [LOOKS[p.slug] for p in CATALOGUE] + [HERE_LOOK]
    assert len({look.background for look in looks}) == len(looks)
    assert len({look.short for look in looks}) == len(looks)
    for look in looks:
        assert contrast(look.background, look.ink) >= 4.5, look


def test_the_stylesheet_holds_the_colours_of_portals_py():
    text = STYLESHEET.read_text(encoding="utf-8")
    assert with_portal_css(text) == text, "run `python manage.py portal_colours`"
    assert portal_css() in text
    for slug, look in LOOKS.items():
        assert f".portal-{slug} {{ background-color: {look.background}; color: {look.ink}; }}" in text


def test_the_portal_colours_command_rewrites_only_its_own_section(tmp_path, monkeypatch):
    sheet = tmp_path / "app.css"
    sheet.write_text("body { color: red; }\n/* portal colours (issue 20 owns these) */\n.portal-airbnb { background: pink; }\n/* end of portal colours */\np { margin: 0; }\n")
    monkeypatch.setattr("syncs.management.commands.portal_colours.STYLESHEET", sheet)
    call_command("portal_colours", stdout=__import__("io").StringIO())
    text = sheet.read_text()
    assert text.startswith("body { color: red; }\n") and text.endswith("p { margin: 0; }\n")
    assert "pink" not in text and portal_css() in text


@pytest.mark.django_db
def test_two_syncs_of_one_portal_are_numbered_in_the_order_they_were_added_and_a_new_one_renames_none():
    prop = PropertyFactory()
    first = ConnectionFactory(property=prop, portal=portal("airbnb"))
    vrbo = ConnectionFactory(property=prop, portal=portal("vrbo"))
    assert label_syncs(prop.connections.select_related("portal"))[first.pk].label == "Airbnb"
    second = ConnectionFactory(property=prop, portal=portal("airbnb"))
    labels = label_syncs(prop.connections.select_related("portal"))
    assert (labels[first.pk].label, labels[second.pk].label, labels[vrbo.pk].label) == ("Airbnb 1", "Airbnb 2", "Vrbo")
    assert (labels[first.pk].short, labels[second.pk].short, labels[vrbo.pk].short) == ("AB1", "AB2", "VR")
    assert labels[first.pk].css == labels[second.pk].css == "portal-airbnb"
    ConnectionFactory(property=prop, portal=portal("airbnb"))
    again = label_syncs(prop.connections.select_related("portal"))
    assert (again[first.pk].label, again[second.pk].label) == ("Airbnb 1", "Airbnb 2")


@pytest.mark.django_db
def test_the_other_portal_is_named_in_the_reader_language():
    other = portal("other")
    with translation.override("pt"):
        assert other.display_name == "Outro"
    with translation.override("es"):
        assert other.display_name == "Otro"
    assert portal("airbnb").display_name == "Airbnb"


# --------------------------------------------------------------------------- pages


@pytest.fixture
def prop(operator):
    return PropertyFactory(account=Account.of_user(operator), name="Casa Azul")


def test_the_menu_marks_the_current_page_and_the_section_of_the_others(operator_client, prop):
    overview = operator_client.get(reverse("home")).content.decode()
    assert re.search(r'href="/"\s+aria-current="page">Overview<', overview)
    detail = operator_client.get(reverse("property-detail", args=[prop.pk])).content.decode()
    assert re.search(r'href="/properties/"\s+aria-current="true">Properties<', detail)
    assert 'aria-current="page">Overview' not in detail
    assert '<a class="skip-link" href="#main">Skip to the content</a>' in detail
    assert '<main class="container" id="main" tabindex="-1">' in detail


def test_nights_it_brought_have_headers_and_a_title_only_when_it_says_more_than_the_kind(operator_client, prop):
    connection = ConnectionFactory(property=prop, portal=portal("vrbo"))
    start = timezone.localdate() + timedelta(days=5)
    BlockFactory(property=prop, source=connection, kind="reserved", summary="Reserved", start_date=start, end_date=start + timedelta(days=2))
    BlockFactory(property=prop, source=connection, kind="reserved", summary="Reserved - Ana", start_date=start + timedelta(days=9), end_date=start + timedelta(days=11))
    page = operator_client.get(reverse("connection-detail", args=[connection.pk])).content.decode()
    table = page[page.index('<table id="nights-brought">'):]
    table = table[:table.index("</table>")]
    headers = re.findall(r'<th scope="col">([^<]+)</th>', table)
    assert headers == ["First night", "Check-out day", "Kind", "Title on the portal"]
    cells = [re.findall(r"<td>([^<]*)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)]
    assert [row[2:] for row in cells] == [["Reserved", ""], ["Reserved", "Reserved - Ana"]]


def test_issuing_a_new_export_url_asks_first_and_says_what_it_does(operator_client, prop):
    connection = ConnectionFactory(property=prop, portal=portal("airbnb"))
    page = html.unescape(operator_client.get(reverse("connection-detail", args=[connection.pk])).content.decode())
    confirm = page[page.index('<details class="confirm" id="rotate-export">'):]
    confirm = confirm[:confirm.index("</details>")]
    assert "<summary" in confirm and "Issue a new URL" in confirm
    assert "the old one stops working after 72 hours" in confirm
    assert re.search(r'<button type="submit"[^>]*>Yes, issue a new URL</button>', confirm)


def test_the_test_block_note_is_read_in_the_reader_language(operator_client, prop):
    start = timezone.localdate() + timedelta(days=3)
    BlockFactory(property=prop, source=None, summary=TEST_BLOCK_SUMMARY, start_date=start, end_date=start + timedelta(days=1))
    operator_client.post(reverse("set_language"), {"language": "pt", "next": "/"})
    page = operator_client.get(reverse("property-detail", args=[prop.pk])).content.decode()
    assert "Bloqueio de teste (lista de verificação)" in page
    assert "Test block (fix checklist)" not in page


# --------------------------------------------------------------------------- forms


def _add(client, prop, **fields):
    data = {"import_url": "", "portal": "", "direction": "two_way", "sync_interval_minutes": 30,
            "export_summary": "Not available", **fields}
    return client.post(reverse("connection-create", kwargs={"property_id": prop.pk}), data)


def test_words_typed_instead_of_a_link_get_one_error_quoting_them_as_typed(operator_client, prop):
    response = _add(operator_client, prop, import_url="  my airbnb   calendar ")
    form = response.context["form"]
    assert [str(e) for e in form.errors["import_url"]] == [
        "“my airbnb calendar” is not a link. Paste the calendar link the portal gives you; it starts with https://."
    ]
    assert "portal" not in form.errors
    assert b"data-focus-first-error" in response.content


def test_a_second_sync_of_one_portal_is_saved_with_a_warning(operator_client, prop):
    ConnectionFactory(property=prop, portal=portal("airbnb"), import_url="https://www.airbnb.com/calendar/ical/1.ics?s=a")
    response = _add(operator_client, prop, import_url="https://www.airbnb.com/calendar/ical/2.ics?s=b")
    assert response.status_code == 302
    assert prop.connections.filter(portal__slug="airbnb").count() == 2
    warnings = [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    assert warnings == [
        "Casa Azul already had a Airbnb sync (Airbnb 1): this one is Airbnb 2. Right for another listing on Airbnb; "
        "if you meant to change a link, edit the other sync instead and switch this one off."
    ]


# --------------------------------------------------------------------------- the checklist


@pytest.fixture
def paused(prop, httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    httpserver.expect_request("/old.ics").respond_with_data("gone", status=404)
    connection = ConnectionFactory(property=prop, portal=portal("airbnb"), import_url=httpserver.url_for("/old.ics"))
    connection_sync_leased(connection_id=connection.pk)
    connection.refresh_from_db()
    assert connection.paused_at is not None
    return connection


def test_a_new_link_pasted_in_step_2_is_checked_saved_and_read_and_the_sync_works_again(operator_client, paused, httpserver):
    start = timezone.localdate() + timedelta(days=4)
    httpserver.expect_request("/new.ics").respond_with_data(feeds.airbnb(("a", start, start + timedelta(days=2))), content_type="text/calendar")
    url = reverse("connection-fix-step", args=[paused.pk, "link"])
    with (
        recorded_hand_over() as enqueue,
        TestCase.captureOnCommitCallbacks(execute=True),
    ):
        response = operator_client.post(url, {"action": "new_link", "import_url": f" {httpserver.url_for('/new.ics')} "}, **HTMX)
    text = html.unescape(response.content.decode())
    assert "The new link works and is saved." in text
    assert "Found 1 booking or block" in text
    # Every other step decided from the read after the save, beside it (out of band), and the
    # page looks again while the new link's sync runs.
    assert 'id="step-switched_on" class="step" hx-swap-oob="true"' in text
    assert "Switched back on: checking its calendar now…" in text
    assert 'id="checklist-watch" hx-swap-oob="true" hx-get=' in text
    paused.refresh_from_db()
    assert paused.import_url == httpserver.url_for("/new.ics")
    # Read at once by a worker, as after an edit: the sync is "checking" until then.
    assert enqueue.syncs() == [paused.pk]
    assert paused.checking_since is not None
    connection_sync_leased(connection_id=paused.pk, trigger=SyncRun.Trigger.MANUAL)
    paused.refresh_from_db()
    assert paused.paused_at is None and paused.last_success_at is not None
    assert Block.objects.current().filter(source=paused).count() == 1


def test_a_refused_link_in_step_2_saves_nothing_and_says_why(operator_client, paused):
    url = reverse("connection-fix-step", args=[paused.pk, "link"])
    before = paused.import_url
    response = operator_client.post(url, {"action": "new_link", "import_url": "ftp://example.com/x.ics"}, **HTMX)
    text = html.unescape(response.content.decode())
    assert "The new link was not saved" in text
    assert 'aria-invalid="true"' in text and "data-focus-first-error" in text
    paused.refresh_from_db()
    assert paused.import_url == before and paused.paused_at is not None


def test_step_6_refuses_a_test_night_while_the_import_fails_and_names_who_will_see_one(operator_client, paused, prop):
    ConnectionFactory(property=prop, portal=portal("booking"))
    url = reverse("connection-fix-step", args=[paused.pk, "final_check"])
    night = (timezone.localdate() + timedelta(days=2)).isoformat()
    response = operator_client.post(url, {"action": "add_test_block", "night": night}, **HTMX)
    text = html.unescape(response.content.decode())
    assert "Not yet: this check starts once the import works." in text
    assert "Add the test block" not in text
    assert not Block.objects.filter(property=prop, source__isnull=True).exists()

    Connection.objects.filter(pk=paused.pk).update(paused_at=None, consecutive_failures=0, last_success_at=timezone.now())
    response = operator_client.get(url, **HTMX)
    text = html.unescape(response.content.decode())
    assert "A test night is closed on every portal that reads this property's calendars: Airbnb, Booking.com." in text
    assert f'value="{prop.local_today().isoformat()}"' in text  # the nearest free night: tonight


def test_without_javascript_a_step_is_checked_on_the_page_itself(operator_client, paused):
    page = html.unescape(operator_client.get(reverse("connection-fix", args=[paused.pk]), {"check": "link"}).content.decode())
    item = page[page.index('id="step-link-item"'):page.index('id="step-export_pasted-item"')]
    assert "<details open>" in item
    assert "Airbnb answered 404" in item
    assert 'hx-trigger="load' not in item  # checked already: not again as the page loads
    # The other steps, each a plain form: decided from the page's read ("Check again"), or, for
    # https, read from the portal when asked ("Check now").
    assert page.count("Check now") + page.count("Check again") == 7


def test_no_template_holds_a_comment_django_would_print():
    """Django's {# #} ends on its own line: one that runs on is printed on the page as text (the
    checklist showed its own notes to operators)."""
    from pathlib import Path

    from django.conf import settings

    runaway = []
    for folder in settings.TEMPLATES[0]["DIRS"]:
        for path in (p for p in Path(folder).rglob("*") if p.is_file()):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"\{#(?!.*#\})", line):
                    runaway.append(f"{path.name}:{number}")
    assert runaway == []


def test_the_checklist_shows_operators_no_template_source(operator_client, operator):
    prop = PropertyFactory(account=Account.of_user(operator))
    connection = ConnectionFactory(property=prop, paused_at=timezone.now(), pause_reason="http_4xx", pause_params={"status": 404})
    page = operator_client.get(reverse("connection-fix", args=[connection.pk])).content.decode()
    assert "{#" not in page and "#}" not in page and "{%" not in page
