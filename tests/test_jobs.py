"""Durable operator actions (syncs.jobs): written first, handed over after the commit, sent again
when lost, run once however often they are sent."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from syncs import jobs, tasks
from syncs.models import Connection, Job, SyncRun
from syncs.sync_requests import connection_request_sync
from tests.factories import ConnectionFactory
from tests.jobs import recorded_hand_over

pytestmark = pytest.mark.django_db


def sent_again(at) -> list[tuple[list, str]]:
    """Run the sweeper at ``at``: the messages it sends (args, task id)."""
    with time_machine.travel(at, tick=False), mock.patch.object(tasks.sync_connection, "apply_async") as send:
        jobs.resend_jobs()
    return [(call.args[0], call.kwargs["task_id"]) for call in send.call_args_list]


def run(message: tuple[list, str]):
    """A worker takes the message (the task runs as Celery's tracer runs it, with its task id)."""
    args, task_id = message
    return tasks.sync_connection.apply(args=args, task_id=task_id).get()


def test_a_sync_now_is_written_with_its_job_and_handed_over_only_after_the_commit(django_capture_on_commit_callbacks):
    connection = ConnectionFactory()
    with recorded_hand_over() as handed:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            connection_request_sync(connection=connection, user=None)
            assert Job.objects.get().args == [connection.pk, "manual"]  # in the action's own transaction
            assert not handed
        for callback in callbacks:  # the commit
            callback()
    assert handed.syncs() == [connection.pk]
    assert handed[0].task_id.startswith(f"job-{Job.objects.get().pk}-")


def test_a_job_whose_transaction_rolls_back_is_neither_kept_nor_sent(django_capture_on_commit_callbacks):
    connection = ConnectionFactory()
    with (
        recorded_hand_over() as handed, django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError), transaction.atomic(),
    ):
        connection_request_sync(connection=connection, user=None)
        raise RuntimeError("the action failed")
    assert not Job.objects.exists() and not handed
    assert Connection.objects.get(pk=connection.pk).sync_requested_at is None


def test_a_second_press_while_the_first_waits_adds_no_second_job():
    connection = ConnectionFactory()
    connection_request_sync(connection=connection, user=None)
    connection_request_sync(connection=connection, user=None)
    assert Job.objects.count() == 1


def test_a_job_the_broker_never_took_is_sent_again_after_a_minute_then_less_and_less_often(settings):
    settings.JOB_RESEND_AFTER_SECONDS = 60
    connection = ConnectionFactory()
    connection_request_sync(connection=connection, user=None)  # the test's transaction never commits: never sent
    job = Job.objects.get()
    assert sent_again(job.created_at + timedelta(seconds=59)) == []
    first = sent_again(job.created_at + timedelta(seconds=60))
    assert [args for args, _ in first] == [[connection.pk, "manual"]]
    # Not again in the next minute: the next sending waits twice as long.
    assert sent_again(job.created_at + timedelta(seconds=179)) == []
    assert len(sent_again(job.created_at + timedelta(seconds=180))) == 1
    job.refresh_from_db()
    assert job.sends == 2


def test_a_job_sent_twice_is_run_once(feed_url):
    connection = ConnectionFactory(import_url=feed_url)
    connection_request_sync(connection=connection, user=None)
    job = Job.objects.get()
    copies = sent_again(job.resend_at) + sent_again(job.resend_at + timedelta(minutes=5))
    assert len(copies) == 2 and copies[0][1] != copies[1][1]  # two messages of one job
    assert run(copies[0]) == "ok_changed"
    assert run(copies[1]) is None  # finished: the copy does nothing
    assert SyncRun.objects.filter(connection=connection).count() == 1
    job.refresh_from_db()
    assert job.finished_at is not None
    assert sent_again(job.resend_at + timedelta(hours=1)) == []


def test_a_sync_now_pressed_while_a_claimed_poll_holds_the_connection_is_put_off_and_served_after_it(feed_url):
    connection = ConnectionFactory(import_url=feed_url)
    Connection.objects.filter(pk=connection.pk).update(next_sync_at=timezone.now() - timedelta(minutes=1))
    with mock.patch.object(tasks.sync_connection, "apply_async") as dispatched:
        tasks.dispatch_due_syncs()
    scheduled = dispatched.call_args.args[0]  # claimed, waiting in the queue
    connection_request_sync(connection=connection, user=None)
    job = Job.objects.get()
    (message,) = sent_again(job.resend_at)

    assert run(message) is None  # the claim holds the connection: put off, not lost
    job.refresh_from_db()
    assert (job.started_at, job.finished_at) == (None, None)
    assert Connection.objects.get(pk=connection.pk).sync_requested_at is not None
    assert tasks.sync_connection(*scheduled) == "ok_changed"

    (again,) = sent_again(job.resend_at)
    assert run(again) == "ok_unchanged"
    assert list(SyncRun.objects.order_by("pk").values_list("trigger", flat=True)) == ["scheduled", "manual"]
    assert Connection.objects.get(pk=connection.pk).sync_requested_at is None
    job.refresh_from_db()
    assert job.finished_at is not None


def test_a_job_whose_worker_died_is_sent_again_when_its_hold_runs_out_and_run_once(feed_url):
    connection = ConnectionFactory(import_url=feed_url)
    connection_request_sync(connection=connection, user=None)
    job = Job.objects.get()
    (first,) = sent_again(job.resend_at)
    assert jobs.job_start(job_id=job.pk, holder=first[1])  # a worker took it, then was killed
    job.refresh_from_db()
    assert sent_again(job.lease_until - timedelta(seconds=1)) == []  # held: not sent while it may run
    (second,) = sent_again(job.lease_until + timedelta(seconds=1))
    with time_machine.travel(job.lease_until + timedelta(seconds=2)):
        assert run(second) == "ok_changed"
    assert run(first) is None  # the dead worker's message, delivered again by the broker
    assert SyncRun.objects.filter(connection=connection).count() == 1


def test_a_job_whose_body_fails_is_sent_again_later(feed_url):
    connection = ConnectionFactory(import_url=feed_url)
    connection_request_sync(connection=connection, user=None)
    job = Job.objects.get()
    (message,) = sent_again(job.resend_at)
    with mock.patch("syncs.engine.task.connection_sync_leased", side_effect=ValueError("a bug")), pytest.raises(ValueError):
        run(message)
    job.refresh_from_db()
    assert (job.started_at, job.finished_at) == (None, None)
    (again,) = sent_again(job.resend_at)
    assert run(again) == "ok_changed"


def test_a_sync_called_outside_a_job_runs_as_before(feed_url):
    connection = ConnectionFactory(import_url=feed_url)
    Connection.objects.filter(pk=connection.pk).update(sync_requested_at=timezone.now())
    assert tasks.sync_connection(connection.pk, SyncRun.Trigger.MANUAL) == "ok_changed"
    assert Connection.objects.get(pk=connection.pk).sync_requested_at is None
