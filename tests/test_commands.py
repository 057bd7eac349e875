from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from syncs.models import Block, SyncRun
from tests import feeds
from tests.factories import ConnectionFactory
from tests.processes import ROOT, child_env

EXPECTED_KEYS = {"ok", "error", "prodid", "portal", "events", "skipped", "warnings"}


def inspect(*args: str) -> tuple[int, dict]:
    out = StringIO()
    try:
        call_command("inspect_feed", *args, "--json", stdout=out)
        status = 0
    except SystemExit as exc:
        status = exc.code
    return status, json.loads(out.getvalue())


def test_inspect_feed_prints_the_nights_of_a_file_as_json(tmp_path):
    path = tmp_path / "airbnb.ics"
    path.write_bytes(feeds.airbnb(("a", date(2027, 3, 1), date(2027, 3, 4)), blocked=(("n", date(2027, 4, 1), date(2027, 5, 1)),)))
    status, report = inspect(str(path))
    assert status == 0
    assert set(report) == EXPECTED_KEYS
    assert report["ok"] is True
    assert report["error"] is None
    assert report["portal"] == "airbnb"
    assert "Airbnb Inc" in report["prodid"]
    assert report["events"] == [
        {"uid": "a@airbnb.com", "start": "2027-03-01", "end": "2027-03-04", "kind": "reserved", "summary": "Reserved"},
        {"uid": "n@airbnb.com", "start": "2027-04-01", "end": "2027-05-01", "kind": "blocked", "summary": "Airbnb (Not available)"},
    ]


def test_inspect_feed_reads_labels_as_the_portal_given(tmp_path):
    path = tmp_path / "vrbo.ics"
    path.write_bytes(feeds.vrbo(("h1", date(2027, 3, 1), date(2027, 3, 4), "Provisoire")))
    _, report = inspect(str(path), "--portal", "vrbo")
    assert report["portal"] == "vrbo"
    assert report["events"][0]["kind"] == "tentative"


def test_inspect_feed_reports_a_login_page_as_not_a_calendar_with_exit_status_2(tmp_path):
    path = tmp_path / "login.html"
    path.write_bytes(feeds.LOGIN_PAGE)
    status, report = inspect(str(path))
    assert status == 2
    assert report["ok"] is False
    assert report["error"]["code"] == "not_ical"
    assert report["error"]["message"]
    assert report["events"] == []


@pytest.mark.django_db
def test_inspect_feed_fetches_a_url_through_the_engine(httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    httpserver.expect_request("/x.ics").respond_with_data(b"gone", status=404)
    status, report = inspect(httpserver.url_for("/x.ics"))
    assert status == 2
    assert report["error"]["code"] == "http_4xx"
    assert "404" in report["error"]["message"]


def test_inspect_feed_is_a_real_command_with_an_exit_status(tmp_path):
    path = tmp_path / "empty.ics"
    path.write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "manage.py", "inspect_feed", str(path), "--json"],
        cwd=ROOT, env=child_env(VAR_DIR=str(tmp_path)), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["events"] == []


@pytest.mark.django_db
def test_sync_connections_runs_the_engine_inline_and_prints_one_line_each(httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    today = timezone.localdate()
    httpserver.expect_request("/ok.ics").respond_with_data(feeds.airbnb(("a", today + timedelta(days=2), today + timedelta(days=4))))
    httpserver.expect_request("/gone.ics").respond_with_data(b"", status=404)
    ok = ConnectionFactory(import_url=httpserver.url_for("/ok.ics"))
    gone = ConnectionFactory(import_url=httpserver.url_for("/gone.ics"))
    out = StringIO()
    call_command("sync_connections", "--connection", str(ok.pk), str(gone.pk), stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{ok.pk} ") and "ok_changed +1 ~0 -0" in lines[0]
    assert "http_4xx" in lines[1] and "no longer exists" in lines[1]
    assert Block.objects.filter(source=ok).count() == 1
    assert set(SyncRun.objects.values_list("trigger", flat=True)) == {"manual"}


@pytest.mark.django_db
def test_sync_connections_due_syncs_only_what_is_due(httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    httpserver.expect_request("/ok.ics").respond_with_data(feeds.booking())
    due = ConnectionFactory(import_url=httpserver.url_for("/ok.ics"), next_sync_at=None)
    ConnectionFactory(import_url=httpserver.url_for("/ok.ics"), next_sync_at=timezone.now() + timedelta(hours=1))
    out = StringIO()
    call_command("sync_connections", "--due", stdout=out)
    assert out.getvalue().startswith(f"{due.pk} ")
    assert "ok_empty" in out.getvalue()
    assert SyncRun.objects.get().connection == due


@pytest.mark.django_db
def test_sync_connections_refuses_an_unknown_connection():
    with pytest.raises(CommandError, match="No connection with id 999"):
        call_command("sync_connections", "--connection", "999")
