"""A real Celery worker process, on Redis and PostgreSQL, syncs what the dispatcher hands out."""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone
from kombu import Queue

from channelmgr.celery import app
from syncs.models import Block, SyncRun
from tests import feeds
from tests.factories import ConnectionFactory
from tests.processes import child_env, database_url, start, stop, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def idle(broker_url: str, name: str) -> bool:
    """Whether the worker ``name`` says it runs no task: each task it took has ended, its
    task_postrun handlers (which give the database connection back) too."""
    with app.connection_for_write(broker_url) as broker:
        active = app.control.inspect(destination=[name], timeout=1, connection=broker).active()
    return active is not None and active.get(name) == []


def test_a_celery_worker_on_redis_imports_the_feeds_the_dispatcher_hands_out(postgres, redis_url, tmp_path, httpserver):
    today = timezone.localdate()
    httpserver.expect_request("/feed.ics").respond_with_data(
        feeds.airbnb(("a", today + timedelta(days=2), today + timedelta(days=5))), content_type="text/calendar"
    )
    connections = ConnectionFactory.create_batch(3, next_sync_at=None, import_url=httpserver.url_for("/feed.ics"))
    queue = f"test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    env = child_env(
        # The worker's database connections carry the queue's name, to be found among the server's.
        DATABASE_URL=f"{database_url()}?application_name={queue}",
        REDIS_URL=redis_url, CELERY_QUEUE=queue, VAR_DIR=str(tmp_path), FETCH_ALLOW_LOOPBACK="1",
    )
    name = f"{queue}@{socket.gethostname()}"
    worker = start(
        ["celery", "-A", "channelmgr", "worker", "--loglevel", "INFO", "--concurrency", "2", "--without-gossip", "--without-mingle",
         "-n", name],
        env,
        log,
    )
    try:
        with app.connection_for_write(redis_url) as broker:
            app.send_task("syncs.tasks.dispatch_due_syncs", connection=broker, queue=queue)
        wait_for(
            lambda: SyncRun.objects.filter(connection__in=connections).count() == 3,
            timeout=60,
            what="three sync runs recorded by the worker",
            log=log,
        )
        # Its connections outlive the tasks: pooled (settings: a worker's DATABASES pool), where
        # Celery's default closed them after each one. Asked once every task has ended.
        wait_for(lambda: idle(redis_url, name), timeout=30, what="the worker idle, done with the three syncs", log=log)
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [queue])
            assert cursor.fetchone()[0] >= 1
    finally:
        stop(worker)
        # kombu deletes only the bindings it knows of, and a fresh connection knows none:
        # declare the queue, then delete it, so nothing is left in the shared Redis.
        with app.connection_for_write(redis_url) as broker:
            leftover = Queue(queue, channel=broker.default_channel)
            leftover.declare()
            leftover.delete()
    assert {run.connection_id for run in SyncRun.objects.all()} == {c.pk for c in connections}
    assert set(SyncRun.objects.values_list("outcome", flat=True)) == {"ok_changed"}
    assert Block.objects.filter(source__in=connections, start_date=today + timedelta(days=2)).count() == 3
