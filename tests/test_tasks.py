from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace
from unittest import mock

import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channelmgr.celery import app, close_old_database_connections
from syncs import tasks
from syncs.connection_state import connection_switch
from syncs.editing import connection_edit
from syncs.engine.lease import connection_acquire_lease
from syncs.models import Block, Connection, SyncRun
from tests import feeds
from tests.factories import ConnectionFactory, PropertyFactory
from tests.helpers import dispatched

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


def test_a_link_changed_after_the_claim_is_read_by_the_next_dispatch_at_once(feed_url, httpserver):
    connection = ConnectionFactory(import_url=feed_url + "?old")
    message = dispatched(connection)
    edit(connection, import_url=feed_url)
    # The change gave the claim's lease back and made the sync due now: the claim's task does
    # nothing (it keeps only its own lease), the next dispatcher's claim reads the new link.
    assert tasks.sync_connection(*message) is None
    assert Connection.objects.get(pk=connection.pk).next_sync_at <= timezone.now()
    assert tasks.sync_connection(*dispatched(connection)) == "ok_changed"
    assert Block.objects.filter(source=connection).count() == 1
    assert SyncRun.objects.filter(connection=connection).count() == 1


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
    # No write before the fetch: the first update of the row is the record, which gives it back;
    # after it, only its state is decided (syncs.sync_state.state_record).
    assert "last_success_at" in updates[0] and '"lease_holder"' in updates[0]
    assert all('SET "state"' in later and '"lease_holder"' not in later for later in updates[1:])
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


def test_a_lost_workers_task_writes_nothing_once_its_claim_was_taken_over(feed_url, settings):
    connection = ConnectionFactory(import_url=feed_url)
    lost = dispatched(connection)
    # The worker holding the claim is lost; its lease expires; the next dispatcher that finds no
    # sync waiting in the broker takes over.
    Connection.objects.filter(pk=connection.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    with mock.patch.object(tasks.sync_connection, "apply_async") as send, mock.patch.object(tasks, "_syncs_waiting", return_value=0):
        assert tasks.dispatch_due_syncs() == 1
    (taken,) = [call.args[0] for call in send.call_args_list]
    assert taken[2] != lost[2]
    # The lost task, late, while the take-over holds the lease, and after it served the turn
    # (the message delivered again after the broker's visibility timeout).
    assert tasks.sync_connection(*lost) is None
    assert tasks.sync_connection(*taken) == "ok_changed"
    assert tasks.sync_connection(*lost) is None
    assert tasks.sync_connection(*taken) is None  # its own message delivered twice: served once
    assert SyncRun.objects.filter(connection=connection).count() == 1
    assert Connection.objects.get(pk=connection.pk).lease_holder == ""


def test_a_claim_whose_database_failed_keeps_its_lease_for_its_retry(feed_url):
    connection = ConnectionFactory(import_url=feed_url)
    message = dispatched(connection)
    with mock.patch("syncs.engine.task.connection_record", side_effect=OperationalError("server closed the connection")), \
            pytest.raises(OperationalError):
        tasks.sync_connection.run(*message)
    assert Connection.objects.get(pk=connection.pk).lease_holder == message[2]
    assert not SyncRun.objects.filter(connection=connection).exists()
    assert tasks.sync_connection(*message) == "ok_changed"


@pytest.mark.parametrize("waiting", [5, None])
def test_an_expired_claim_is_not_taken_over_while_syncs_wait_in_the_broker_or_it_cannot_say(waiting):
    connection = ConnectionFactory(next_sync_at=None)
    dispatched(connection)
    # Its message may be waiting behind a backlog longer than its lease: sent again, it would
    # only be skipped, and a backlog taken over each lease would grow.
    Connection.objects.filter(pk=connection.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    with mock.patch.object(tasks.sync_connection, "apply_async") as send, \
            mock.patch.object(tasks, "_syncs_waiting", return_value=waiting):
        assert tasks.dispatch_due_syncs() == 0
    assert not send.called


def test_the_dispatcher_counts_the_syncs_waiting_in_the_broker(redis_url, settings):
    settings.CELERY_TASK_DEFAULT_QUEUE = queue = f"waiting-{uuid.uuid4().hex[:8]}"
    broker_url = app.conf.broker_write_url
    app.conf.broker_write_url = redis_url
    try:
        assert tasks._syncs_waiting() == 0  # no such queue yet
        with app.connection_for_write() as connection:
            waiting = connection.SimpleQueue(queue)
            waiting.put({"a": 1})
            waiting.put({"b": 2})
            assert tasks._syncs_waiting() == 2
            waiting.clear()
            assert tasks._syncs_waiting() == 0
            waiting.close()
    finally:
        app.conf.broker_write_url = broker_url
