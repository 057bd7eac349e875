"""Shared fixtures.

When CI sets REQUIRE_SERVICES=1, a missing PostgreSQL or Redis is a failure, never a skip:
the session stops at once, saying which service is missing.
"""

from __future__ import annotations

import os
import socket

import pytest
from django.conf import settings

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def _redis_problem() -> str | None:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        return "REDIS_URL is not set"
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at REDIS_URL does not answer: {exc}"
    return None


def _postgres_problem() -> str | None:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return "DATABASE_URL does not point at PostgreSQL"
    import psycopg

    db = settings.DATABASES["default"]
    try:
        psycopg.connect(
            host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"] or None,
            dbname="postgres", connect_timeout=3,
        ).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at DATABASE_URL does not answer: {exc}"
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    if not REQUIRE_SERVICES:
        return
    problems = [p for p in (_postgres_problem(), _redis_problem()) if p]
    if problems:
        pytest.exit("REQUIRE_SERVICES=1 but: " + "; ".join(problems), returncode=1)


def require(problem: str | None) -> None:
    """Skip a test whose service is missing, or fail it when CI asked for the service."""
    if problem is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(problem)
    pytest.skip(problem)


@pytest.fixture
def redis_url() -> str:
    require(_redis_problem())
    return os.environ["REDIS_URL"]


@pytest.fixture
def postgres() -> None:
    require(_postgres_problem())


@pytest.fixture(autouse=True)
def _fast_hashing_and_plain_static(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def operator(db):
    from tests.factories import MembershipFactory

    return MembershipFactory().user


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client
