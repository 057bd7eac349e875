from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from unittest import mock

import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.db import connection as db
from django.utils import timezone

from channelmgr.celery import close_old_database_connections
from syncs import tasks
from syncs.models import Block, SyncRun
from syncs.scheduling import connection_acquire_lease
from tests import feeds
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def feed_url(httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    today = timezone.localdate()
    httpserver.expect_request("/feed.ics").respond_with_data(
        feeds.airbnb(("a", today + timedelta(days=2), today + timedelta(days=5))), content_type="text/calendar"
    )
    return httpserver.url_for("/feed.ics")


def test_the_dispatcher_enqueues_one_task_per_due_connection():
    due = ConnectionFactory.create_batch(2, next_sync_at=None)
    ConnectionFactory(enabled=False)
    with mock.patch.object(tasks.sync_connection, "delay") as delay:
        assert tasks.dispatch_due_syncs() == 2
    assert sorted(call.args[0] for call in delay.call_args_list) == sorted(c.pk for c in due)


def test_a_sync_task_imports_the_feed_records_the_run_and_releases_its_lease(feed_url):
    connection = ConnectionFactory(import_url=feed_url)
    assert tasks.sync_connection(connection.pk) == "ok_changed"
    run = SyncRun.objects.get(connection=connection)
    assert (run.trigger, run.events_added) == (SyncRun.Trigger.SCHEDULED, 1)
    assert Block.objects.filter(source=connection).count() == 1
    connection.refresh_from_db()
    assert connection.lease_holder == ""
    assert connection.lease_until is None


def test_a_sync_task_does_nothing_while_another_worker_holds_the_connection(feed_url):
    connection = ConnectionFactory(import_url=feed_url)
    connection_acquire_lease(connection_id=connection.pk, holder="other-worker", now=timezone.now())
    assert tasks.sync_connection(connection.pk) is None
    assert not SyncRun.objects.exists()
    connection.refresh_from_db()
    assert connection.lease_holder == "other-worker"


def test_a_scheduled_sync_of_a_switched_off_connection_does_nothing(feed_url):
    connection = ConnectionFactory(import_url=feed_url, enabled=False)
    tasks.sync_connection(connection.pk)
    assert not SyncRun.objects.exists()


def test_a_sync_task_for_a_deleted_connection_exits_quietly():
    assert tasks.sync_connection(987654) is None


def test_only_a_lost_database_makes_the_task_retry_and_never_beyond_the_visibility_timeout(settings):
    task = tasks.sync_connection
    assert task.autoretry_for == (OperationalError, tasks.InterfaceError)
    assert task.retry_backoff_max < settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    assert task.max_retries == 3


def test_the_dispatcher_hands_out_every_due_connection_in_one_pass_however_many():
    ConnectionFactory.create_batch(1100, next_sync_at=None)
    with mock.patch.object(tasks.sync_connection, "delay") as delay:
        assert tasks.dispatch_due_syncs() == 1100
    assert delay.call_count == 1100


def task_signal_sender(*, eager: bool) -> SimpleNamespace:
    return SimpleNamespace(request=SimpleNamespace(is_eager=eager))


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_around_a_worker_task_a_failed_database_connection_is_dropped_and_a_healthy_one_kept(postgres):
    # On PostgreSQL: Django never closes SQLite's in-memory test database.
    db.ensure_connection()
    kept = db.connection
    close_old_database_connections(sender=task_signal_sender(eager=False))
    assert db.connection is kept  # reused by the next task (settings.CELERY_DB_REUSE_MAX)

    db.errors_occurred = True  # a statement failed and the server is gone
    with mock.patch.object(type(connections[DEFAULT_DB_ALIAS]), "is_usable", return_value=False):
        close_old_database_connections(sender=task_signal_sender(eager=True))
        assert db.connection is kept  # an eager task runs inside its caller: left alone
        close_old_database_connections(sender=task_signal_sender(eager=False))
    assert db.connection is None  # the next task opens a new one
