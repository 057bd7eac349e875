"""Every statement goes through Django's cursor, where CaptureQueriesContext (and the debug
toolbar, and tests counting queries) can see it: none is sent past it."""

from __future__ import annotations

import ast
import contextlib
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from syncs.engine.lease import connections_claim_due
from syncs.engine.task import connection_sync_leased
from syncs.export_tokens import token_from_nonce
from syncs.models import ExportToken
from tests import feeds
from tests.factories import ConnectionFactory

ROOT = Path(__file__).resolve().parent.parent
# Statements a driver sends on its own for transactions and connection set-up.
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA", "SET ")


def _sources() -> list[Path]:
    return [path for folder in ("syncs", "channelmgr") for path in (ROOT / folder).rglob("*.py") if "migrations" not in path.parts]


def test_no_module_talks_to_the_database_driver_itself():
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            # The pool's class is named in settings for its connection check; no SQL goes that way.
            found += [f"{path.relative_to(ROOT)}: import {name}" for name in names if name.split(".")[0] in ("psycopg", "sqlite3")]
            # The driver's own connection, under Django's wrapper.
            if isinstance(node, ast.Attribute) and node.attr == "connection" and isinstance(node.value, ast.Attribute) and node.value.attr == "connection":
                found += [f"{path.relative_to(ROOT)}:{node.lineno}: .connection.connection"]
    assert found == []


@contextlib.contextmanager
def driver_statements():
    """Every statement the driver sends, seen below Django: SQLite's trace, psycopg's cursors."""
    sent: list[str] = []
    db.ensure_connection()
    if db.vendor == "sqlite":
        db.connection.set_trace_callback(sent.append)
        try:
            yield sent
        finally:
            db.connection.set_trace_callback(None)
        return
    import psycopg

    def recording(original):
        def execute(self, query, *args, **kwargs):
            sent.append(query if isinstance(query, str) else repr(query))
            return original(self, query, *args, **kwargs)

        return execute

    with mock.patch.object(psycopg.Cursor, "execute", recording(psycopg.Cursor.execute)), mock.patch.object(
        psycopg.Cursor, "executemany", recording(psycopg.Cursor.executemany)
    ), mock.patch.object(psycopg.Connection, "execute", recording(psycopg.Connection.execute)):
        yield sent


def _work(settings, httpserver, client) -> None:
    """A claim, a first import, an unchanged poll, a changed one and two export requests."""
    settings.FETCH_ALLOW_LOOPBACK = True
    today = timezone.localdate()
    body = feeds.airbnb(("a", today + timedelta(days=2), today + timedelta(days=5)))
    httpserver.expect_request("/feed.ics").respond_with_data(body, content_type="text/calendar")
    connection = ConnectionFactory(import_url=httpserver.url_for("/feed.ics"), next_sync_at=None)
    (claim,) = connections_claim_due()
    assert connection_sync_leased(connection_id=claim.connection_id, holder=claim.holder).outcome == "ok_changed"
    assert connection_sync_leased(connection_id=connection.pk).outcome == "ok_unchanged"
    httpserver.clear_all_handlers()
    httpserver.expect_request("/feed.ics").respond_with_data(feeds.airbnb(("b", today + timedelta(days=9), today + timedelta(days=11))))
    assert connection_sync_leased(connection_id=connection.pk).outcome == "ok_changed"
    token = ExportToken.objects.get(connection__isnull=True, property=connection.property)
    url = reverse("export-feed", kwargs={"token": token_from_nonce(token.nonce)})
    assert client.get(url).status_code == 200
    assert client.get(url, headers={"If-None-Match": client.get(url)["ETag"]}).status_code == 304


def _compare(sent: list[str], captured: list[dict]) -> None:
    # On SQLite, Django formats each captured statement with a SELECT QUOTE(...) of its own.
    below = [
        sql for sql in sent
        if sql.strip() and not sql.lstrip().upper().startswith((*TRANSACTION_CONTROL, "SELECT QUOTE("))
    ]
    seen = [q["sql"] for q in captured if not q["sql"].lstrip().upper().startswith(TRANSACTION_CONTROL)]
    assert len(below) > 10  # the work above did reach the database
    assert len(below) == len(seen), (below, seen)


@pytest.mark.django_db
def test_every_statement_of_a_sync_and_an_export_is_visible_to_capture_queries(settings, httpserver, client):
    with driver_statements() as sent, CaptureQueriesContext(db) as captured:
        _work(settings, httpserver, client)
    _compare(sent, captured.captured_queries)


@pytest.mark.django_db
def test_every_statement_is_visible_to_capture_queries_on_postgresql(postgres, settings, httpserver, client):
    assert db.vendor == "postgresql"
    with driver_statements() as sent, CaptureQueriesContext(db) as captured:
        _work(settings, httpserver, client)
    _compare(sent, captured.captured_queries)
