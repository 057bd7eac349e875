"""Fuzz the API with schemathesis against a real gunicorn and PostgreSQL (``make fuzz-api``).

1. A fresh PostgreSQL database next to DATABASE_URL's, migrated, with two accounts: "Fuzz A"
   (properties, syncs, a paused one, a double booking) and "Fuzz B".
2. An owner's token of A, made with ``create_api_token`` (the token alone on its last line).
3. gunicorn (production settings, DEBUG off, behind an "https proxy") serving the application in
   a process that cannot leave the machine (tests/loopback_wsgi.py).
4. schemathesis: every check (but positive_data_acceptance: a request the schema allows may
   still be refused for what it means), EXAMPLES examples per operation, with the token.
5. Account B is then as it was, and no answer held its property's name.

Exits non-zero when anything fails; prints how long it took.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"

SEED = """
import json
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from syncs.blocks import block_create_manual
from syncs.models import Account, Block, Connection, Membership, Portal, Property
from syncs.sync_state import state_record

users = get_user_model().objects
def account(name, username, place):
    account = Account.objects.create(name=name)
    owner = users.create_user(username, f"{username}@example.com", "a-long-pass-phrase")
    Membership.objects.create(user=owner, account=account, role="owner")
    prop = Property.objects.create(account=account, name=place, timezone="Europe/Lisbon")
    airbnb, booking = Portal.objects.get(slug="airbnb"), Portal.objects.get(slug="booking")
    first = Connection.objects.create(property=prop, portal=airbnb, import_url=f"https://www.airbnb.com/calendar/ical/{username}1.ics")
    paused = Connection.objects.create(property=prop, portal=booking, import_url=f"https://admin.booking.com/{username}.ics",
                                       paused_at=timezone.now(), pause_reason="http_4xx", pause_params={"status": 404},
                                       last_error_code="http_4xx", last_error_params={"status": 404})
    state_record([first.pk, paused.pk])
    start = timezone.localdate() + timedelta(days=20)
    block_create_manual(property=prop, start=start, end=start + timedelta(days=3), kind="reserved", summary="Direct")
    Block.objects.create(property=prop, source=first, kind="reserved", start_date=start, end_date=start + timedelta(days=2), uid="x")
    from syncs.blocks import property_calendar_changed
    property_calendar_changed(property_id=prop.pk)
    Property.objects.create(account=account, name=place + " II", timezone="Europe/Madrid")
    return account

account("Fuzz A", "fuzz_a", "Casa Fuzz")
account("Fuzz B", "fuzz_b", "Secret Villa B")
"""

# Everything of account B a request could change, as one text.
STATE_OF_B = """
import json
from syncs.models import Activity, Block, Connection, ExportToken, Property
rows = [
    list(Property.all_objects.filter(account__name="Fuzz B").order_by("pk").values()),
    list(Connection.all_objects.filter(property__account__name="Fuzz B").order_by("pk").values()),
    list(Block.objects.filter(property__account__name="Fuzz B").order_by("pk").values()),
    list(ExportToken.objects.filter(property__account__name="Fuzz B").order_by("pk").values()),
    Activity.objects.filter(account__name="Fuzz B").count(),
]
print(json.dumps(rows, default=str, sort_keys=True))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database(url: str) -> tuple[str, dict]:
    """A new database on the server of ``url``: its URL, and how to reach the server."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        sys.exit("fuzz-api needs DATABASE_URL to point at PostgreSQL.")
    name = f"channelmgr_fuzz_{uuid.uuid4().hex[:8]}"
    admin = {"host": parts.hostname or "127.0.0.1", "port": parts.port or 5432, "user": parts.username or "postgres",
             "password": parts.password, "dbname": "postgres"}
    with psycopg.connect(**admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}")), {**admin, "name": name}


def drop(admin: dict) -> None:
    name = admin.pop("name")
    with psycopg.connect(**admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(env: dict, *args: str) -> str:
    done = subprocess.run([str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=int(os.environ.get("FUZZ_EXAMPLES", "200")))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--report-dir", default="")
    options = parser.parse_args()
    began = time.monotonic()
    url, admin = database(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/channelmgr"))
    work = Path(tempfile.mkdtemp(prefix="fuzz-api-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(
        DATABASE_URL=url, DEBUG="0", SECRET_KEY="fuzz-" + secrets.token_hex(32), SITE_URL=f"https://127.0.0.1:{port}",
        VAR_DIR=str(work / "var"), STATIC_ROOT=str(work / "static"), BEHIND_HTTPS_PROXY="1",
        API_THROTTLE_RATE="1000000/min", LOG_LEVEL="WARNING", PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    web = None
    try:
        manage(env, "migrate", "--noinput")
        manage(env, "shell", "-c", SEED)
        token = manage(env, "create_api_token", "--user", "fuzz_a", "--account", "Fuzz A", "--name", "fuzzer").strip().splitlines()[-1]
        before = manage(env, "shell", "-c", STATE_OF_B)
        log = (work / "web.log").open("wb")
        web = subprocess.Popen(
            [str(BIN / "gunicorn"), "tests.loopback_wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        headers = {"X-Forwarded-Proto": "https", "Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{base}/api/schema/", headers=headers, timeout=10).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or busy starting
                pass
            if time.monotonic() > deadline:
                sys.exit("gunicorn did not serve /api/schema/:\n" + (work / "web.log").read_text(errors="replace")[-3000:])
            time.sleep(0.2)
        reports = Path(options.report_dir) if options.report_dir else work / "reports"
        command = [
            str(BIN / "schemathesis"), "run", f"{base}/api/schema/?format=json", "--checks", "all",
            # Every check but one: a request the schema allows may still be refused (400) for what
            # it means (a name the account has, an unknown time zone, a link the form refuses).
            "--exclude-checks", "positive_data_acceptance",
            "--max-examples", str(options.examples), "--workers", "2", "--no-color",
            "-H", "X-Forwarded-Proto: https", "-H", f"Authorization: Bearer {token}",
            "--report", "har", "--report-dir", str(reports), "--generation-database", "none",
            *(["--seed", str(options.seed)] if options.seed is not None else []),
        ]
        fuzzed = subprocess.run(command, cwd=work, env=env, timeout=3600)
        after = manage(env, "shell", "-c", STATE_OF_B)
        leaked = any("Secret Villa B" in path.read_text(errors="replace") for path in reports.glob("har-*"))
        problems = []
        if fuzzed.returncode != 0:
            problems.append("schemathesis found failures (above)")
        if before != after:
            problems.append("account B changed")
        if leaked:
            problems.append("an answer held account B's property")
        server_errors = (work / "web.log").read_text(errors="replace")
        if "Internal Server Error" in server_errors:
            at = server_errors.index("Internal Server Error")
            problems.append("the server answered 500:\n" + server_errors[at:at + 4000])
        sys.stdout.write(f"fuzz-api: {options.examples} examples per operation, {time.monotonic() - began:.0f} s in all.\n")
        for problem in problems:
            sys.stderr.write(f"fuzz-api: {problem}\n")
        return 1 if problems else 0
    finally:
        if web is not None and web.poll() is None:
            os.killpg(web.pid, 15)
            web.wait(timeout=15)
        drop(admin)


if __name__ == "__main__":
    sys.exit(main())
