from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from syncs.engine.lease import (
    connection_acquire_lease,
    connection_release_lease,
    connections_claim_due,
)
from syncs.models import Connection
from tests.factories import ConnectionFactory


def claimed_ids(claims) -> list[int]:
    return [claim.connection_id for claim in claims]


@pytest.mark.django_db
def test_the_dispatcher_claims_only_switched_on_unpaused_importing_due_connections():
    now = timezone.now()
    due = ConnectionFactory(next_sync_at=now - timedelta(minutes=1))
    never_scheduled = ConnectionFactory(next_sync_at=None)
    ConnectionFactory(next_sync_at=now + timedelta(minutes=5))
    ConnectionFactory(enabled=False, next_sync_at=None)
    ConnectionFactory(paused_at=now, next_sync_at=None)
    ConnectionFactory(direction=Connection.Direction.EXPORT_ONLY, import_url="", next_sync_at=None)

    assert sorted(claimed_ids(connections_claim_due(now=now))) == sorted([due.pk, never_scheduled.pk])


@pytest.mark.django_db
def test_a_claimed_connection_moves_one_interval_ahead_with_a_little_jitter():
    now = timezone.now()
    connection = ConnectionFactory(next_sync_at=None, sync_interval_minutes=30)
    connections_claim_due(now=now)
    connection.refresh_from_db()
    assert now + timedelta(minutes=30) <= connection.next_sync_at <= now + timedelta(minutes=33)


@pytest.mark.django_db
def test_a_second_dispatcher_run_claims_nothing_already_claimed():
    now = timezone.now()
    ConnectionFactory.create_batch(3, next_sync_at=None)
    assert len(connections_claim_due(now=now)) == 3
    assert connections_claim_due(now=now) == []


@pytest.mark.django_db
def test_a_claim_leases_the_connection_to_the_claim():
    now = timezone.now()
    connection = ConnectionFactory(next_sync_at=None)

    (claim,) = connections_claim_due(now=now)

    connection.refresh_from_db()
    assert connection.lease_holder == claim.holder and connection.lease_until > now
    # A worker cannot take it meanwhile (a "Sync now", say), but the claim's task can, again.
    assert not connection_acquire_lease(connection_id=connection.pk, holder="other", now=now)
    assert connection_acquire_lease(connection_id=connection.pk, holder=claim.holder, now=now)


@pytest.mark.django_db
def test_the_dispatcher_leaves_a_connection_that_someone_holds_until_it_is_free():
    now = timezone.now()
    connection = ConnectionFactory(next_sync_at=None)
    assert connection_acquire_lease(connection_id=connection.pk, holder="sync-now", now=now)
    assert connections_claim_due(now=now) == []
    connection_release_lease(connection_id=connection.pk, holder="sync-now")
    assert claimed_ids(connections_claim_due(now=now)) == [connection.pk]


@pytest.mark.django_db
def test_the_dispatcher_hands_out_the_oldest_due_first():
    now = timezone.now()
    late = ConnectionFactory(next_sync_at=now - timedelta(minutes=1))
    later = ConnectionFactory(next_sync_at=now - timedelta(seconds=1))
    oldest = ConnectionFactory(next_sync_at=now - timedelta(hours=1))
    assert claimed_ids(connections_claim_due(now=now)) == [oldest.pk, late.pk, later.pk]


@pytest.mark.django_db
def test_only_one_worker_holds_a_connection_lease_until_it_expires():
    connection = ConnectionFactory()
    now = timezone.now()
    assert connection_acquire_lease(connection_id=connection.pk, holder="a", now=now)
    assert not connection_acquire_lease(connection_id=connection.pk, holder="b", now=now)
    later = now + timedelta(hours=1)
    assert connection_acquire_lease(connection_id=connection.pk, holder="b", now=later)


@pytest.mark.django_db
def test_a_released_lease_can_be_taken_at_once():
    connection = ConnectionFactory()
    assert connection_acquire_lease(connection_id=connection.pk, holder="a")
    connection_release_lease(connection_id=connection.pk, holder="a")
    assert connection_acquire_lease(connection_id=connection.pk, holder="b")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_dispatchers_at_once_never_claim_the_same_connection_on_postgresql(postgres):
    ids = {c.pk for c in ConnectionFactory.create_batch(40, next_sync_at=None)}
    now = timezone.now()
    results: list[list[int]] = []
    barrier = threading.Barrier(2)

    def dispatch():
        barrier.wait()
        try:
            results.append(claimed_ids(connections_claim_due(now=now, limit=25)))
        finally:
            db_connection.close()

    threads = [threading.Thread(target=dispatch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = results
    assert not set(first) & set(second)
    assert set(first) | set(second) <= ids
    assert len(first) + len(second) >= 25


@pytest.mark.django_db
def test_connections_claimed_together_come_back_at_different_times():
    now = timezone.now()
    ConnectionFactory.create_batch(60, next_sync_at=None, sync_interval_minutes=30)
    connections_claim_due(now=now)
    turns = set(Connection.objects.values_list("next_sync_at", flat=True))
    assert len(turns) > 2
    assert all(now + timedelta(minutes=30) <= turn <= now + timedelta(minutes=33) for turn in turns)


@pytest.mark.django_db
def test_a_claim_moves_each_connection_by_its_own_interval():
    now = timezone.now()
    hourly = ConnectionFactory(next_sync_at=None, sync_interval_minutes=60)
    quarter = ConnectionFactory(next_sync_at=None, sync_interval_minutes=15)
    connections_claim_due(now=now)
    hourly.refresh_from_db()
    quarter.refresh_from_db()
    assert now + timedelta(minutes=60) <= hourly.next_sync_at <= now + timedelta(minutes=66)
    assert now + timedelta(minutes=15) <= quarter.next_sync_at <= now + timedelta(minutes=16.5)


@pytest.mark.django_db
def test_a_claim_whose_lease_expired_unserved_is_taken_over_for_the_same_turn(settings):
    now = timezone.now()
    connection = ConnectionFactory(next_sync_at=None)
    (lost,) = connections_claim_due(now=now)
    turn = Connection.objects.get(pk=connection.pk).next_sync_at
    # Its worker was lost: before the lease expires nobody else takes it ...
    soon = now + timedelta(seconds=settings.SYNC_LEASE_SECONDS - 1)
    assert connections_claim_due(now=soon, take_over=True) == []
    # ... after, a dispatcher that knows no sync waits in the queue does, for the same turn,
    # under a claim of its own; one that does not know leaves it.
    later = now + timedelta(seconds=settings.SYNC_LEASE_SECONDS + 1)
    assert connections_claim_due(now=later) == []
    (taken,) = connections_claim_due(now=later, take_over=True)
    assert (taken.connection_id, taken.taken_over) == (connection.pk, True) and taken.holder != lost.holder
    connection.refresh_from_db()
    assert connection.next_sync_at == turn
    assert connection.lease_holder == taken.holder and connection.lease_until > later


@pytest.mark.django_db
def test_a_served_claim_or_an_expired_sync_now_is_not_taken_over(settings):
    now = timezone.now()
    served, sync_now = ConnectionFactory.create_batch(2, next_sync_at=now + timedelta(minutes=20))
    Connection.objects.filter(pk=served.pk).update(next_sync_at=None)
    (claim,) = connections_claim_due(now=now)
    connection_release_lease(connection_id=served.pk, holder=claim.holder)  # as its record does
    # A "Sync now" whose worker was lost: its job is sent again (syncs.jobs), not a turn.
    assert connection_acquire_lease(connection_id=sync_now.pk, holder="sync-now", now=now)
    later = now + timedelta(seconds=settings.SYNC_LEASE_SECONDS + 1)
    assert connections_claim_due(now=later, take_over=True) == []
