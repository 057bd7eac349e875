"""Password-reset emails: asked for on the web, sent by the worker, limited per address and per
client in the cache every process shares; nothing in the answer, its work or its count says
whether an address has a sign-in."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from syncs import password_reset
from syncs.password_reset import RESET_REQUESTS_PER_CLIENT, password_reset_send
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ana():
    return MembershipFactory(user__username="ana", user__email="ana@example.com").user


@pytest.fixture
def queued(monkeypatch) -> list[tuple]:
    """What the web hands to the worker (the broker is not asked)."""
    tasks: list[tuple] = []
    monkeypatch.setattr(password_reset_send, "apply_async", lambda args, **options: tasks.append(args))
    return tasks


def run_worker(tasks: list[tuple]) -> None:
    while tasks:
        password_reset_send(*tasks.pop(0))


def ask(client, email: str, **headers):
    return client.post(reverse("password_reset"), {"email": email}, **headers)


def test_the_request_only_queues_the_address_and_the_worker_sends_the_link(client, ana, queued, mailoutbox):
    known, unknown = ask(client, "ANA@example.com"), ask(client, "nobody@example.com")
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"] == reverse("password_reset_done")
    assert mailoutbox == []  # nothing is sent while the person waits
    assert queued == [("ANA@example.com",), ("nobody@example.com",)]

    run_worker(queued)
    (email,) = mailoutbox
    assert email.to == ["ana@example.com"]
    assert "/accounts/reset/" in email.body and "1 hour." in email.body


def test_a_known_and_an_unknown_address_cost_the_request_the_same_work(client, ana, queued, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "channelmgr_cache"}}
    from django.core.cache import cache

    works = {}
    for label, address in (("known", "ana@example.com"), ("unknown", "nobody@example.com")):
        cache.clear()  # each asked for the first time, by a client that asked nothing yet
        with CaptureQueriesContext(connection) as queries:
            assert ask(client, address).status_code == 302
        works[label] = [query["sql"] for query in queries.captured_queries]
    assert len(works["known"]) == len(works["unknown"]) > 0
    assert not any("auth_user" in sql for sql in works["known"] + works["unknown"])  # no look-up in the request


@pytest.fixture(params=["database", "redis"])
def shared_cache(request, settings):
    """The cache a deployment uses: its database's table without Redis, Redis with it."""
    if request.param == "database":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "channelmgr_cache"}}

        def stored() -> int:
            with connection.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM channelmgr_cache")
                return cursor.fetchone()[0]
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"reset-test-{uuid.uuid4().hex}"
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url, "KEY_PREFIX": prefix}}
        import redis

        server = redis.Redis.from_url(url)

        def stored() -> int:
            return len(server.keys(f"{prefix}:*"))
    yield stored
    if request.param == "redis":
        for key in server.keys(f"{prefix}:*"):
            server.delete(key)


def test_ten_requests_for_one_address_send_one_email_and_the_client_is_stopped_after_five(
    client, ana, queued, mailoutbox, shared_cache
):
    answers = [ask(client, "ana@example.com").status_code for _ in range(10)]
    assert answers == [302] * RESET_REQUESTS_PER_CLIENT + [429] * (10 - RESET_REQUESTS_PER_CLIENT)
    refused = ask(client, "someone.else@example.com")
    assert refused.status_code == 429
    assert "Too many requests from your network: try again in 15 minutes." in refused.content.decode()
    assert queued == [("ana@example.com",)]
    run_worker(queued)
    assert len(mailoutbox) == 1
    # The counts are in the shared cache (every gunicorn process and worker reads them), not in
    # this process's memory.
    assert shared_cache() >= RESET_REQUESTS_PER_CLIENT + 1


def test_each_client_has_its_own_limit_behind_the_proxy(client, ana, queued, settings):
    settings.PROXY_COUNT = 1
    for n in range(RESET_REQUESTS_PER_CLIENT):
        assert ask(client, f"a{n}@example.com", HTTP_X_FORWARDED_FOR="203.0.113.1").status_code == 302
    assert ask(client, "b@example.com", HTTP_X_FORWARDED_FOR="203.0.113.1").status_code == 429
    assert ask(client, "b@example.com", HTTP_X_FORWARDED_FOR="203.0.113.2").status_code == 302


def test_a_broker_out_of_reach_is_said_and_the_address_can_be_asked_for_again(client, ana, monkeypatch, mailoutbox):
    def refuse(args, **options):
        raise ConnectionRefusedError("no broker")

    monkeypatch.setattr(password_reset_send, "apply_async", refuse)
    page = ask(client, "ana@example.com")
    assert page.status_code == 503
    assert "The email cannot be sent just now. Try again in a few minutes." in page.content.decode()

    tasks: list[tuple] = []
    monkeypatch.setattr(password_reset_send, "apply_async", lambda args, **options: tasks.append(args))
    assert ask(client, "ana@example.com").status_code == 302
    assert tasks == [("ana@example.com",)]


def test_a_cache_out_of_reach_is_said_too(client, ana, queued, monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(password_reset, "rate_limit_take", broken)
    page = ask(client, "ana@example.com")
    assert page.status_code == 503 and queued == []


def test_the_reset_page_says_how_long_the_link_works(client):
    page = client.get(reverse("password_reset")).content.decode()
    assert "It works once, for 1 hour." in page
