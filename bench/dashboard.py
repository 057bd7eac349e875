"""How fast are the dashboard's pages for a big account? Run by hand, not a test:

    .venv/bin/python bench/dashboard.py [--properties 1000] [--connections-per-property 5] [--runs 20]
        [--double-booked-every 1] [--database-url ...]

Builds an account of N properties with M connections each (some paused, held, switched off,
stale, with blocks and export reads) in a fresh SQLite database under a temporary folder (or
--database-url), then renders each page through Django's test client and reports the median and
p95 time and the number of SQL queries, next to a baseline measured in the same run: the
smallest logged-in page (the activity page of an empty log) through the same middleware.
Then the demo's account (`seed_demo --sync`, as `make run` makes it, made before the big
account) and its overview. Last, the same overviews and the baseline through gunicorn started as
the Procfile starts it (DEBUG off), timed to the response's first byte over a kept-alive
connection, as a browser waits for them.
Targets: the overview's first byte under 150 ms at 1,000 properties and 5,000 connections,
under 50 ms for the demo.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup_django(database_url: str | None) -> None:
    folder = tempfile.mkdtemp(prefix="bench-dashboard-")
    os.environ["VAR_DIR"] = folder
    # The demo's portal feeds, served by seed_demo itself while it imports them.
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        os.environ["DEMO_PORTAL_BASE_URL"] = f"http://127.0.0.1:{free.getsockname()[1]}"
    os.environ["DEMO_MODE"] = "1"
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "channelmgr.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1"  # Django's test client; the demo feeds
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def build_account(properties: int, per_property: int, double_booked_every: int = 1):
    """A realistic big account, written in bulk (signals would make it take minutes). Its syncs'
    stays overlap on every ``double_booked_every``-th property (1: on all of them, a stress case
    for the double-booking search); on the others each sync's stays keep to their own weeks."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from syncs.export_tokens import new_token_fields
    from syncs.models import Account, Block, Connection, ExportToken, Membership, Portal, Property

    now = timezone.now()
    today = timezone.localdate()
    account = Account.objects.create(name="Big Rentals")
    user = get_user_model().objects.create_user("bench", password="bench-password-123")
    Membership.objects.create(user=user, account=account, role=Membership.Role.OWNER)
    portals = list(Portal.objects.filter(slug__in=["airbnb", "booking", "vrbo", "expedia", "google"]))
    props = Property.objects.bulk_create(
        [Property(account=account, name=f"Flat {i:04d}", timezone="Europe/Lisbon") for i in range(properties)]
    )
    connections = []
    for index, prop in enumerate(props):
        for slot in range(per_property):
            n = index * per_property + slot
            connections.append(
                Connection(
                    property=prop, portal=portals[slot % len(portals)], import_url=f"https://example.com/{n}.ics",
                    last_success_at=now - timedelta(minutes=10 if n % 50 else 600),
                    paused_at=now - timedelta(hours=2) if n % 97 == 0 else None,
                    pause_reason="http_4xx" if n % 97 == 0 else "", pause_params={"status": 404} if n % 97 == 0 else {},
                    enabled=n % 61 != 0, held_removals=4 if n % 89 == 0 else 0,
                )
            )
    connections = Connection.objects.bulk_create(connections, batch_size=1000)
    ExportToken.objects.bulk_create(
        [ExportToken(property_id=c.property_id, connection=c, last_read_at=now - timedelta(minutes=30) if c.pk % 7 else None,
                     last_reader="airbnb", **new_token_fields()) for c in connections],
        batch_size=1000,
    )
    ExportToken.objects.bulk_create([ExportToken(property=p, **new_token_fields()) for p in props], batch_size=1000)
    blocks = []
    index_of = {prop.pk: index for index, prop in enumerate(props)}
    for c in connections:
        clashing = index_of[c.property_id] % double_booked_every == 0
        for k in range(4):
            start = today + timedelta(days=7 * k + c.pk % 5 if clashing else 7 * (per_property * k + c.pk % per_property))
            blocks.append(Block(property_id=c.property_id, source=c, uid=f"{c.pk}-{k}", start_date=start,
                                end_date=start + timedelta(days=3), kind="reserved" if k % 2 else "blocked"))
    Block.objects.bulk_create(blocks, batch_size=2000)
    # Written in bulk, their states are decided by the sweep, as beat's would within a minute.
    from syncs.sync_state import state_sweep

    state_sweep()
    # Fresh planner statistics, as autovacuum (PostgreSQL) keeps them in production: without them
    # a bulk-loaded table looks empty and the planner picks nested scans of the whole table.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return user, props[0], connections[0]


def start_as_the_web_process() -> None:
    """Load the application as gunicorn's workers do (channelmgr/wsgi.py: every view imported,
    what is loaded kept out of the garbage collector's full passes), after the account is built."""
    import channelmgr.wsgi  # noqa: F401


def measure(client, url: str, runs: int) -> dict:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    client.get(url)  # warm caches and the template loader
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p95_ms": times[min(len(times) - 1, int(len(times) * 0.95))],
        "queries": len(queries.captured_queries),
    }


def first_bytes(pages: dict[str, tuple[str, str]], runs: int) -> dict[str, float]:
    """The median time to each page's first byte through gunicorn, in ms. ``pages``: name ->
    (URL, session key of the user who asks)."""
    import http.client

    from django.conf import settings

    from bench.capacity import web_start, web_stop

    env = {
        **os.environ, "DEBUG": "0", "STATIC_MANIFEST": "0", "SECURE_SSL_REDIRECT": "0", "ALLOWED_HOSTS": "127.0.0.1",
        "SECRET_KEY": settings.SECRET_KEY,  # the sessions below were signed with it
    }
    log = Path(os.environ["VAR_DIR"]) / "gunicorn.log"
    server, port = web_start(env, log)
    medians = {}
    try:
        http = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for name, (url, session) in pages.items():
            headers = {"Cookie": f"sessionid={session}", "Host": "127.0.0.1"}
            times = []
            for n in range(runs + 4):  # the first requests warm both workers
                started = time.perf_counter()
                http.request("GET", url, headers=headers)
                response = http.getresponse()  # the status line and headers: the first byte
                elapsed = (time.perf_counter() - started) * 1000
                response.read()
                assert response.status == 200, (url, response.status, log.read_text()[-2000:])
                if n >= 4:
                    times.append(elapsed)
            medians[name] = statistics.median(times)
        http.close()
    finally:
        web_stop(server)
    return medians


def session_of(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def account_arguments(description: str) -> argparse.Namespace:
    """The big account's size, the runs per page and the database: this script's and timeline.py's."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--properties", type=int, default=1000)
    parser.add_argument("--connections-per-property", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--double-booked-every", type=int, default=1,
                        help="stays overlap on every N-th property only (default 1: on all, the stress case)")
    parser.add_argument("--database-url", default=None)
    return parser.parse_args()


def main() -> None:
    args = account_arguments(__doc__)
    setup_django(args.database_url)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    # The demo first: its import syncs every due sync of the database, and would otherwise try
    # (and fail) those of the big account too, which would then be measured in another state.
    call_command("seed_demo", sync=True, stdout=io.StringIO())
    started = time.perf_counter()
    user, prop, conn = build_account(args.properties, args.connections_per_property, args.double_booked_every)
    start_as_the_web_process()
    print(f"built {args.properties} properties, {args.properties * args.connections_per_property} connections "
          f"in {time.perf_counter() - started:.1f} s")
    client = Client()
    client.force_login(user)
    baseline = measure(client, reverse("activity"), args.runs)
    pages = {
        "overview": reverse("home"),
        "overview status (htmx poll)": reverse("overview-status"),
        "properties list": reverse("property-list"),
        "property page": reverse("property-detail", args=[prop.pk]),
        "connection page": reverse("connection-detail", args=[conn.pk]),
    }
    print(f"\n{'page':32} {'median ms':>10} {'p95 ms':>8} {'queries':>8} {'x baseline':>11}")
    print(f"{'baseline: empty activity page':32} {baseline['median_ms']:10.1f} {baseline['p95_ms']:8.1f} {baseline['queries']:8d} {1:11.2f}")
    for name, url in pages.items():
        result = measure(client, url, args.runs)
        ratio = result["median_ms"] / baseline["median_ms"]
        verdict = ""
        if name == "overview":
            verdict = "  PASS (<150 ms)" if result["median_ms"] < 150 else "  MISS (target <150 ms)"
        print(f"{name:32} {result['median_ms']:10.1f} {result['p95_ms']:8.1f} {result['queries']:8d} {ratio:11.2f}{verdict}")

    demo = get_user_model().objects.get(username="demo")
    client.force_login(demo)
    result = measure(client, reverse("home"), args.runs)
    verdict = "  PASS (<50 ms)" if result["median_ms"] < 50 else "  MISS (target <50 ms)"
    ratio = result["median_ms"] / baseline["median_ms"]
    print(f"{'demo overview':32} {result['median_ms']:10.1f} {result['p95_ms']:8.1f} {result['queries']:8d} {ratio:11.2f}{verdict}")

    big, small = session_of(user), session_of(demo)
    served = first_bytes({"baseline": (reverse("activity"), big), "overview": (reverse("home"), big),
                          "demo overview": (reverse("home"), small)}, args.runs)
    print("\nthrough gunicorn (Procfile, DEBUG off), first byte: median ms, x baseline")
    targets = {"overview": 150, "demo overview": 50}
    for name, ms in served.items():
        target = targets.get(name)
        verdict = "" if target is None else f"  {'PASS' if ms < target else 'MISS'} (<{target} ms)"
        print(f"{name:32} {ms:10.1f} {ms / served['baseline']:11.2f}{verdict}")


if __name__ == "__main__":
    main()
