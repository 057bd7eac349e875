from __future__ import annotations

import functools
import socket
import time
from unittest import mock

import pytest
from django.db import DatabaseError
from django.urls import reverse

from channelmgr.celery import app

pytestmark = pytest.mark.django_db


def broker_at(url: str):
    return mock.patch.object(app, "connection_for_write", functools.partial(app.connection_for_write, url))


def test_health_is_green_when_the_database_and_broker_answer(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_health_reports_a_stopped_broker(client, free_port):
    with broker_at(f"redis://127.0.0.1:{free_port}/0"):
        response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "database": "ok", "broker": "down"}


def test_health_answers_within_seconds_when_redis_hangs(client, settings, redis_url):
    """A Redis that accepts connections and never answers must not hang the request."""
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        port = blackhole.getsockname()[1]
        started = time.monotonic()
        with broker_at(f"redis://127.0.0.1:{port}/0"):
            response = client.get(reverse("healthz"))
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json()["broker"] == "down"
    # Celery's defaults wait for minutes here; ours give up after about two seconds per try.
    assert elapsed < 10


def test_health_reports_a_database_that_does_not_answer(client):
    with mock.patch("django.db.backends.utils.CursorWrapper.execute", side_effect=DatabaseError("gone")):
        response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.json()["database"] == "down"
