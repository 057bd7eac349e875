"""Durable operator actions, with real processes: gunicorn, a Celery worker and beat, on
PostgreSQL and a Redis of the test's own. Redis is stopped; every kind of bulk action is sent
(each answers at once); Redis comes back empty, as after a crash. Every action is then applied
exactly once, even when its messages are sent again, and each progress page ends with the outcome.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from datetime import timedelta

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.utils import timezone
from werkzeug import Response

from channelmgr.celery import app
from syncs.engine.task import connection_sync_leased
from syncs.models import Account, Block, BulkAction, Connection, Job, Membership, SyncRun
from tests import feeds
from tests.conftest import require
from tests.factories import ConnectionFactory, PropertyFactory
from tests.processes import RedisServer, child_env, start, stop, wait_for
from tests.test_worker import database_url

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
PASSWORD = "a-long-pass-phrase"


@pytest.fixture
def redis_server(tmp_path, free_port):
    server = RedisServer(port=free_port, folder=tmp_path)
    require(None if server.binary else "redis-server is not installed")
    server.start()
    yield server
    server.stop()


class Operator:
    """A signed-in browser without JavaScript: plain form posts, with the CSRF token."""

    def __init__(self, base: str):
        self.base = base
        self.session = requests.Session()

    def get(self, path: str, **headers) -> requests.Response:
        return self.session.get(self.base + path, headers=headers, allow_redirects=False, timeout=10)

    def post(self, path: str, data: dict) -> requests.Response:
        token = self.session.cookies["csrftoken"]
        return self.session.post(self.base + path, data={"csrfmiddlewaretoken": token, **data}, allow_redirects=False, timeout=10)

    def log_in(self, username: str) -> None:
        self.get("/accounts/login/")
        assert self.post("/accounts/login/", {"username": username, "password": PASSWORD}).status_code == 302


def test_every_kind_of_bulk_action_sent_while_redis_is_down_is_applied_once_when_it_is_back(
    postgres, redis_server, tmp_path, httpserver, settings
):
    settings.FETCH_ALLOW_LOOPBACK = True
    today = timezone.localdate()
    stays = [(f"s{n}", today + timedelta(days=3 + 5 * n), today + timedelta(days=5 + 5 * n)) for n in range(4)]
    # Hashed as the web process checks it (the tests' own settings hash with MD5, for speed).
    hasher = PBKDF2PasswordHasher()
    owner = get_user_model().objects.create(username="ana", email="ana@example.com", password=hasher.encode(PASSWORD, hasher.salt()))
    account = Account.objects.create(name="Outage Rentals")
    Membership.objects.create(user=owner, account=account, role=Membership.Role.OWNER)
    prop = PropertyFactory(account=account, name="Casa Azul")
    later = timezone.now() + timedelta(days=1)  # no scheduled sync runs during the test: only what is asked for

    bodies: dict[str, bytes] = {}

    def synced(name: str, **fields) -> Connection:
        bodies[name] = feeds.airbnb(*stays)
        httpserver.expect_request(f"/{name}.ics").respond_with_handler(
            lambda request, name=name: Response(bodies[name], content_type="text/calendar")
        )
        return ConnectionFactory(property=prop, import_url=httpserver.url_for(f"/{name}.ics"), next_sync_at=later, **fields)

    warm = synced("warm")
    sync_now = [synced(f"now{n}") for n in range(3)]
    switch_on = [synced(f"on{n}", paused_at=timezone.now(), pause_reason="timeout") for n in range(2)]
    switch_off = [synced(f"off{n}") for n in range(2)]
    # Held removals: each feed had four stays, then none (the shrink guard holds the removals).
    accept_held = [synced(f"held{n}") for n in range(2)]
    for n, connection in enumerate(accept_held):
        connection_sync_leased(connection_id=connection.pk)
        bodies[f"held{n}"] = feeds.airbnb()
        connection_sync_leased(connection_id=connection.pk)
        connection.refresh_from_db()
        assert connection.held_removals == 4
    Connection.objects.filter(pk__in=[c.pk for c in accept_held]).update(next_sync_at=later)
    runs_before = {c.pk: SyncRun.objects.filter(connection=c).count() for c in accept_held}

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        web_port = sock.getsockname()[1]
    queue = f"durable-{uuid.uuid4().hex[:8]}"
    env = child_env(
        DATABASE_URL=database_url(), REDIS_URL=redis_server.url, CELERY_QUEUE=queue, VAR_DIR=str(tmp_path / "var"),
        FETCH_ALLOW_LOOPBACK="1", DISPATCH_INTERVAL_SECONDS="5", JOB_RESEND_AFTER_SECONDS="4", WORKER_CONCURRENCY="4",
    )
    logs = {name: tmp_path / f"{name}.log" for name in ("web", "worker", "beat")}
    processes = [
        start(["gunicorn", "channelmgr.wsgi", "--bind", f"127.0.0.1:{web_port}", "--workers", "1", "--threads", "4"], env, logs["web"]),
        start(["celery", "-A", "channelmgr", "worker", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
               "--without-heartbeat"], env, logs["worker"]),
        start(["celery", "-A", "channelmgr", "beat", "--loglevel", "INFO", "--schedule", str(tmp_path / "beat-schedule")],
              env, logs["beat"]),
    ]
    try:
        operator = Operator(f"http://127.0.0.1:{web_port}")
        wait_for(lambda: operator.get("/healthz").status_code == 200, timeout=60, what="gunicorn serving", log=logs["web"])
        operator.log_in("ana")
        # With the broker up, the web process hands a job over itself (the sweeper has no part in it).
        assert operator.post("/bulk/", {"action": "sync_now", "connection": [warm.pk]}).status_code == 302
        warmed = BulkAction.objects.get(kind="sync_now")
        wait_for(lambda: operator.get(f"/bulk/{warmed.pk}/progress/", **{"HX-Request": "true"}).status_code == 286,
                 timeout=60, what="the first sync now", log=logs["worker"])
        assert "jobs not handed to the broker" not in logs["web"].read_text()
        assert Job.objects.get(args=[warm.pk, "manual"]).sends == 0
        warmed.delete()

        redis_server.stop()
        sent = {}
        for kind, connections in (("sync_now", sync_now), ("switch_on", switch_on), ("accept_held", accept_held),
                                  ("switch_off", switch_off)):
            started = time.monotonic()
            response = operator.post("/bulk/", {"action": kind, "connection": [c.pk for c in connections], "next": "/timeline/"})
            assert response.status_code == 302, response.text[:2000]
            assert time.monotonic() - started < 3  # the page never waits on the broker
            sent[kind] = BulkAction.objects.get(kind=kind)
        # Switching off needs no worker, nor does its Undo (the button in the next page's message).
        page = operator.get("/timeline/").text
        undo = re.search(r'action="(/undo/\d+/)"', page).group(1)
        assert operator.post(undo, {"next": "/timeline/"}).status_code == 302
        assert "2 syncs switched back on, as they were before." in operator.get("/timeline/").text
        # Written first: every sync asked for is a job, none started.
        assert Job.objects.filter(started_at__isnull=True).count() == len(sync_now) + len(switch_on) + len(accept_held)
        assert Job.objects.filter(finished_at__isnull=False).count() == 1  # the first one
        assert not Connection.objects.filter(pk__in=[c.pk for c in switch_off], enabled=False).exists()

        # The web process could not hand them over (and said so), yet answered at once.
        wait_for(lambda: re.search(r"jobs not handed to the broker count=\d+ error=OperationalError", logs["web"].read_text()), timeout=30,
                 what="the web process giving up on the broker", log=logs["web"])
        redis_server.start()  # back, and empty: whatever was handed over is gone
        for kind in ("sync_now", "switch_on", "accept_held"):
            progress = f"/bulk/{sent[kind].pk}/progress/"
            done = wait_for(
                lambda progress=progress: (r := operator.get(progress, **{"HX-Request": "true"})).status_code == 286 and r,
                timeout=90, what=f"the {kind} progress page ending", log=logs["worker"],
            )
            assert "Done." in done.text
            assert re.search(r"(\d+) of \1 finished", done.text)

        assert "jobs sent again" in logs["beat"].read_text() + logs["worker"].read_text()
        # Each message of a finished job, sent again: it runs nothing.
        with app.connection_for_write(redis_server.url) as broker:
            for job in Job.objects.all():
                app.send_task(job.task, args=job.args, task_id=f"job-{job.pk}-again", connection=broker, queue=queue)
        wait_for(lambda: logs["worker"].read_text().count("reason=finished_or_held") >= Job.objects.count(),
                 timeout=60, what="the copies skipped", log=logs["worker"])
    finally:
        for process in processes:
            stop(process)
        redis_server.stop()

    manual = SyncRun.objects.filter(trigger=SyncRun.Trigger.MANUAL)
    for connection in sync_now + switch_on:
        assert manual.filter(connection=connection).count() == 1, connection
    for connection in accept_held:
        assert SyncRun.objects.filter(connection=connection).count() == runs_before[connection.pk] + 1
        assert not Block.objects.current().filter(source=connection).exists()  # the removals applied
    assert not Connection.objects.filter(pk__in=[c.pk for c in switch_on], paused_at__isnull=False).exists()  # checked: working
    assert Job.objects.filter(finished_at__isnull=True).count() == 0
