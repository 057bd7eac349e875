"""Two workers, one connection: the sync is applied once, whatever the timing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone
from werkzeug import Response

from syncs.engine.lease import LeaseLost, connection_acquire_lease
from syncs.engine.task import connection_sync, connection_sync_leased
from syncs.models import Block, SyncRun
from tests import feeds
from tests.factories import ConnectionFactory


def held_feed(body: bytes, released: threading.Event):
    """The feed, answered once ``released`` is set: the worker that fetches it holds its lease
    until then."""

    def handler(request):
        released.wait(30)
        return Response(body, content_type="text/calendar")

    return handler


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_workers_syncing_one_connection_at_once_apply_it_once(postgres, httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    today = timezone.localdate()
    body = feeds.airbnb(*[(f"s{i}", today + timedelta(days=3 * i + 1), today + timedelta(days=3 * i + 3)) for i in range(5)])
    # The feed answers once one worker has given up (no lease for it): the other is still
    # fetching then, whatever the machine's speed. Were both to take the lease, both would fetch.
    released = threading.Event()
    httpserver.expect_request("/feed.ics").respond_with_handler(held_feed(body, released))
    connection = ConnectionFactory(import_url=httpserver.url_for("/feed.ics"))
    results = []
    barrier = threading.Barrier(2)

    def worker():
        barrier.wait()
        try:
            results.append(connection_sync_leased(connection_id=connection.pk))
        finally:
            released.set()
            db_connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r is None for r in results) == [False, True]
    assert SyncRun.objects.count() == 1
    assert Block.objects.filter(source=connection).count() == 5


@pytest.mark.django_db
def test_a_worker_whose_lease_was_taken_over_writes_nothing(httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    today = timezone.localdate()
    httpserver.expect_request("/feed.ics").respond_with_data(feeds.airbnb(("a", today + timedelta(days=1), today + timedelta(days=3))))
    connection = ConnectionFactory(import_url=httpserver.url_for("/feed.ics"))
    # Our lease expired while we fetched, and another worker took the connection.
    assert connection_acquire_lease(connection_id=connection.pk, holder="the-other-worker")
    with pytest.raises(LeaseLost):
        connection_sync(connection=connection, trigger=SyncRun.Trigger.SCHEDULED, holder="us")
    assert not SyncRun.objects.exists()
    assert not Block.objects.exists()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_syncs_of_two_connections_of_one_portal_do_not_wait_for_each_other(postgres, httpserver, settings):
    from django.db import transaction

    from syncs.engine.lease import connection_acquire_lease, connection_lock_leased

    settings.FETCH_ALLOW_LOOPBACK = True
    httpserver.expect_request("/feed.ics").respond_with_data(feeds.airbnb())
    first, second = ConnectionFactory.create_batch(2, import_url=httpserver.url_for("/feed.ics"))
    assert first.portal_id == second.portal_id
    holding, release = threading.Event(), threading.Event()

    def first_sync_recording():
        try:
            connection_acquire_lease(connection_id=first.pk, holder="first")
            with transaction.atomic():
                connection_lock_leased(connection_id=first.pk, holder="first", settings_version=0)
                holding.set()
                release.wait(10)
        finally:
            db_connection.close()

    thread = threading.Thread(target=first_sync_recording)
    thread.start()
    try:
        assert holding.wait(10)
        with db_connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")  # a wait on the portal row would fail here
        run = connection_sync_leased(connection_id=second.pk)
        assert run is not None
        assert run.outcome == "ok_empty"
    finally:
        release.set()
        thread.join()
        with db_connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
