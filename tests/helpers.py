"""Small helpers many test modules share: days counted from the tests' clock, a local portal's
answer, and the dispatcher's claim of one connection."""

from __future__ import annotations

from datetime import date, timedelta
from unittest import mock

from django.utils import timezone

from syncs import tasks
from syncs.models import Connection
from tests.conftest import NOW

TODAY = NOW.date()
# Where the local portal serves a sync's feed, unless a test says otherwise.
FEED_PATH = "/calendar/ical/4242.ics"


def d(days: int) -> date:
    """The day ``days`` after the tests' today (before it, if negative)."""
    return TODAY + timedelta(days=days)


def answer(server, body: bytes = b"", status: int = 200, *, path: str = FEED_PATH, headers: dict | None = None,
           content_type: str = "text/calendar") -> None:
    """Make the local portal ``server`` (pytest-httpserver) answer ``path`` with this, from now on
    and only this."""
    server.clear_all_handlers()
    server.expect_request(path).respond_with_data(body, status=status, headers=headers or {}, content_type=content_type)


def dispatched(connection) -> tuple:
    """Make the connection due and let the dispatcher claim it: the task message it would send."""
    Connection.objects.filter(pk=connection.pk).update(next_sync_at=timezone.now() - timedelta(minutes=1))
    with mock.patch.object(tasks.sync_connection, "apply_async") as send:
        tasks.dispatch_due_syncs()
    (call,) = send.call_args_list
    return call.args[0]
