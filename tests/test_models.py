from __future__ import annotations

from datetime import date

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from syncs.models import Block, Connection, Portal, Property
from tests.factories import BlockFactory, ConnectionFactory, MembershipFactory, PropertyFactory

pytestmark = pytest.mark.django_db


def test_the_portals_are_seeded_with_their_labels_hosts_and_pick_up_delays():
    portals = {p.slug: p for p in Portal.objects.all()}
    assert set(portals) == {"airbnb", "booking", "vrbo", "expedia", "tripadvisor", "google", "other"}
    assert "Reserved" in portals["airbnb"].labels["reserved"]
    assert "Airbnb (Not available)" in portals["airbnb"].labels["blocked"]
    assert "Provisoire" in portals["vrbo"].labels["tentative"]
    assert "*.booking.com" in portals["booking"].host_patterns
    assert (portals["airbnb"].pickup_delay_min_minutes, portals["airbnb"].pickup_delay_max_minutes) == (120, 180)
    assert portals["google"].pickup_delay_max_minutes == 1440
    assert [p.slug for p in Portal.objects.all()][:3] == ["airbnb", "booking", "vrbo"]


def test_a_property_refuses_a_time_zone_that_does_not_exist():
    prop = PropertyFactory.build(account=MembershipFactory().account, timezone="Europe/Atlantis")
    with pytest.raises(ValidationError) as excinfo:
        prop.full_clean()
    assert "timezone" in excinfo.value.message_dict


def test_a_property_accepts_an_iana_time_zone():
    prop = PropertyFactory.build(account=MembershipFactory().account, timezone="America/Sao_Paulo")
    prop.full_clean()


def test_an_importing_connection_needs_an_import_url():
    connection = ConnectionFactory.build(property=PropertyFactory(), import_url="")
    with pytest.raises(ValidationError) as excinfo:
        connection.full_clean()
    assert "import_url" in excinfo.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        connection.save()


def test_an_export_only_connection_needs_no_import_url():
    connection = ConnectionFactory(direction=Connection.Direction.EXPORT_ONLY, import_url="")
    connection.full_clean()


def test_the_sync_interval_cannot_be_shorter_than_five_minutes():
    connection = ConnectionFactory.build(property=PropertyFactory(), sync_interval_minutes=4)
    with pytest.raises(ValidationError):
        connection.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        connection.save()


def test_a_block_must_end_after_it_starts():
    with pytest.raises(IntegrityError), transaction.atomic():
        BlockFactory(start_date=date(2027, 3, 4), end_date=date(2027, 3, 4))


def test_a_block_counts_its_nights_up_to_the_check_out_day():
    block = BlockFactory(start_date=date(2027, 3, 1), end_date=date(2027, 3, 4))
    assert block.nights == 3


def test_one_source_cannot_hold_two_current_blocks_with_the_same_uid():
    connection = ConnectionFactory()
    BlockFactory(property=connection.property, source=connection, uid="abc@airbnb.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        BlockFactory(property=connection.property, source=connection, uid="abc@airbnb.com")
    # A removed block does not count: the UID can come back.
    Block.objects.filter(uid="abc@airbnb.com").update(removed_at=timezone.now())
    BlockFactory(property=connection.property, source=connection, uid="abc@airbnb.com")


def test_queries_for_a_user_see_only_their_own_account():
    mine, theirs = MembershipFactory(), MembershipFactory()
    my_conn = ConnectionFactory(property=PropertyFactory(account=mine.account))
    their_conn = ConnectionFactory(property=PropertyFactory(account=theirs.account))
    assert list(Connection.objects.for_user(mine.user)) == [my_conn]
    assert list(Connection.objects.for_user(theirs.user)) == [their_conn]
    assert list(Property.objects.for_user(mine.user)) == [my_conn.property]


def test_a_user_without_an_account_sees_nothing(django_user_model):
    ConnectionFactory()
    loner = django_user_model.objects.create_user("loner", password="x" * 12)
    assert not Connection.objects.for_user(loner).exists()
    assert not Property.objects.for_user(loner).exists()
