"""No secret in any log: the tokens of export feeds, invitations, first-password and reset links
(and ?token= style parameters, for API tokens to come) never reach gunicorn's access or error
log, Django's request log, Celery's or our own lines. A real gunicorn (two workers, production
settings) is visited at each such URL, and its whole output is searched for the tokens."""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import uuid

import pytest
import requests

from channelmgr.log_masking import MASK, MaskSecretsFilter, mask
from tests.processes import ROOT, VENV_BIN, child_env, start, stop, wait_for

SETUP = """
import hashlib, json
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from syncs.export_tokens import export_token_ensure, export_url
from syncs.members import first_password_url
from syncs.models import Account, Invitation, Membership, Property

users = get_user_model().objects
ana = users.create_user("ana", "ana@example.com", "a-long-pass-phrase")
account = Account.objects.create(name="Log Rentals")
Membership.objects.create(user=ana, account=account, role="owner")
olga = users.create_user("olga", "olga@example.com", None)
Membership.objects.create(user=olga, account=account, role="viewer")
Invitation.objects.create(account=account, email="vera@example.com", token_hash=hashlib.sha256(INVITATION.encode()).hexdigest(),
                          expires_at=timezone.now() + timedelta(days=7))
prop = Property.objects.create(account=account, name="Casa Azul", timezone="Europe/Lisbon")
print(json.dumps({
    "export": export_url(export_token_ensure(property=prop)),
    "first_password": first_password_url(olga),
    "reset": "/accounts/reset/%s/%s/" % (urlsafe_base64_encode(force_bytes(ana.pk)), default_token_generator.make_token(ana)),
}))
"""


class Browser:
    """requests as through the TLS proxy of a deployment, keeping the cookies a browser would
    (requests' own jar would not send Secure cookies back over the loopback's http)."""

    def __init__(self, base: str):
        self.base = base
        self.cookies: dict[str, str] = {}
        self.set_cookies: dict = {}  # every cookie the server set, with its flags
        self.headers = {"X-Forwarded-Proto": "https", "Referer": base.replace("http://", "https://") + "/"}

    def request(self, method: str, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        response = requests.request(method, self.base + path, headers={**self.headers, **(headers or {})},
                                    cookies=self.cookies, allow_redirects=False, timeout=10, **kwargs)
        self.cookies.update(response.cookies.get_dict())
        self.set_cookies.update({cookie.name: cookie for cookie in response.cookies})
        return response

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, data: dict, **kwargs) -> requests.Response:
        return self.request("POST", path, data={"csrfmiddlewaretoken": self.cookies.get("csrftoken", ""), **data}, **kwargs)


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


@pytest.mark.slow
def test_a_real_gunicorn_logs_no_token_of_any_link(tmp_path, free_port):
    base = f"http://127.0.0.1:{free_port}"
    invitation = secrets.token_urlsafe(32)
    env = child_env(
        DEBUG="0", SECRET_KEY="logs-" + uuid.uuid4().hex * 2, SITE_URL=base.replace("http://", "https://"),
        VAR_DIR=str(tmp_path / "var"), STATIC_ROOT=str(tmp_path / "static"), BEHIND_HTTPS_PROXY="1", LOG_LEVEL="INFO",
    )
    python = str(VENV_BIN / "python")
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        subprocess.run([python, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    made = subprocess.run([python, "manage.py", "shell", "-c", f"INVITATION = {invitation!r}\n{SETUP}"],
                          cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=120)
    links = json.loads(made.stdout.strip().splitlines()[-1])
    export, first_password, reset = path_of(links["export"]), path_of(links["first_password"]), links["reset"]
    tokens = {
        "export": export.split("/")[-1].removesuffix(".ics"),
        "invitation": invitation,
        "first password": first_password.rstrip("/").split("/")[-1],
        "reset": reset.rstrip("/").split("/")[-1],
        "api token": "api-" + secrets.token_hex(16),
    }
    log = tmp_path / "web.log"
    web = start([str(VENV_BIN / "gunicorn"), "channelmgr.wsgi", "--bind", f"127.0.0.1:{free_port}", "--workers", "2"], env, log)
    try:
        browser = Browser(base)
        wait_for(lambda: browser.get("/healthz").status_code == 200, timeout=60, what="gunicorn serving /healthz", log=log)
        invited = f"/invitations/{invitation}/"
        assert browser.get(export).status_code == 200
        assert browser.get(invited).status_code == 200
        assert browser.get(first_password).status_code == 302  # to .../set-password/, as a reset
        assert browser.get(reset).status_code == 302  # to .../set-password/, which holds no token
        assert browser.get(f"/invitations/{tokens['api token']}x/").status_code == 404  # Django logs "Not Found: <path>"
        assert browser.get(f"/healthz?token={tokens['api token']}").status_code == 200
        # The links also travel in next= parameters (plain and percent-encoded) and Referers.
        browser.get(f"/accounts/login/?next={invited}")
        browser.get(f"/accounts/login/?next={invited.replace('/', '%2F')}")
        browser.get("/static/css/app.css", headers={"Referer": f"https://127.0.0.1:{free_port}{invited}"})

        # The cookies, signed in and not: all Secure; the language one too.
        browser.get("/accounts/login/")
        assert browser.post("/accounts/login/", {"username": "ana", "password": "a-long-pass-phrase"}).status_code == 302
        chosen = browser.post("/i18n/setlang/", {"language": "pt", "next": "/"})
        cookies = browser.set_cookies
        assert {"sessionid", "csrftoken", "django_language"} <= set(cookies)
        assert all(cookie.secure for cookie in cookies.values()), {c.name: c.secure for c in cookies.values()}
        assert "HttpOnly" in chosen.headers["Set-Cookie"] and "Secure" in chosen.headers["Set-Cookie"]
        assert browser.get("/").headers["Cache-Control"] == "private, no-store"
        assert browser.get(export).headers["Cache-Control"] == "no-cache"
    finally:
        stop(web)

    logged = log.read_text(errors="replace")
    leaked = [what for what, token in tokens.items() if token in logged]
    assert leaked == [], logged[-4000:]
    # The lines are there, masked: the requests were logged, not dropped.
    for shown in (f"/ical/{MASK}", f"/invitations/{MASK}", "/accounts/welcome/", "/accounts/reset/", f"token={MASK}",
                  f"Not Found: /invitations/{MASK}"):
        assert shown in logged, shown


@pytest.mark.slow
def test_ten_reset_requests_through_two_gunicorn_processes_send_one_email(tmp_path, free_port):
    """The limits are counted in the shared cache (here the database's table): two gunicorn
    processes count together, where each used to count for itself."""
    base = f"http://127.0.0.1:{free_port}"
    env = child_env(
        DEBUG="0", SECRET_KEY="reset-" + uuid.uuid4().hex * 2, SITE_URL=base.replace("http://", "https://"),
        VAR_DIR=str(tmp_path / "var"), STATIC_ROOT=str(tmp_path / "static"), BEHIND_HTTPS_PROXY="1",
    )
    python = str(VENV_BIN / "python")
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        subprocess.run([python, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    log = tmp_path / "web.log"
    web = start([str(VENV_BIN / "gunicorn"), "channelmgr.wsgi", "--bind", f"127.0.0.1:{free_port}", "--workers", "2"], env, log)
    try:
        wait_for(lambda: requests.get(base + "/healthz", timeout=5).status_code in (200, 503), timeout=60, what="gunicorn", log=log)
        answers = []
        for _ in range(10):
            browser = Browser(base)  # a new connection each time: the kernel spreads them over both processes
            browser.get("/accounts/password/reset/")
            answer = browser.post("/accounts/password/reset/", {"email": "ana@example.com"})
            answers.append(answer.status_code)
    finally:
        stop(web)
    assert answers == [302] * 5 + [429] * 5
    queued = [json.loads(path.read_text()) for path in (tmp_path / "var" / "broker" / "queue").glob("*.msg")]
    resets = [message for message in queued if message["headers"]["task"] == "syncs.password_reset.password_reset_send"]
    assert len(resets) == 1


def test_celerys_logging_keeps_the_filter_and_masks_a_worker_line(tmp_path):
    """The worker sets up its logging on top of Django's (it does not take the root logger over)
    and gives its task logger handlers of its own: a line a task or the worker logs goes through
    the same filter."""
    token = secrets.token_urlsafe(32)
    script = (
        "import logging, django; django.setup()\n"
        "from channelmgr.celery import app\n"
        "app.log.setup(loglevel='INFO')\n"
        "from celery.utils.log import get_task_logger\n"
        f"get_task_logger('syncs.tasks').warning('sent %s', 'https://x/invitations/{token}/')\n"
        f"logging.getLogger('celery.worker').warning('GET /accounts/reset/MQ/{token}/')\n"
    )
    done = subprocess.run([str(VENV_BIN / "python"), "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=child_env(VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="channelmgr.settings"))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert token not in output
    assert f"/invitations/{MASK}/" in output and f"/accounts/reset/MQ/{MASK}/" in output


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("GET /ical/AbC_dEf-123456789.ics HTTP/1.1", "AbC_dEf-123456789"),
        ("GET /invitations/Zx9_kq-7T2mPpQrS/ HTTP/1.1", "Zx9_kq-7T2mPpQrS"),
        ("GET /accounts/welcome/MTI/cd1k2a-0a1b2c3d4e5f60718293a4b5c6d7e8f9/ HTTP/1.1", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
        ("GET /accounts/reset/MTI/cd1k2a-0a1b2c3d4e5f60718293a4b5c6d7e8f9/ HTTP/1.1", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
        ("GET /accounts/login/?next=%2Finvitations%2FZx9_kq-7T2mPpQrS%2F HTTP/1.1", "Zx9_kq-7T2mPpQrS"),
        ("GET /api/v1/syncs?access_token=tok_live_1234567890 HTTP/1.1", "tok_live_1234567890"),
        ("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.abc", "eyJhbGciOi.JIUzI1NiJ9.abc"),
        ("Authorization: Bearer cm_Q2xhdWRlIHdhcyBoZXJlIDop-AbCdEfGhIjKlMn_op", "Q2xhdWRlIHdhcyBoZXJlIDop-AbCdEfGhIjKlMn_op"),
        ("token cm_Q2xhdWRlIHdhcyBoZXJlIDop-AbCdEfGhIjKlMn_op pasted in a note", "Q2xhdWRlIHdhcyBoZXJlIDop-AbCdEfGhIjKlMn_op"),
    ],
)
def test_every_kind_of_token_is_masked(line, secret):
    assert secret not in mask(line)
    assert MASK in mask(line)


def test_what_is_not_a_secret_stays_readable():
    for line in ("POST /invitations/12/resend/ HTTP/1.1", "GET /accounts/reset/MTI/set-password/ HTTP/1.1",
                 "GET /connections/12/export.ics HTTP/1.1", "GET /timeline/?from=2027-01-10 HTTP/1.1"):
        assert mask(line) == line


def test_the_filter_rewrites_a_record_with_its_arguments():
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found: %s", ("/ical/AbCdEfGh12345.ics",), None)
    assert MaskSecretsFilter().filter(record) is True
    assert record.getMessage() == f"Not Found: /ical/{MASK}.ics"



def test_a_traceback_that_quotes_a_link_is_masked_too():
    try:
        raise ValueError("cannot serve /invitations/Zx9_kq-7T2mPpQrS/")
    except ValueError:
        import sys

        record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Internal Server Error", (), sys.exc_info())
    MaskSecretsFilter().filter(record)
    written = logging.Formatter().format(record)
    assert "Zx9_kq-7T2mPpQrS" not in written and f"/invitations/{MASK}/" in written
