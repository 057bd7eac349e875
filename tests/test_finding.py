"""Finding things: search ignoring case and accents, names in the reader's order, the properties
list filtered by health and sorted by name, health or last sync (paged, kept in the URL), the same
list as a spreadsheet, and alerts in the menu. Two accounts in every test: a read that forgot the
account would show the other one's "Ático". Run on SQLite and, with DATABASE_URL, PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from syncs.collation import folded, sort_key
from syncs.models import Account, Activity, Connection, Membership, Property
from syncs.property_listing import PROPERTIES_PER_SEARCH
from syncs.views import activity as activity_views
from tests.factories import ConnectionFactory, MembershipFactory, PropertyFactory, portal

pytestmark = pytest.mark.django_db
Role = Membership.Role
ROW = re.compile(r'<tr id="property-(\d+)">')
TIMELINE_ROW = re.compile(r'<tr id="tl-property-(\d+)"')


def signed_in(membership: Membership, language: str = "") -> Client:
    if language:
        Membership.objects.filter(pk=membership.pk).update(language=language)
    client = Client()
    client.force_login(membership.user)
    return client


@pytest.fixture
def owner() -> Membership:
    return MembershipFactory(role=Role.OWNER, account__name="Casas do Sul")


@pytest.fixture
def stranger() -> Membership:
    """Another account, with names that every search below would find."""
    other = MembershipFactory(role=Role.OWNER, account__name="Outra")
    for name in ("Ático Ajeno", "atico de otro", "Villa Ajena"):
        ConnectionFactory(property=PropertyFactory(account=other.account, name=name), paused_at=timezone.now())
    return other


def names_listed(client: Client, **query) -> list[str]:
    page = client.get(reverse("property-list"), query).content.decode()
    names = dict(Property.objects.values_list("pk", "name"))
    return [names[int(pk)] for pk in ROW.findall(page)]


# --------------------------------------------------------------------------- one rule to search by


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("atico", "Ático"), ("ÁTICO", "Ático"), ("ático", "ATICO DEL MAR"), ("atico", "ÁTICO"),
        ("sao joao", "São João"), ("SÃO", "sao bento"), ("strasse", "Straße 5"), ("coracao", "Coração"),
        ("nino", "Niño"), ("  casa   rio ", "Casa Rio"), ("oresund", "Øresund"), ("ﬁnca", "Finca"),
    ],
)
def test_a_search_ignores_case_and_accents_on_the_properties_list_and_the_timeline(owner, stranger, typed, name):
    PropertyFactory(account=owner.account, name=name)
    PropertyFactory(account=owner.account, name="Villa Sol")
    client = signed_in(owner)
    assert names_listed(client, q=typed) == [name]
    timeline = client.get(reverse("timeline"), {"q": typed}).content.decode()
    assert TIMELINE_ROW.findall(timeline) == [str(Property.objects.get(name=name).pk)]


def test_all_syncs_matching_a_search_are_found_ignoring_accents_and_only_in_the_account(owner, stranger):
    atico = ConnectionFactory(property=PropertyFactory(account=owner.account, name="Ático Azul"))
    villa = ConnectionFactory(property=PropertyFactory(account=owner.account, name="Villa Sol"))
    client = signed_in(owner)
    client.post(reverse("bulk-action"), {"action": "switch_off", "all": "1", "q": "ATICO", "next": "/properties/"})
    assert list(Connection.objects.filter(enabled=False).values_list("pk", flat=True)) == [atico.pk]
    assert Connection.objects.get(pk=villa.pk).enabled
    assert Activity.objects.get().params["count"] == 1


def test_the_searched_name_follows_every_way_a_property_is_written():
    account = MembershipFactory().account
    made = Property.objects.create(account=account, name="Ático", timezone="UTC")
    [bulk] = Property.objects.bulk_create([Property(account=account, name="ÁRBOL Grande", timezone="UTC")])
    made.name = "Señorío"
    made.save()
    assert dict(Property.objects.values_list("name", "name_key")) == {"Señorío": "senorio", "ÁRBOL Grande": "arbol grande"}
    assert folded(bulk.name) == "arbol grande"


# --------------------------------------------------------------------------- names in the reader's order

# The Unicode Collation Algorithm's order (as ICU gives it: CLDR root for English and Portuguese,
# Spanish tailoring "ñ" as a letter after "n"): letters first, then accents, then lower case first.
NAMES = ["Villa", "Ático", "casa", "Zeta", "Ñandú", "Nube", "árbol", "Arbol", "Oporto", "Casa"]
ROOT_ORDER = ["Arbol", "árbol", "Ático", "casa", "Casa", "Ñandú", "Nube", "Oporto", "Villa", "Zeta"]
SPANISH_ORDER = ["Arbol", "árbol", "Ático", "casa", "Casa", "Nube", "Ñandú", "Oporto", "Villa", "Zeta"]


@pytest.mark.parametrize(("language", "expected"), [("en", ROOT_ORDER), ("pt", ROOT_ORDER), ("es", SPANISH_ORDER)])
def test_names_are_listed_in_the_order_of_the_readers_language(owner, stranger, language, expected):
    for name in NAMES:
        PropertyFactory(account=owner.account, name=name)
    client = signed_in(owner, language)
    assert names_listed(client) == expected
    assert names_listed(client, sort="-name") == expected[::-1]
    timeline = client.get(reverse("timeline")).content.decode()
    names = dict(Property.objects.values_list("pk", "name"))
    assert [names[int(pk)] for pk in TIMELINE_ROW.findall(timeline)] == expected


def test_the_activity_pages_property_menu_and_a_members_assigned_properties_follow_the_same_order(owner, stranger):
    manager = MembershipFactory(account=owner.account, role=Role.MANAGER)
    for name in NAMES:
        manager.assigned_properties.add(PropertyFactory(account=owner.account, name=name))
    client = signed_in(manager, "es")
    names = dict(Property.objects.values_list("pk", "name"))
    activity = client.get(reverse("activity")).content.decode()
    assert [names[int(pk)] for pk in re.findall(r'<option value="(\d+)"', activity)] == SPANISH_ORDER
    alerts = client.get(reverse("my-alerts")).content.decode()
    assert [names[int(pk)] for pk in re.findall(r'<li><a href="/properties/(\d+)/">', alerts)] == SPANISH_ORDER


def test_the_activity_page_of_a_big_account_searches_property_names_and_costs_the_same(owner, stranger, monkeypatch):
    monkeypatch.setattr(activity_views, "PROPERTIES_LISTED", 3)
    atico, villa = (PropertyFactory(account=owner.account, name=name) for name in ("Ático do Mar", "Villa Sol"))
    for prop in (atico, villa):
        Activity.objects.create(account=owner.account, property=prop, action="property_edited")
    theirs = Property.objects.get(name="Ático Ajeno")
    Activity.objects.create(account=stranger.account, property=theirs, action="property_edited")
    client = signed_in(owner)

    def rows(**query) -> list[str]:
        page = client.get(reverse("activity"), query).content.decode()
        return re.findall(r'<a href="/properties/\d+/">([^<]+)</a>', page)

    assert sorted(rows()) == ["Villa Sol", "Ático do Mar"]  # two properties: a list to pick from
    for _more in range(2):
        PropertyFactory(account=owner.account)
    with CaptureQueriesContext(db_connection) as few:
        page = client.get(reverse("activity")).content.decode()
    assert "<select name=\"property\">" not in page and 'type="search" name="name"' in page
    PropertyFactory.create_batch(20, account=owner.account)
    with CaptureQueriesContext(db_connection) as many:
        client.get(reverse("activity"))
    assert len(many) == len(few)
    # Case and accents aside, as every search; another account's names are never found.
    assert rows(name="ATICO") == ["Ático do Mar"]
    assert rows(name="ajeno") == []
    # A link naming one property (its page's) filters on it, with a way back to all.
    only = client.get(reverse("activity"), {"property": villa.pk}).content.decode()
    assert "Only Villa Sol." in only and re.findall(r'<a href="/properties/\d+/">([^<]+)</a>', only) == ["Villa Sol"]
    assert rows(property=theirs.pk) == rows()  # not the account's: no filter


def test_a_name_without_accents_comes_before_the_same_name_with_them_and_lower_case_before_upper():
    assert sorted(["Árbol", "arbol", "Arbol", "árbol"], key=lambda name: sort_key(name, "pt")) == [
        "arbol", "Arbol", "árbol", "Árbol",
    ]


# --------------------------------------------------------------------------- the properties list


def _property(account, name: str, *syncs: dict) -> Property:
    prop = PropertyFactory(account=account, name=name)
    for fields in syncs:
        ConnectionFactory(property=prop, **fields)
    return prop


@pytest.fixture
def listed(owner, stranger):
    """Properties in every kind of health, synced at different moments."""
    now = timezone.now()
    account = owner.account
    _property(account, "Apartamento Sol", {"last_success_at": now - timedelta(minutes=5)})
    _property(account, "Beach Loft", {"paused_at": now, "pause_reason": "http_404", "last_success_at": now - timedelta(days=2)},
              {"last_success_at": now - timedelta(minutes=1)})
    _property(account, "Casa do Rio", {"enabled": False, "last_success_at": now - timedelta(days=9)})
    _property(account, "Duplex Norte")  # no sync
    _property(account, "Estúdio Mar", {"consecutive_failures": 2, "last_success_at": now - timedelta(hours=3)})
    _property(account, "Flat Waiting", {})  # never synced
    return owner


def test_the_list_filters_by_health_with_the_states_of_the_product(listed):
    client = signed_in(listed)
    assert names_listed(client, state="paused") == ["Beach Loft"]
    assert names_listed(client, state="failing") == ["Estúdio Mar"]
    assert names_listed(client, state="switched_off") == ["Casa do Rio"]
    assert names_listed(client, state="attention") == ["Beach Loft", "Estúdio Mar", "Flat Waiting"]
    assert names_listed(client, state="working") == ["Apartamento Sol", "Beach Loft"]
    assert names_listed(client, state="nonsense") == names_listed(client)  # an unknown state filters nothing


def test_the_list_sorts_by_health_worst_first_and_back(listed):
    client = signed_in(listed)
    worst_first = ["Beach Loft", "Estúdio Mar", "Flat Waiting", "Duplex Norte", "Casa do Rio", "Apartamento Sol"]
    assert names_listed(client, sort="health") == worst_first
    assert names_listed(client, sort="-health") == worst_first[::-1]


def test_the_list_sorts_by_last_successful_sync_never_being_the_oldest(listed):
    client = signed_in(listed)
    oldest_first = ["Duplex Norte", "Flat Waiting", "Casa do Rio", "Estúdio Mar", "Apartamento Sol", "Beach Loft"]
    assert names_listed(client, sort="last_sync") == oldest_first
    latest_first = ["Beach Loft", "Apartamento Sol", "Estúdio Mar", "Casa do Rio", "Duplex Norte", "Flat Waiting"]
    assert names_listed(client, sort="-last_sync") == latest_first


def test_the_list_keeps_its_filter_and_order_in_every_link_and_pages_without_repeating_or_skipping(owner, stranger):
    now = timezone.now()
    for index in range(60):
        # Many alike: the same health, and only two moments among them: names decide, then ids.
        name = f"Casa {index}" if index < 7 else f"Ático {index:02d}"
        _property(owner.account, name, {"last_success_at": now - timedelta(minutes=index % 2)})
    client = signed_in(owner)
    seen = []
    query = {"q": "a", "sort": "-last_sync", "state": "working"}
    page = client.get(reverse("property-list"), query).content.decode()
    while True:
        seen += ROW.findall(page)
        assert "q=a&amp;state=working&amp;sort=-last_sync" in page  # the pages keep it
        assert f'{reverse("property-list-csv")}?q=a&amp;state=working&amp;sort=-last_sync' in page
        following = re.search(r'href="\?([^"]*page=\d+)">Next', page)
        if not following:
            break
        page = client.get(reverse("property-list") + "?" + following.group(1).replace("&amp;", "&")).content.decode()
    assert len(seen) == len(set(seen)) == 60
    names = dict(Property.objects.values_list("pk", "name"))
    assert [names[int(pk)] for pk in seen] == names_listed_all(client, query)


@pytest.mark.parametrize("query", [{}, {"sort": "-health"}, {"sort": "last_sync", "state": "attention"}, {"q": "flat", "portal": "airbnb"}])
def test_the_list_reads_the_same_number_of_queries_for_few_or_many_properties(owner, query):
    client = signed_in(owner)

    def queries() -> int:
        with CaptureQueriesContext(db_connection) as captured:
            assert client.get(reverse("property-list"), query).status_code == 200
        return len(captured.captured_queries)

    ConnectionFactory(property=PropertyFactory(account=owner.account, name="Flat 0"))
    few = queries()
    for index in range(40):
        prop = PropertyFactory(account=owner.account, name=f"Flat {index + 1}")
        ConnectionFactory.create_batch(2, property=prop, paused_at=timezone.now() if index % 2 else None, pause_reason="timeout")
    assert queries() <= few


def names_listed_all(client, query) -> list[str]:
    data = client.get(reverse("property-list-csv"), query).content.decode("utf-8-sig")
    return [row[0] for row in list(csv.reader(io.StringIO(data)))[1:]]


def test_an_unknown_sort_or_page_falls_back_to_the_first_page_by_name(listed):
    client = signed_in(listed)
    assert names_listed(client, sort="password") == names_listed(client)
    assert client.get(reverse("property-list"), {"page": "999", "sort": "--health"}).status_code == 200


# --------------------------------------------------------------------------- the list as a spreadsheet


def test_the_list_exports_what_it_shows_in_the_same_order_as_safe_csv_with_headers_in_the_readers_language(listed):
    PropertyFactory(account=listed.account, name="=HYPERLINK(\"http://x\")")
    viewer = MembershipFactory(account=listed.account, role=Role.VIEWER, time_zone="Europe/Lisbon")
    client = signed_in(viewer, "pt")
    response = client.get(reverse("property-list-csv"), {"sort": "health", "state": "attention"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="properties-')
    body = response.content.decode("utf-8")
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body[1:])))
    assert rows[0] == ["Alojamento", "Fuso horário", "Sincronizações", "Estado", "Última sincronização bem-sucedida (Europe/Lisbon)"]
    assert [row[0] for row in rows[1:]] == ["Beach Loft", "Estúdio Mar", "Flat Waiting"]
    assert rows[1][2] == "2" and rows[1][3] == "Em pausa por erros: 1; A funcionar: 1"
    last = Connection.objects.get(property__name="Beach Loft", paused_at=None).last_success_at
    assert rows[1][4] == last.astimezone(ZoneInfo("Europe/Lisbon")).strftime("%Y-%m-%d %H:%M")
    assert rows[3][4] == ""  # never synced
    # No secret link in it, whoever asks.
    for connection in Connection.objects.all():
        assert connection.import_url not in body
    assert "/ical/" not in body
    whole = list(csv.reader(io.StringIO(client.get(reverse("property-list-csv")).content.decode("utf-8-sig"))))
    assert "'=HYPERLINK(\"http://x\")" in [row[0] for row in whole]  # a formula arrives as text
    assert "Ático Ajeno" not in body and "Villa Ajena" not in [row[0] for row in whole]


def test_a_big_list_is_exported_whole_in_few_queries(owner, django_assert_max_num_queries):
    properties = Property.objects.bulk_create(
        [Property(account=owner.account, name=f"Flat {index:04d}", timezone="UTC") for index in range(PROPERTIES_PER_SEARCH + 20)]
    )
    Connection.objects.bulk_create(
        [Connection(property=prop, portal=portal(), import_url=f"https://www.airbnb.com/calendar/ical/{prop.pk}.ics") for prop in properties[:50]]
    )
    client = signed_in(owner)
    client.get(reverse("home"))  # the session's own reads, once
    with django_assert_max_num_queries(40):
        data = client.get(reverse("property-list-csv"), {"sort": "health"}).content.decode("utf-8-sig")
    assert len(list(csv.reader(io.StringIO(data)))) == PROPERTIES_PER_SEARCH + 21


# --------------------------------------------------------------------------- alerts in the menu


def test_managers_find_email_alerts_and_webhooks_in_the_menu_and_under_settings(owner):
    manager = MembershipFactory(account=owner.account, role=Role.MANAGER)
    viewer = MembershipFactory(account=owner.account, role=Role.VIEWER)
    menu = re.compile(r'<nav class="container" aria-label="Menu">(.*?)</nav>', re.DOTALL)
    for member in (owner, manager):
        client = signed_in(member)
        top = menu.search(client.get(reverse("property-list")).content.decode()).group(1)
        assert f'href="{reverse("webhooks")}"' in top and f'href="{reverse("my-alerts")}"' in top
        page = client.get(reverse("webhooks")).content.decode()
        assert page.count('aria-current="page"') == 1 and f'href="{reverse("webhooks")}" aria-current="page"' in page
        top = menu.search(client.get(reverse("webhooks")).content.decode()).group(1)
        assert f'href="{reverse("account-settings")}"' in top
        settings = client.get(reverse("account-settings")).content.decode()
        assert f'href="{reverse("webhooks")}"' in settings and f'href="{reverse("my-alerts")}"' in settings
    viewer_client = signed_in(viewer)
    top = menu.search(viewer_client.get(reverse("property-list")).content.decode()).group(1)
    assert f'href="{reverse("webhooks")}"' not in top and f'href="{reverse("account-settings")}"' not in top
    assert viewer_client.get(reverse("webhooks")).status_code == 403
    assert viewer_client.get(reverse("account-settings")).status_code == 403


def test_a_manager_reads_the_account_settings_and_is_told_which_owners_change_them(owner):
    owner.user.first_name, owner.user.last_name = "Ana", "Sousa"
    owner.user.save()
    manager = MembershipFactory(account=owner.account, role=Role.MANAGER)
    client = signed_in(manager)
    page = client.get(reverse("account-settings")).content.decode()
    note = re.search(r'id="owner-note"><small>(.*?)</small>', page).group(1)
    assert "your role" in note.lower() and "Manager" in note and "Ana Sousa" in note
    assert re.search(r"<fieldset disabled>", page) and ">Save</button>" not in page
    before = Account.objects.values().get(pk=owner.account.pk)
    assert client.post(reverse("account-settings-save"), {"auto_resume": "on"}).status_code == 403
    assert Account.objects.values().get(pk=owner.account.pk) == before
    # The owner's page has no note and saves.
    owner_client = signed_in(owner)
    page = owner_client.get(reverse("account-settings")).content.decode()
    assert 'id="owner-note"' not in page and ">Save</button>" in page
    saved = owner_client.post(reverse("account-settings-save"), {"auto_resume": "on"}, follow=True)
    assert "Settings saved." in saved.content.decode() and Account.objects.get(pk=owner.account.pk).auto_resume
