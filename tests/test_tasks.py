from __future__ import annotations

from unittest import mock

import pytest
from django.utils import timezone

from syncs import tasks
from syncs.models import SyncRun
from syncs.scheduling import connection_acquire_lease
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db


def test_the_dispatcher_enqueues_one_task_per_due_connection():
    due = ConnectionFactory.create_batch(2, next_sync_at=None)
    ConnectionFactory(enabled=False)
    with mock.patch.object(tasks.sync_connection, "delay") as delay:
        assert tasks.dispatch_due_syncs() == 2
    assert sorted(call.args[0] for call in delay.call_args_list) == sorted(c.pk for c in due)


def test_a_sync_task_records_a_run_and_releases_its_lease():
    connection = ConnectionFactory()
    tasks.sync_connection(connection.pk)
    run = SyncRun.objects.get(connection=connection)
    assert run.trigger == SyncRun.Trigger.SCHEDULED
    assert run.finished_at is not None
    connection.refresh_from_db()
    assert connection.last_attempt_at is not None
    assert connection.lease_holder == ""
    assert connection.lease_until is None


def test_a_sync_task_does_nothing_while_another_worker_holds_the_connection():
    connection = ConnectionFactory()
    connection_acquire_lease(connection_id=connection.pk, holder="other-worker", now=timezone.now())
    assert tasks.sync_connection(connection.pk) is None
    assert not SyncRun.objects.exists()
    connection.refresh_from_db()
    assert connection.lease_holder == "other-worker"


def test_a_scheduled_sync_of_a_switched_off_connection_does_nothing():
    connection = ConnectionFactory(enabled=False)
    tasks.sync_connection(connection.pk)
    assert not SyncRun.objects.exists()


def test_a_sync_task_for_a_deleted_connection_exits_quietly():
    assert tasks.sync_connection(987654) is None
