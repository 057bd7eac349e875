"""Production, end to end: gunicorn, a Celery worker and beat as real processes, with DEBUG off,
against PostgreSQL and a Redis of the test's own (so that it can stop it). An operator logs in
and adds a connection through the form; beat -> broker -> worker syncs it on schedule; the
export and /healthz answer; then Redis stops, and pages and exports keep working while /healthz
says the broker is down.

Requests carry X-Forwarded-Proto: https, as from the TLS proxy in front of a real deployment.
DEMO_MODE=1 is set only so the worker may fetch the loopback portal (production refuses it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import psycopg
import pytest
import requests
from django.conf import settings
from django.utils import timezone

from tests import feeds
from tests.conftest import require
from tests.processes import ROOT, child_env, start, stop, wait_for

pytestmark = pytest.mark.slow


class Browser:
    """requests with the cookies a browser would keep (Secure cookies, over our 'https')."""

    def __init__(self, base: str):
        self.base = base
        self.cookies: dict[str, str] = {}
        self.headers = {"X-Forwarded-Proto": "https", "Referer": base.replace("http://", "https://") + "/"}

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        response = requests.request(method, self.base + path, headers=self.headers, cookies=self.cookies,
                                    allow_redirects=False, timeout=10, **kwargs)
        self.cookies.update(response.cookies.get_dict())
        return response

    def form_post(self, path: str, data: dict) -> requests.Response:
        return self.request("POST", path, data={"csrfmiddlewaretoken": self.cookies["csrftoken"], **data})


@pytest.fixture
def smoke_database():
    require(None if settings.DATABASES["default"]["ENGINE"].endswith("postgresql") else "DATABASE_URL does not point at PostgreSQL")
    db = settings.DATABASES["default"]
    name = f"channelmgr_smoke_{uuid.uuid4().hex[:8]}"
    admin = {"host": db["HOST"], "port": db["PORT"] or 5432, "user": db["USER"], "password": db["PASSWORD"] or None, "dbname": "postgres"}
    with psycopg.connect(**admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    yield f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"
    with psycopg.connect(**admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def own_redis(tmp_path, free_port, redis_url):
    """A Redis server of our own, so that the test can stop it."""
    binary = shutil.which("redis-server")
    require(None if binary else "redis-server is not installed")
    process = subprocess.Popen([binary, "--port", str(free_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{free_port}/0"
    import redis

    wait_for(lambda: redis.Redis.from_url(url).ping(), timeout=10, what="our Redis answering")
    yield url, process
    process.terminate()
    process.wait(timeout=10)


def run(args: list[str], env: dict) -> str:
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_production_syncs_on_schedule_and_survives_a_broker_outage(tmp_path, smoke_database, own_redis, httpserver):
    redis_url, redis_process = own_redis
    today = timezone.localdate()
    stay = (today + timedelta(days=9), today + timedelta(days=12))
    httpserver.expect_request("/portal/airbnb.ics").respond_with_data(feeds.airbnb(("stay", *stay)), content_type="text/calendar")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = child_env(
        DEBUG="0", SECRET_KEY="smoke-" + uuid.uuid4().hex * 2, SITE_URL=base.replace("http://", "https://"),
        DATABASE_URL=smoke_database, REDIS_URL=redis_url, VAR_DIR=str(tmp_path / "var"), STATIC_ROOT=str(tmp_path / "static"),
        DEMO_MODE="1", DISPATCH_INTERVAL_SECONDS="5", CELERY_QUEUE=f"smoke-{uuid.uuid4().hex[:6]}", WEB_BIND=f"127.0.0.1:{port}",
        BEHIND_HTTPS_PROXY="1",  # the requests below come as through the TLS proxy of a deployment
    )
    python = str(ROOT / ".venv" / "bin" / "python")
    run([python, "manage.py", "migrate", "--noinput"], env)
    run([python, "manage.py", "collectstatic", "--noinput"], env)
    run([python, "manage.py", "shell", "-c",
         "from django.contrib.auth import get_user_model; from syncs.models import Account, Membership; "
         "u = get_user_model().objects.create_user('ana', 'ana@example.com', 'a-long-pass-phrase'); "
         "Membership.objects.create(user=u, account=Account.objects.create(name='Smoke Rentals'), role='owner')"], env)
    logs = {name: tmp_path / f"{name}.log" for name in ("web", "worker", "beat")}
    processes = [
        start(["gunicorn", "channelmgr.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "2"], env, logs["web"]),
        start(["celery", "-A", "channelmgr", "worker", "--loglevel", "INFO", "--concurrency", "2", "--without-gossip", "--without-mingle"], env, logs["worker"]),
        start(["celery", "-A", "channelmgr", "beat", "--loglevel", "INFO", "--schedule", str(tmp_path / "beat-schedule")], env, logs["beat"]),
    ]
    try:
        browser = Browser(base)
        health = wait_for(lambda: browser.request("GET", "/healthz"), timeout=60, what="gunicorn serving /healthz", log=logs["web"])
        assert health.json() == {"status": "ok", "database": "ok", "broker": "ok"}
        # Production settings: plain http is sent to https, and cookies are Secure.
        assert requests.get(base + "/accounts/login/", allow_redirects=False, timeout=5).status_code == 301

        browser.request("GET", "/accounts/login/")
        assert browser.form_post("/accounts/login/", {"username": "ana", "password": "a-long-pass-phrase"}).status_code == 302
        created = browser.form_post("/properties/new/", {"name": "Casa Azul", "timezone": "Europe/Lisbon"})
        assert created.status_code == 302, created.text[:2000]
        property_path = urlsplit(created.headers["Location"]).path
        form_page = browser.request("GET", property_path + "connections/new/").text
        airbnb = re.search(r'<option value="(\d+)"[^>]*>Airbnb</option>', form_page).group(1)
        added = browser.form_post(property_path + "connections/new/", {
            "portal": airbnb, "direction": "two_way", "import_url": httpserver.url_for("/portal/airbnb.ics"),
            "sync_interval_minutes": "30", "export_summary": "Not available",
        })
        assert added.status_code == 302, added.text[:3000]
        connection_path = urlsplit(added.headers["Location"]).path

        synced = wait_for(
            lambda: "Synced: the calendar changed" in (page := browser.request("GET", connection_path).text) and page,
            timeout=90, what="the scheduled sync through beat, Redis and the worker", log=logs["worker"],
        )
        assert "Scheduled" in synced
        property_page = browser.request("GET", property_path).text
        export_path = urlsplit(re.search(r'id="property-export-url"[^>]*value="([^"]+)"', property_page).group(1)).path
        export = browser.request("GET", export_path)
        assert export.status_code == 200
        assert f"DTSTART;VALUE=DATE:{stay[0]:%Y%m%d}" in export.text

        redis_process.terminate()
        redis_process.wait(timeout=10)
        down = browser.request("GET", "/healthz")
        assert (down.status_code, down.json()["broker"], down.json()["database"]) == (503, "down", "ok")
        assert browser.request("GET", "/").status_code == 200
        assert browser.request("GET", connection_path).status_code == 200
        assert browser.request("GET", export_path).status_code == 200
        # The logs never show an export token or the portal's secret path.
        logged = "".join(log.read_text(errors="replace") for log in logs.values())
        assert export_path not in logged
    finally:
        for process in processes:
            stop(process)
