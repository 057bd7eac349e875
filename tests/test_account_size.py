"""Pages cost the same whatever the account's size, and what they read instead of counting is
never behind: the double bookings stored where blocks change, the account's main time zone
kept where properties change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from syncs.blocks import block_create_manual, block_remove_manual
from syncs.conflicts import double_bookings_scan
from syncs.editing import connection_edit, property_create, property_edit
from syncs.models import Account, Block, DoubleBooking
from syncs.removal import property_remove, property_restore
from tests.factories import BlockFactory, ConnectionFactory, PropertyFactory, portal

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(operator):
    return Account.of_user(operator)


def double_booked(account, name: str, days: int = 10):
    """A property whose Airbnb and Booking.com stays share a night, ``days`` from now."""
    prop = PropertyFactory(account=account, name=name)
    airbnb = ConnectionFactory(property=prop, portal=portal("airbnb"), last_success_at=timezone.now())
    booking = ConnectionFactory(property=prop, portal=portal("booking"), last_success_at=timezone.now())
    start = timezone.localdate() + timedelta(days=days)
    BlockFactory(property=prop, source=airbnb, kind="reserved", start_date=start, end_date=start + timedelta(days=3))
    BlockFactory(property=prop, source=booking, kind="blocked", start_date=start + timedelta(days=2), end_date=start + timedelta(days=5))
    return prop


def calm(account, count: int) -> None:
    """``count`` more properties with two syncs each and stays that never clash."""
    for _n in range(count):
        prop = PropertyFactory(account=account)
        for k, slug in enumerate(("airbnb", "vrbo")):
            sync = ConnectionFactory(property=prop, portal=portal(slug), last_success_at=timezone.now())
            start = timezone.localdate() + timedelta(days=5 + 10 * k)
            BlockFactory(property=prop, source=sync, kind="reserved", start_date=start, end_date=start + timedelta(days=2))


def conflicts_listed_on_the_overview(client) -> list[str]:
    page = client.get(reverse("home")).content.decode()
    return [part.split('"', 1)[0] for part in page.split('class="conflict-item" data-property="')[1:]]


PAGES = [
    "home", "overview-status", "activity", "property-list", "timeline", "account-settings", "webhooks", "members",
    "my-alerts", "profile", "onboarding",
]


@pytest.mark.parametrize("name", PAGES)
def test_a_page_reads_as_many_times_from_the_database_for_twelve_properties_as_for_three(operator_client, account, name):
    double_booked(account, "Casa 1")
    calm(account, 2)
    operator_client.get(reverse(name))  # the session's first request writes what later ones only read
    with CaptureQueriesContext(connection) as few:
        assert operator_client.get(reverse(name)).status_code == 200
    double_booked(account, "Casa 2", days=20)
    calm(account, 8)
    operator_client.get(reverse(name))  # new properties: the account's main time zone is counted again once
    with CaptureQueriesContext(connection) as many:
        assert operator_client.get(reverse(name)).status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries), [q["sql"][:200] for q in many.captured_queries]


@pytest.mark.parametrize("query", ["?state=attention", "?state=paused", "?portal=booking", "?q=casa", "?sort=health"])
def test_the_filtered_lists_read_as_many_times_for_twelve_properties_as_for_three(operator_client, account, query):
    double_booked(account, "Casa 1")
    calm(account, 2)
    operator_client.get(reverse("home"))  # the session's first request writes what later ones only read
    counts = []
    for more in (0, 9):
        calm(account, more)
        for name in ("timeline", "property-list"):
            operator_client.get(reverse(name) + query)
            with CaptureQueriesContext(connection) as queries:
                assert operator_client.get(reverse(name) + query).status_code == 200
            counts.append((name, len(queries.captured_queries)))
    assert counts[:2] == counts[2:]


def test_a_double_booking_made_here_shows_at_once_and_goes_when_its_block_is_removed(operator_client, account):
    prop = PropertyFactory(account=account, name="Casa Azul")
    airbnb = ConnectionFactory(property=prop, portal=portal("airbnb"), last_success_at=timezone.now())
    start = timezone.localdate() + timedelta(days=10)
    BlockFactory(property=prop, source=airbnb, kind="reserved", start_date=start, end_date=start + timedelta(days=3))
    assert conflicts_listed_on_the_overview(operator_client) == []
    direct = block_create_manual(property=prop, start=start + timedelta(days=1), end=start + timedelta(days=2), kind="reserved")
    assert conflicts_listed_on_the_overview(operator_client) == ["Casa Azul"]
    block_remove_manual(block=direct)
    assert conflicts_listed_on_the_overview(operator_client) == []


def test_a_sync_moved_to_booking_com_makes_its_closures_clash_at_once(operator_client, account, operator):
    # Booking.com's feeds do not tell bookings from closures: its closures may be stays.
    prop = PropertyFactory(account=account, name="Casa Azul")
    airbnb = ConnectionFactory(property=prop, portal=portal("airbnb"), last_success_at=timezone.now())
    other = ConnectionFactory(property=prop, portal=portal("vrbo"), last_success_at=timezone.now())
    start = timezone.localdate() + timedelta(days=10)
    BlockFactory(property=prop, source=airbnb, kind="reserved", start_date=start, end_date=start + timedelta(days=3))
    BlockFactory(property=prop, source=other, kind="blocked", start_date=start, end_date=start + timedelta(days=3))
    assert conflicts_listed_on_the_overview(operator_client) == []
    connection_edit(user=operator, connection=other, portal=portal("booking"), direction=other.direction,
                    import_url=other.import_url, sync_interval_minutes=other.sync_interval_minutes,
                    export_summary=other.export_summary)
    assert conflicts_listed_on_the_overview(operator_client) == ["Casa Azul"]


def test_a_removed_property_takes_its_double_bookings_with_it_and_its_restore_brings_them_back(operator_client, account, operator):
    prop = double_booked(account, "Casa Azul")
    assert conflicts_listed_on_the_overview(operator_client) == ["Casa Azul"]
    property_remove(user=operator, property=prop)
    assert conflicts_listed_on_the_overview(operator_client) == []
    property_restore(user=operator, property=prop)
    assert conflicts_listed_on_the_overview(operator_client) == ["Casa Azul"]


def test_a_change_the_writers_did_not_store_is_caught_by_the_next_scan(operator_client, account):
    # A block written behind the services' back (a shell, a bulk load): the minute's scan stores it.
    prop = PropertyFactory(account=account, name="Casa Azul")
    airbnb = ConnectionFactory(property=prop, portal=portal("airbnb"), last_success_at=timezone.now())
    vrbo = ConnectionFactory(property=prop, portal=portal("vrbo"), last_success_at=timezone.now())
    start = timezone.localdate() + timedelta(days=10)
    Block.objects.bulk_create([
        Block(property=prop, source=airbnb, uid="a", kind="reserved", start_date=start, end_date=start + timedelta(days=3)),
        Block(property=prop, source=vrbo, uid="v", kind="reserved", start_date=start, end_date=start + timedelta(days=3)),
    ])
    double_bookings_scan()
    assert conflicts_listed_on_the_overview(operator_client) == ["Casa Azul"]
    Block.objects.filter(uid="v").update(removed_at=timezone.now())
    double_bookings_scan()
    assert conflicts_listed_on_the_overview(operator_client) == []
    assert not DoubleBooking.objects.filter(current=True).exists()


def test_the_overview_counts_every_double_booking_beyond_those_it_lists(operator_client, account, settings):
    for n in range(23):
        double_booked(account, f"Casa {n:02d}", days=10 + n)
    page = operator_client.get(reverse("home")).content.decode()
    assert "23 possible double bookings" in page
    assert page.count('class="conflict-item"') == 20
    assert "and 3 more, later" in page


def test_the_activity_page_reads_times_in_the_zone_most_properties_are_in_as_they_change(operator_client, account, operator):
    def zone_said() -> str:
        page = operator_client.get(reverse("activity")).content.decode()
        return page.split("Every time is in ", 1)[1].split(".", 1)[0]

    lisbon = property_create(user=operator, name="Lisbon 1", timezone="Europe/Lisbon")
    assert zone_said() == "Europe/Lisbon"
    property_create(user=operator, name="Madrid 1", timezone="Europe/Madrid")
    madrid = property_create(user=operator, name="Madrid 2", timezone="Europe/Madrid")
    assert zone_said() == "Europe/Madrid"
    property_remove(user=operator, property=madrid)
    assert zone_said() == "Europe/Lisbon"  # a tie: the zones in order of their names
    property_restore(user=operator, property=madrid)
    assert zone_said() == "Europe/Madrid"
    property_edit(user=operator, property=madrid, name="Madrid 2", timezone="Europe/Lisbon")
    assert zone_said() == "Europe/Lisbon"
    lisbon.delete()
    madrid.delete()
    assert zone_said() == "Europe/Madrid"
