"""Reverse proxies: nothing a client says about itself is trusted unless the operator declared
the proxies in front of gunicorn; then the log-in lockout counts per real client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import RequestFactory
from django.urls import reverse

from channelmgr.client_ip import client_ip
from tests.factories import MembershipFactory

ROOT = Path(__file__).resolve().parents[1]
PROXY = "10.0.0.2"


def request(forwarded: str | None = None, remote: str = PROXY):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


@pytest.mark.parametrize(
    ("count", "forwarded", "client"),
    [
        (0, "203.0.113.9", PROXY),  # no proxy declared: the header is a client's say-so
        (1, "203.0.113.9", "203.0.113.9"),  # nginx appended the client's address
        (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the client wrote 6.6.6.6 itself
        (2, "6.6.6.6, 203.0.113.9, 10.0.0.9", "203.0.113.9"),  # a load balancer, then nginx
        (2, "203.0.113.9", PROXY),  # fewer entries than proxies: not through them as declared
        (1, "not-an-address", PROXY),
        (1, None, PROXY),
        (1, "2001:db8::1", "2001:db8::1"),
    ],
)
def test_the_client_is_the_address_the_outermost_declared_proxy_saw(settings, count, forwarded, client):
    settings.PROXY_COUNT = count
    assert client_ip(request(forwarded)) == client


@pytest.mark.django_db
def test_behind_a_proxy_one_client_locked_out_does_not_lock_out_the_others(client, settings):
    settings.PROXY_COUNT, settings.AXES_FAILURE_LIMIT = 1, 3
    MembershipFactory(user__username="ana")
    for _ in range(3):
        client.post(reverse("login"), {"username": "ana", "password": "nope"}, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.1")
    locked = client.post(reverse("login"), {"username": "ana", "password": "correct horse battery"},
                         REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.1")
    other = client.post(reverse("login"), {"username": "ana", "password": "correct horse battery"},
                        REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.2")
    assert (locked.status_code, other.status_code) == (429, 302)


@pytest.mark.django_db
def test_without_a_declared_proxy_a_forged_header_does_not_escape_the_lockout(client, settings):
    settings.PROXY_COUNT, settings.AXES_FAILURE_LIMIT = 0, 3
    MembershipFactory(user__username="ana")
    for n in range(3):
        client.post(reverse("login"), {"username": "ana", "password": "nope"}, REMOTE_ADDR="198.51.100.7",
                    HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
    response = client.post(reverse("login"), {"username": "ana", "password": "correct horse battery"},
                           REMOTE_ADDR="198.51.100.7", HTTP_X_FORWARDED_FOR="203.0.113.99")
    assert response.status_code == 429


def production_setting(expression: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY"}}
    clean.update({"DEBUG": "0", "SECRET_KEY": "k" * 64, "SITE_URL": "https://cm.example.com", **env})
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); from django.conf import settings; print({expression})"],
        cwd=ROOT, env={**clean, "DJANGO_SETTINGS_MODULE": "channelmgr.settings"}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_in_production_forwarded_headers_are_off_unless_configured(tmp_path):
    assert production_setting("settings.SECURE_PROXY_SSL_HEADER, settings.PROXY_COUNT", VAR_DIR=str(tmp_path)) == "None 0"
    assert production_setting(
        "settings.SECURE_PROXY_SSL_HEADER, settings.PROXY_COUNT", VAR_DIR=str(tmp_path), BEHIND_HTTPS_PROXY="1", PROXY_COUNT="2"
    ) == "('HTTP_X_FORWARDED_PROTO', 'https') 2"


def test_the_env_example_documents_both_proxy_settings_off():
    text = (ROOT / ".env.example").read_text()
    assert "\nPROXY_COUNT=0\n" in text and "\nBEHIND_HTTPS_PROXY=0\n" in text
