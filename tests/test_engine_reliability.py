"""What the engine does when things go wrong around a sync: anything that fails between the fetch
and the commit is a recorded failure, except our own database being unavailable, which is
retried and never held against the sync; portal hosts are asked politely; beat's tasks never
wait behind syncs, and calls to the outside world have a queue of their own; the export answers
503 soon when its database stalls."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from unittest import mock

import psycopg
import psycopg_pool
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings as django_settings
from django.db import DataError, InterfaceError, OperationalError
from django.db import connection as db
from django.urls import reverse
from django.utils import timezone

from channelmgr.celery import app
from syncs.engine import fetch, record
from syncs.engine.task import connection_sync_leased
from syncs.export_tokens import export_token_ensure, token_from_nonce
from syncs.models import Block, PauseEpisode, SyncRun
from syncs.sync_state import SyncState
from syncs.tasks import sync_connection
from tests.factories import BlockFactory, ConnectionFactory, PropertyFactory
from tests.states import sync_state_of

pytestmark = pytest.mark.django_db


def as_django_raises(django_error: type[Exception], driver_error: Exception) -> Exception:
    """``driver_error`` as Django's database layer raises it: its own class, the driver's error
    as the cause (django.db.utils.DatabaseErrorWrapper)."""
    error = django_error(*driver_error.args)
    error.__cause__ = driver_error
    return error


@pytest.mark.parametrize(
    ("where", "error", "code"),
    [
        ("syncs.engine.record.apply_diff", as_django_raises(OperationalError, psycopg.errors.QueryCanceled("canceling statement due to statement timeout")), "database_error"),
        ("syncs.engine.record.apply_diff", as_django_raises(DataError, psycopg.errors.StringDataRightTruncation("value too long")), "database_error"),
        ("syncs.engine.task.parse_feed", SoftTimeLimitExceeded(), "sync_failed"),
        ("syncs.engine.record.diff_blocks", KeyError("a bug"), "sync_failed"),
    ],
)
def test_anything_that_fails_between_the_fetch_and_the_commit_is_a_recorded_failure(feed_url, where, error, code):
    connection = ConnectionFactory(import_url=feed_url)
    with mock.patch(where, side_effect=error):
        runs = [connection_sync_leased(connection_id=connection.pk) for _ in range(3)]
    assert [(run.outcome, run.error_code) for run in runs] == [(code, code)] * 3
    # Nothing of the feed was half-applied, and never an "ok" with nothing in it.
    assert not Block.objects.exists()
    assert not SyncRun.objects.filter(outcome__startswith="ok").exists()
    # Failures count towards the pause like any other: the third in a row pauses.
    connection.refresh_from_db()
    assert sync_state_of(connection) == SyncState.PAUSED
    assert PauseEpisode.objects.get(connection=connection).reason == code
    assert connection.lease_holder == ""


def test_a_database_that_cannot_even_record_the_failure_makes_the_task_retry(feed_url):
    connection = ConnectionFactory(import_url=feed_url)
    lost = OperationalError("server closed the connection unexpectedly")
    with mock.patch.object(record, "apply_diff", side_effect=lost), mock.patch.object(
        record, "failure_updates", side_effect=lost
    ), pytest.raises(OperationalError):
        connection_sync_leased(connection_id=connection.pk)
    assert not Block.objects.exists() and not SyncRun.objects.exists()


@pytest.mark.parametrize(
    "error",
    [
        as_django_raises(OperationalError, psycopg_pool.PoolTimeout("couldn't get a connection after 10.00 sec")),
        as_django_raises(OperationalError, psycopg.errors.TooManyConnections("sorry, too many clients already")),
        as_django_raises(OperationalError, psycopg.errors.CannotConnectNow("the database system is starting up")),
        as_django_raises(OperationalError, psycopg.errors.AdminShutdown("terminating connection due to administrator command")),
        as_django_raises(OperationalError, psycopg.errors.ConnectionFailure("connection failure")),
        as_django_raises(OperationalError, psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")),
        as_django_raises(OperationalError, psycopg.errors.DeadlockDetected("deadlock detected")),
        as_django_raises(OperationalError, __import__("sqlite3").OperationalError("database is locked")),
        as_django_raises(InterfaceError, psycopg.InterfaceError("the connection is closed")),
    ],
    ids=lambda error: type(error.__cause__).__name__,
)
def test_our_database_unavailable_is_retried_and_never_held_against_the_sync(feed_url, error):
    connection = ConnectionFactory(import_url=feed_url, sync_requested_at=timezone.now())
    for trigger in (SyncRun.Trigger.SCHEDULED, SyncRun.Trigger.MANUAL, SyncRun.Trigger.MANUAL):
        with mock.patch.object(record, "apply_diff", side_effect=error), pytest.raises(type(error)) as raised:
            connection_sync_leased(connection_id=connection.pk, trigger=trigger)
        # The task retries what reaches it.
        assert isinstance(raised.value, sync_connection.autoretry_for)
    # No failed run, no step towards a pause, nothing applied; the lease is free for the retry,
    # and the operator's "Sync now" is still requested.
    assert not SyncRun.objects.exists() and not Block.objects.exists()
    connection.refresh_from_db()
    assert connection.consecutive_failures == 0 and connection.paused_at is None and connection.last_error_code == ""
    assert sync_state_of(connection) != SyncState.PAUSED
    assert connection.lease_holder == "" and connection.sync_requested_at is not None
    # Once the database answers again, the retry syncs.
    run = connection_sync_leased(connection_id=connection.pk, trigger=SyncRun.Trigger.MANUAL)
    assert run.outcome == "ok_changed" and Block.objects.count() == 1


def answered(slots: fetch.HostSlots, host: str, times: int) -> None:
    for _ in range(times):
        assert slots.take(host) is None
        slots.give_back(host)


def test_at_most_the_limit_of_fetches_is_in_flight_to_one_host(settings):
    settings.FETCH_PER_HOST_LIMIT = 3
    slots = fetch.HostSlots()
    answered(slots, "a.example", 5)  # a host that answers is given the whole limit
    assert [slots.take("a.example") for _ in range(4)] == [None, None, None, 0.0]  # full: come back later
    assert slots.take("b.example") is None  # another host is not affected
    slots.give_back("a.example")
    assert slots.take("a.example") is None


def test_a_host_we_know_nothing_of_gets_two_fetches_and_one_more_for_each_answer(settings):
    settings.FETCH_PER_HOST_LIMIT = 8
    slots = fetch.HostSlots()
    assert [slots.take("new.example") for _ in range(3)] == [None, None, 0.0]
    slots.give_back("new.example")
    assert [slots.take("new.example") for _ in range(3)] == [None, None, 0.0]


def test_a_host_that_hangs_gets_one_fetch_at_a_time_until_it_answers(settings):
    settings.FETCH_PER_HOST_LIMIT = 8
    slots = fetch.HostSlots()
    answered(slots, "slow.example", 8)
    assert slots.take("slow.example") is None
    slots.give_back("slow.example", error_code="timeout")
    assert slots.take("slow.example") is None
    assert slots.take("slow.example") == 0.0
    slots.give_back("slow.example")  # it answered: back to two, and growing
    assert [slots.take("slow.example") for _ in range(4)] == [None, None, None, 0.0]


def test_a_host_that_asks_us_to_wait_is_not_asked_by_any_sync_before_then(httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    httpserver.expect_request("/a.ics").respond_with_data(b"", status=429, headers={"Retry-After": "600"})
    prop = PropertyFactory()
    first = ConnectionFactory(property=prop, import_url=httpserver.url_for("/a.ics"))
    second = ConnectionFactory(property=prop, import_url=httpserver.url_for("/b.ics"))
    assert connection_sync_leased(connection_id=first.pk).error_code == "rate_limited"

    assert connection_sync_leased(connection_id=second.pk) is None  # not asked: deferred
    second.refresh_from_db()
    assert len(httpserver.log) == 1 and not SyncRun.objects.filter(connection=second).exists()
    assert second.next_sync_at >= timezone.now() + timedelta(seconds=599)
    assert second.lease_holder == ""


def test_a_sync_now_deferred_by_a_busy_host_stays_requested(feed_url, settings):
    settings.FETCH_PER_HOST_LIMIT = 1
    connection = ConnectionFactory(import_url=feed_url, sync_requested_at=timezone.now())
    fetch.SLOTS.take(fetch.host_of(feed_url))  # another sync of the host is in flight
    assert connection_sync_leased(connection_id=connection.pk, trigger=SyncRun.Trigger.MANUAL) is None
    connection.refresh_from_db()
    assert connection.sync_requested_at is not None  # the dispatcher hands it out again


def test_beats_tasks_have_their_own_queue_which_the_worker_serves_first():
    queues = [queue.name for queue in app.amqp.queues.values()]
    beat, syncs = django_settings.CELERY_BEAT_QUEUE, django_settings.CELERY_TASK_DEFAULT_QUEUE
    assert queues.index(beat) < queues.index(syncs)
    scheduled = {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    # Every one of beat's tasks, those added since the dispatcher included: under a backlog of
    # syncs, one left on the syncs' queue expires unrun (the webhooks' scan did).
    assert {"syncs.tasks.dispatch_due_syncs", "syncs.webhooks.scan_alerts", "syncs.digests.send_digests"} <= scheduled
    outgoing = django_settings.CELERY_OUTGOING_QUEUE
    for name in scheduled:
        # Those that call the outside world (the emails) have the outgoing queue, like webhooks.
        expected = outgoing if name in django_settings.OUTGOING_TASKS else beat
        assert app.amqp.router.route({}, name)["queue"].name == expected, name
    assert app.amqp.router.route({}, "syncs.tasks.sync_connection")["queue"].name == syncs
    assert app.amqp.router.route({}, "syncs.webhooks.deliver_webhook")["queue"].name == outgoing
    assert {"syncs.notifications.send_pause_notifications", "syncs.digests.send_digests"} <= set(django_settings.OUTGOING_TASKS)
    # A worker started without -Q (the sync workers) serves beat's queue and the syncs', never
    # the outgoing one, even after routing to it.
    assert outgoing not in [queue.name for queue in app.amqp.queues.values()]
    if django_settings.CELERY_BROKER_URL.startswith("redis"):
        assert django_settings.CELERY_BROKER_TRANSPORT_OPTIONS["queue_order_strategy"] == "priority"


def test_each_shipped_worker_process_keeps_many_syncs_in_flight(settings):
    assert (app.conf.worker_pool, app.conf.worker_concurrency) == ("threads", settings.CELERY_WORKER_CONCURRENCY)
    assert settings.CELERY_WORKER_CONCURRENCY >= 100


def test_the_procfile_and_compose_start_the_same_workers_within_twenty_database_connections():
    root = Path(__file__).resolve().parent.parent
    workers = [line.split(":", 1)[1].split() for line in (root / "Procfile").read_text().splitlines() if line.startswith("worker")]
    compose = (root / "docker-compose.yml").read_text()
    replicas = int(re.search(r"worker:\n(?:.*\n)*?\s+replicas: (\d+)", compose).group(1))
    command = json.loads(re.search(r"worker:\n(?:.*\n)*?\s+command: (\[.*\])", compose).group(1))
    # One process per core of the machine the figures were measured on, each with its own pool.
    assert len(workers) == replicas == 2
    for words in workers:
        assert words[: words.index("-n")] == command
    pool = int(os.environ.get("DATABASE_POOL_SIZE", 8))
    assert len(workers) * pool <= 20


def test_the_procfile_and_compose_start_an_outgoing_worker_on_its_own_queue():
    root = Path(__file__).resolve().parent.parent
    [outgoing] = [line.split(":", 1)[1].split() for line in (root / "Procfile").read_text().splitlines() if line.startswith("outgoing:")]
    compose = (root / "docker-compose.yml").read_text()
    command = json.loads(re.search(r"\n  outgoing:\n(?:.*\n)*?\s+command: (\[(?:.|\n)*?\])", compose).group(1))
    assert outgoing == command
    assert outgoing[outgoing.index("-Q") + 1] == "${CELERY_QUEUE:-celery}.outgoing"
    assert f"{django_settings.CELERY_TASK_DEFAULT_QUEUE}.outgoing" == django_settings.CELERY_OUTGOING_QUEUE
    assert int(outgoing[outgoing.index("--concurrency") + 1]) == 8


def test_the_export_honours_a_weak_etag(client):
    prop = PropertyFactory()
    BlockFactory(property=prop)
    url = reverse("export-feed", kwargs={"token": token_from_nonce(export_token_ensure(property=prop).nonce)})
    etag = client.get(url)["ETag"]
    assert client.get(url, headers={"If-None-Match": f"W/{etag}"}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other", ' + etag}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


class StallingProxy:
    """A TCP proxy on the loopback that forwards to PostgreSQL until told to stall: then it keeps
    every connection open and forwards nothing, as a hung network path or pooler does."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.stalled = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.stalled.is_set():
                    time.sleep(0.05)
                sink.sendall(data)
        except OSError:
            return

    def close(self) -> None:
        self.stalled.clear()
        for sock in [self.listener, *self.sockets]:
            sock.close()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_export_answers_503_soon_when_its_database_stalls(postgres, client):
    prop = PropertyFactory()
    BlockFactory(property=prop)
    url = reverse("export-feed", kwargs={"token": token_from_nonce(export_token_ensure(property=prop).nonce)})
    proxy = StallingProxy((db.settings_dict["HOST"] or "127.0.0.1", int(db.settings_dict["PORT"] or 5432)))
    real_port = db.settings_dict["PORT"]
    db.close()
    db.settings_dict["PORT"] = proxy.port
    try:
        assert client.get(url).status_code == 200  # through the proxy, on a connection kept open
        proxy.stalled.set()
        started = time.monotonic()
        response = client.get(url)
        elapsed = time.monotonic() - started
        assert response.status_code == 503 and response["Retry-After"]
        assert elapsed < 5
    finally:
        db.close()
        db.settings_dict["PORT"] = real_port
        proxy.close()
        # The sessions that came through the proxy are ours, and must not outlive the test.
        with db.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


SHOW_TIMEOUTS = """
import django; django.setup()
from django.db import connection
with connection.cursor() as cursor:
    values = []
    for name in ("statement_timeout", "lock_timeout"):
        cursor.execute("SHOW " + name)
        values.append(cursor.fetchone()[0])
# The client's side of the socket: libpq's own connection options.
client = connection.connection.info.get_parameters()
values += [client.get("tcp_user_timeout"), client.get("keepalives_idle"), client.get("connect_timeout")]
print(" ".join(map(str, values)), bool(connection.settings_dict["OPTIONS"].get("pool")))
"""


@pytest.mark.parametrize(
    ("role", "expected"), [("worker", "30s 10s 15000 30 3 True"), ("web", "10s 0 15000 30 3 False")]
)
def test_each_process_role_bounds_its_waits_on_postgresql(postgres, role, expected):
    import os
    import subprocess
    import sys

    from tests.test_worker import database_url

    env = {**os.environ, "PROCESS_ROLE": role, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "channelmgr.settings"}
    shown = subprocess.run([sys.executable, "-c", SHOW_TIMEOUTS], env=env, capture_output=True, text=True, timeout=60)
    assert shown.stdout.split("\n")[0] == expected, shown.stderr[-2000:]
