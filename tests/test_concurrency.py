"""Two workers, one connection: the sync is applied once, whatever the timing."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone
from werkzeug import Response

from syncs.models import Block, SyncRun
from syncs.scheduling import connection_acquire_lease
from syncs.sync import LeaseLost, connection_sync, connection_sync_leased
from tests import feeds
from tests.factories import ConnectionFactory


def slow_feed(body: bytes, seconds: float):
    def handler(request):
        time.sleep(seconds)
        return Response(body, content_type="text/calendar")

    return handler


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_workers_syncing_one_connection_at_once_apply_it_once(postgres, httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    today = timezone.localdate()
    body = feeds.airbnb(*[(f"s{i}", today + timedelta(days=3 * i + 1), today + timedelta(days=3 * i + 3)) for i in range(5)])
    httpserver.expect_request("/feed.ics").respond_with_handler(slow_feed(body, 0.5))
    connection = ConnectionFactory(import_url=httpserver.url_for("/feed.ics"))
    results = []
    barrier = threading.Barrier(2)

    def worker():
        barrier.wait()
        try:
            results.append(connection_sync_leased(connection_id=connection.pk))
        finally:
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
