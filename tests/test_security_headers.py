"""Headers a browser and a portal see on every answer, and what the logs say of a sync."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest
from django.urls import reverse

from syncs.engine.task import connection_sync_leased
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
    with caplog.at_level(logging.INFO, logger="syncs.engine.task"):
        connection_sync_leased(connection_id=connection.pk)
    lines = [r.getMessage() for r in caplog.records if r.name == "syncs.engine.task"]
    assert len(lines) == 1
    assert lines[0].startswith(f"sync connection={connection.pk} ")
    for field in ("outcome=ok_empty", "duration_ms=", "added=0", "removed=0", "held=0"):
        assert field in lines[0]
    assert "topsecret" not in lines[0]
    assert "/calendar/ical/9.ics" not in lines[0]


def test_every_signed_in_page_is_neither_stored_nor_shared(client):
    from tests.factories import MembershipFactory
    from tests.test_views_access import PUBLIC_ROUTES, account_objects, project_routes, route_kwargs

    owner = MembershipFactory()
    objects = account_objects(owner.account, "My Villa")
    client.force_login(owner.user)
    seen = []
    for name, route in project_routes():
        if name in PUBLIC_ROUTES or name == "logout":
            continue
        response = client.get(reverse(name, kwargs=route_kwargs(route, objects)))
        if response.status_code == 405:
            continue
        seen.append(name)
        assert "no-store" in response.get("Cache-Control", ""), name
    assert {"connection-detail", "connection-fix", "webhooks", "home", "profile", "members"} <= set(seen)
    page = client.get(reverse("connection-detail", args=[objects["connection"].pk]))
    assert page["Cache-Control"] == "private, no-store"


def test_the_export_feed_and_static_files_keep_their_own_caching_for_a_signed_in_person(client):
    from syncs.export_tokens import export_token_ensure, export_url
    from tests.factories import MembershipFactory, PropertyFactory

    owner = MembershipFactory()
    feed = export_url(export_token_ensure(property=PropertyFactory(account=owner.account)))
    client.force_login(owner.user)
    assert client.get(urlsplit(feed).path)["Cache-Control"] == "no-cache"
    static = client.get("/static/css/app.css")
    assert static.status_code == 200 and "no-store" not in static.get("Cache-Control", "")

