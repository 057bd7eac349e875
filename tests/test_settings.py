"""Settings come from the environment, and a bad value stops start-up naming the variable."""

from __future__ import annotations

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
