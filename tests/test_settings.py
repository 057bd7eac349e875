"""Settings come from the environment, and a bad value stops start-up naming the variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def start(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY"}}
    clean.update({"VAR_DIR": str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"DEBUG": "0"}, "SECRET_KEY"),
        ({"DATABASE_URL": "nosuchdb://x/y"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"TIME_ZONE": "Mars/Olympus_Mons"}, "TIME_ZONE"),
        ({"SYNC_DEFAULT_INTERVAL_MINUTES": "2"}, "SYNC_DEFAULT_INTERVAL_MINUTES"),
        ({"EMAIL_PORT": "smtp"}, "EMAIL_PORT"),
        ({"SITE_URL": "ftp://example.com"}, "SITE_URL"),
        ({"FETCH_ALLOW_LOOPBACK": "1", "DEBUG": "0", "SECRET_KEY": "x" * 50}, "FETCH_ALLOW_LOOPBACK"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_the_variable(tmp_path, env, named):
    result = start(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert named in result.stderr


def test_with_no_configuration_at_all_it_starts_on_sqlite_under_var(tmp_path):
    result = start(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_settings_start_with_a_secret_key(tmp_path):
    result = start(tmp_path, DEBUG="0", SECRET_KEY="k" * 64, SITE_URL="https://cm.example.com")
    assert result.returncode == 0, result.stderr


def test_production_settings_pass_django_deploy_checks(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY"}}
    env.update(VAR_DIR=str(tmp_path), DEBUG="0", SECRET_KEY="s" * 30 + "Q7-x9#kLm2$vB8^nR4&tW1*zY6@pC3!", SITE_URL="https://cm.example.com")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def settings_of(tmp_path: Path, *names: str, **env: str) -> dict:
    """The values of ``names`` in a process started with ``env`` (and nothing else set)."""
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY"}}
    clean.update({"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "channelmgr.settings", **env})
    script = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {list(names)!r}}}, default=str))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


COOKIE_FLAGS = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "LANGUAGE_COOKIE_SECURE")


def test_behind_https_every_cookie_is_secure_the_language_one_too(tmp_path):
    production = settings_of(tmp_path, *COOKIE_FLAGS, "LANGUAGE_COOKIE_HTTPONLY", "LANGUAGE_COOKIE_SAMESITE",
                             DEBUG="0", SECRET_KEY="k" * 64, SITE_URL="https://cm.example.com")
    assert production == dict.fromkeys(COOKIE_FLAGS, True) | {"LANGUAGE_COOKIE_HTTPONLY": True, "LANGUAGE_COOKIE_SAMESITE": "Lax"}
    # Development over plain http: none (a Secure cookie would never come back).
    assert settings_of(tmp_path, *COOKIE_FLAGS) == dict.fromkeys(COOKIE_FLAGS, False)
    # One switch for all of them.
    assert settings_of(tmp_path, *COOKIE_FLAGS, SESSION_COOKIE_SECURE="1") == dict.fromkeys(COOKIE_FLAGS, True)


def test_the_cache_every_process_shares_is_redis_when_configured_else_a_database_table(tmp_path):
    with_redis = settings_of(tmp_path, "CACHES", REDIS_URL="redis://127.0.0.1:6379/3")["CACHES"]["default"]
    assert (with_redis["BACKEND"], with_redis["LOCATION"]) == (
        "django.core.cache.backends.redis.RedisCache", "redis://127.0.0.1:6379/3"
    )
    alone = settings_of(tmp_path, "CACHES", "CACHE_TABLE")
    assert alone["CACHES"]["default"] == {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": alone["CACHE_TABLE"]}


@pytest.mark.django_db
def test_the_migrations_make_the_cache_table(settings):
    from django.db import connection

    assert settings.CACHE_TABLE in connection.introspection.table_names()
