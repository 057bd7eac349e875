"""Headers a browser and a portal see on every answer, and what the logs say of a sync."""

from __future__ import annotations

import logging

import pytest
from django.urls import reverse

from syncs.sync import connection_sync_leased
from tests import feeds
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["login", "healthz"])
def test_every_answer_carries_the_security_headers(client, name):
    response = client.get(reverse(name))
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy  # no inline script can run
    assert "frame-ancestors 'none'" in policy
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"


def test_pages_load_htmx_from_our_own_static_files(operator_client):
    page = operator_client.get(reverse("home")).content.decode()
    assert '<script src="/static/django_htmx/htmx-2.min.js" defer></script>' in page
    assert "<script>" not in page  # no inline script: the policy would block it
    assert ' style="' not in page  # no inline style either


def test_each_sync_logs_one_line_with_its_outcome_counts_and_duration_but_never_the_url(httpserver, settings, caplog):
    settings.FETCH_ALLOW_LOOPBACK = True
    httpserver.expect_request("/calendar/ical/9.ics", query_string="s=topsecret").respond_with_data(feeds.airbnb())
    connection = ConnectionFactory(import_url=httpserver.url_for("/calendar/ical/9.ics") + "?s=topsecret")
    with caplog.at_level(logging.INFO, logger="syncs.sync"):
        connection_sync_leased(connection_id=connection.pk)
    lines = [r.getMessage() for r in caplog.records if r.name == "syncs.sync"]
    assert len(lines) == 1
    assert lines[0].startswith(f"sync connection={connection.pk} ")
    for field in ("outcome=ok_empty", "duration_ms=", "added=0", "removed=0", "held=0"):
        assert field in lines[0]
    assert "topsecret" not in lines[0]
    assert "/calendar/ical/9.ics" not in lines[0]
