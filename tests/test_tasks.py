from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace
from unittest import mock

import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channelmgr.celery import close_old_database_connections
from syncs import tasks
from syncs.connection_state import connection_switch
from syncs.editing import connection_edit
from syncs.models import Block, Connection, SyncRun
from syncs.scheduling import connection_acquire_lease
from tests import feeds
from tests.factories import ConnectionFactory, PropertyFactory

pytestmark = pytest.mark.django_db


def test_the_dispatcher_enqueues_one_task_per_due_connection():
    due = ConnectionFactory.create_batch(2, next_sync_at=None)
    ConnectionFactory(enabled=False)
    with mock.patch.object(tasks.sync_connection, "apply_async") as send:
        assert tasks.dispatch_due_syncs() == 2
    assert sorted(call.args[0][0] for call in send.call_args_list) == sorted(c.pk for c in due)
    # Ids only: the connection's id, the trigger and the claim's lease holder; nothing of the
    # connection itself (its link is a secret, and its settings may change before it runs).
    for call in send.call_args_list:
        connection_id, trigger, holder = call.args[0]
        assert (trigger, Connection.objects.get(pk=connection_id).lease_holder) == ("scheduled", holder)


def dispatched(connection) -> tuple:
    """Make the connection due and let the dispatcher claim it: the task message it would send."""
    Connection.objects.filter(pk=connection.pk).update(next_sync_at=timezone.now() - timedelta(minutes=1))
    with mock.patch.object(tasks.sync_connection, "apply_async") as send:
        tasks.dispatch_due_syncs()
    (call,) = send.call_args_list
    return call.args[0]


def test_a_dispatched_sync_reads_its_connection_when_it_runs(httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    httpserver.expect_request("/feed.ics").respond_with_data(feeds.airbnb(), headers={"ETag": '"v1"'})
    connection = ConnectionFactory(import_url=httpserver.url_for("/feed.ics"))
    assert tasks.sync_connection(*dispatched(connection)) == "ok_empty"
    httpserver.clear_all_handlers()
    httpserver.expect_request("/feed.ics", headers={"If-None-Match": '"v1"'}).respond_with_data(b"", status=304)
    message = dispatched(connection)

    with CaptureQueriesContext(db) as queries:
        assert tasks.sync_connection(*message) == "ok_unchanged"

    # The lease, one read of the connection (with its property and portal), and the record.
    statements = [q["sql"] for q in queries]
    assert len([sql for sql in statements if sql.startswith("SELECT")]) == 1
    connection.refresh_from_db()
    assert (connection.lease_holder, connection.lease_until, connection.etag) == ("", None, '"v1"')
    assert SyncRun.objects.filter(connection=connection, outcome="ok_unchanged", http_status=304).count() == 1


def edit(connection, **changes) -> None:
    settings_now = {
        "portal": connection.portal, "direction": connection.direction, "import_url": connection.import_url,
        "sync_interval_minutes": connection.sync_interval_minutes, "export_summary": connection.export_summary,
    }
    connection_edit(user=None, connection=connection, **{**settings_now, **changes})


@pytest.mark.parametrize("change", ["export_only", "switch_off"])
def test_a_claimed_sync_does_nothing_when_the_operator_stops_it_before_it_runs(feed_url, change):
    connection = ConnectionFactory(import_url=feed_url)
    message = dispatched(connection)  # in the queue, not yet run
    if change == "export_only":
        edit(connection, direction=Connection.Direction.EXPORT_ONLY)
    else:
        connection_switch(connection=connection, enabled=False)

    assert tasks.sync_connection(*message) is None

    assert not SyncRun.objects.exists() and not Block.objects.exists()
    connection.refresh_from_db()
    assert connection.lease_holder == ""


def test_a_claimed_sync_runs_with_the_link_as_it_is_when_it_runs(feed_url, httpserver):
    connection = ConnectionFactory(import_url=feed_url + "?old")
    message = dispatched(connection)
    edit(connection, import_url=feed_url)
    assert tasks.sync_connection(*message) == "ok_changed"
    assert Block.objects.filter(source=connection).count() == 1


def test_a_claimed_sync_goes_ahead_when_only_the_export_summary_changed(feed_url):
    connection = ConnectionFactory(import_url=feed_url)
    message = dispatched(connection)
    edit(connection, export_summary="Closed")
    assert tasks.sync_connection(*message) == "ok_changed"


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


def test_a_retried_scheduled_task_takes_its_claim_again(feed_url):
    connection = ConnectionFactory(import_url=feed_url)
    message = dispatched(connection)
    # A first attempt that took the lease and then lost the database keeps the claim's lease.
    assert connection_acquire_lease(connection_id=connection.pk, holder=message[2])
    assert tasks.sync_connection(*message) == "ok_changed"


def test_the_dispatcher_hands_out_every_due_connection_in_one_pass_however_many():
    # More than two batches (tasks.DISPATCH_BATCH), on one property: what is counted is the claims.
    prop = PropertyFactory()
    Connection.objects.bulk_create(ConnectionFactory.build_batch(1100, property=prop, next_sync_at=None))
    with mock.patch.object(tasks.sync_connection, "apply_async") as send:
        assert tasks.dispatch_due_syncs() == 1100
    assert send.call_count == 1100


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


def test_a_claimed_poll_whose_lease_is_still_held_takes_no_lease_again(feed_url):
    connection = ConnectionFactory(import_url=feed_url)
    message = dispatched(connection)

    with CaptureQueriesContext(db) as queries:
        assert tasks.sync_connection(*message) == "ok_changed"

    updates = [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and '"syncs_connection"' in q["sql"]]
    # No write before the fetch: the only update of the row is the record, which gives it back.
    assert len(updates) == 1 and "last_success_at" in updates[0]
    connection.refresh_from_db()
    assert (connection.lease_holder, connection.lease_until) == ("", None)


def test_a_claimed_poll_that_waited_past_half_its_lease_takes_it_again_and_syncs(feed_url, settings):
    connection = ConnectionFactory(import_url=feed_url)
    message = dispatched(connection)
    left = timedelta(seconds=settings.SYNC_LEASE_SECONDS / 2 - 5)
    Connection.objects.filter(pk=connection.pk).update(lease_until=timezone.now() + left)

    assert tasks.sync_connection(*message) == "ok_changed"
    assert SyncRun.objects.filter(connection=connection).count() == 1


def test_a_claimed_poll_whose_expired_lease_someone_else_took_does_nothing(feed_url):
    connection = ConnectionFactory(import_url=feed_url)
    message = dispatched(connection)
    Connection.objects.filter(pk=connection.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert connection_acquire_lease(connection_id=connection.pk, holder="sync-now")

    assert tasks.sync_connection(*message) is None
    assert not SyncRun.objects.filter(connection=connection).exists()
    assert Connection.objects.get(pk=connection.pk).lease_holder == "sync-now"
