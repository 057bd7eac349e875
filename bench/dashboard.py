"""How fast is every page an operator reaches, for a big account? Run by hand, not a test:

    .venv/bin/python bench/dashboard.py [--properties 1000] [--connections-per-property 5] [--runs 20]
        [--double-booked-every 1] [--database-url ...]

Builds three accounts in bulk (10, 1,000 and N properties with M connections each: some paused,
held, switched off, stale, with blocks and export reads) in a fresh SQLite database under a
temporary folder (or --database-url), after the demo's (`seed_demo --sync`, as `make run`
makes it). Then renders every page of the menu and of a property and a sync through Django's
test client, for the 10-property account and for the big one, and reports each page's median
time and number of SQL queries at both sizes, their ratio ("x 10": what the page does per
property or per sync shows there), and the ratio to the smallest signed-in page (the big
account's empty activity log). Last, the main pages through gunicorn started as the Procfile
starts it (DEBUG off), timed to the response's first byte over a kept-alive connection, as a
browser waits for them. Its last line: `overview: <ms> ms at <N> properties / <M> syncs (<database>)`.
Targets (issue 34): at 10,000 properties / 50,000 syncs on PostgreSQL, the overview's first byte
under 100 ms, the timeline under 200 ms with any filter, the properties list under 150 ms, every
other page within 2x of its time at 10 properties, the same number of queries at both sizes; the
1,000-property overview within 3x the empty page.
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
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"  # the demo's alerts, unprinted
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1"  # Django's test client; the demo feeds
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def build_account(properties: int, per_property: int, double_booked_every: int = 1, username: str = "bench"):
    """A realistic big account, written in bulk (signals would make it take minutes). Its syncs'
    stays overlap on every ``double_booked_every``-th property (1: on all of them, a stress case
    for the double-booking search); on the others each sync's stays keep to their own weeks.
    Its owner signs in as ``username``."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from syncs.export_tokens import new_token_fields
    from syncs.models import Account, Block, Connection, ExportToken, Membership, Portal, Property

    now = timezone.now()
    today = timezone.localdate()
    account = Account.objects.create(name=f"Rentals of {username}")
    user = get_user_model().objects.create_user(username, password="bench-password-123")
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
    fresh_statistics()
    # The double bookings the worker's scan stores within a minute (bulk writes store none).
    from syncs.conflicts import double_bookings_scan

    double_bookings_scan()
    return user, props[0], connections[0]


def fresh_statistics() -> None:
    """Planner statistics and visibility maps as autovacuum (PostgreSQL) keeps them in production:
    without statistics a bulk-loaded table looks empty and the planner picks nested scans of the
    whole table; without the visibility map no count is answered from an index alone."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")


def built_account(username: str):
    """The owner, first property and first sync of an account a previous run built (``--reuse``),
    its states and double bookings brought up to now as beat and the worker would."""
    from django.contrib.auth import get_user_model

    from syncs.conflicts import double_bookings_scan
    from syncs.models import Connection, Property
    from syncs.sync_state import state_sweep

    state_sweep()
    double_bookings_scan()
    fresh_statistics()
    user = get_user_model().objects.get(username=username)
    prop = Property.objects.filter(account__memberships__user=user).order_by("pk").first()
    return user, prop, Connection.objects.filter(property=prop).order_by("pk").first()


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
    parser.add_argument("--reuse", action="store_true",
                        help="reuse the accounts a previous run left in --database-url (seeded once, then each run takes seconds)")
    return parser.parse_args()


def operator_pages(prop, conn) -> dict[str, str]:
    """Every page an operator reaches from the menu or a row, for the account owning ``prop`` and ``conn``."""
    from django.urls import reverse

    timeline = reverse("timeline")
    return {
        "overview": reverse("home"),
        "overview status (htmx poll)": reverse("overview-status"),
        "timeline": timeline,
        "timeline page 20 (htmx)": timeline + "?page=20",
        "timeline state=paused": timeline + "?state=paused",
        "timeline state=attention": timeline + "?state=attention",
        "timeline state=working": timeline + "?state=working",
        "timeline portal=vrbo 90 nights": timeline + "?portal=vrbo&nights=90",
        "timeline q=Flat 00": timeline + "?q=Flat+00",
        "properties list": reverse("property-list"),
        "properties list sort=health": reverse("property-list") + "?sort=health",
        "properties list state=attention": reverse("property-list") + "?state=attention",
        "property page": reverse("property-detail", args=[prop.pk]),
        "connection page": reverse("connection-detail", args=[conn.pk]),
        "activity": reverse("activity"),
        "settings": reverse("account-settings"),
        "webhooks": reverse("webhooks"),
        "members": reverse("members"),
        "email alerts": reverse("my-alerts"),
        "profile": reverse("profile"),
        "onboarding": reverse("onboarding"),
        "new property": reverse("property-create"),
        "property edit": reverse("property-edit", args=[prop.pk]),
        "connection edit": reverse("connection-edit", args=[conn.pk]),
    }


def main() -> None:
    args = account_arguments(__doc__)
    setup_django(args.database_url)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    started = time.perf_counter()
    if args.reuse and get_user_model().objects.filter(username="bench").exists():
        small_user, small_prop, small_conn = built_account("small")
        middle_user, _p, _c = built_account("middle")
        user, prop, conn = built_account("bench")
    else:
        # The demo first: its import syncs every due sync of the database, and would otherwise try
        # (and fail) those of the big accounts too, which would then be measured in another state.
        call_command("seed_demo", sync=True, stdout=io.StringIO())
        small_user, small_prop, small_conn = build_account(10, args.connections_per_property, args.double_booked_every, "small")
        middle_user, _p, _c = build_account(1000, args.connections_per_property, args.double_booked_every, "middle")
        user, prop, conn = build_account(args.properties, args.connections_per_property, args.double_booked_every)
    syncs = args.properties * args.connections_per_property
    start_as_the_web_process()
    print(f"built accounts of 10, 1,000 and {args.properties} properties ({syncs} connections in the last) "
          f"in {time.perf_counter() - started:.1f} s")
    big, small = Client(), Client()
    big.force_login(user)
    small.force_login(small_user)
    baseline = measure(big, reverse("activity"), args.runs)
    big_pages, small_pages = operator_pages(prop, conn), operator_pages(small_prop, small_conn)
    print(f"\n{'page':34} {'10 properties':>20} {f'{args.properties} properties':>26} {'x 10':>6} {'x empty':>8}")
    print(f"{'':34} {'median ms':>10} {'queries':>9} {'median ms':>10} {'p95 ms':>7} {'queries':>7}")
    print(f"{'empty activity page (baseline)':34} {'':>20} {baseline['median_ms']:10.1f} {baseline['p95_ms']:7.1f} "
          f"{baseline['queries']:7d} {'':>6} {1:8.2f}")
    for name, url in big_pages.items():
        few = measure(small, small_pages[name], args.runs)
        many = measure(big, url, args.runs)
        ratio = many["median_ms"] / few["median_ms"]
        same = "" if many["queries"] == few["queries"] else "  (queries differ)"
        print(f"{name:34} {few['median_ms']:10.1f} {few['queries']:9d} {many['median_ms']:10.1f} {many['p95_ms']:7.1f} "
              f"{many['queries']:7d} {ratio:6.2f} {many['median_ms'] / baseline['median_ms']:8.2f}{same}")

    demo = get_user_model().objects.get(username="demo")
    middle = Client()
    middle.force_login(middle_user)
    print()
    for name, client in (("demo overview", small), ("1,000-property overview", middle)):
        if name == "demo overview":
            client.force_login(demo)
        result = measure(client, reverse("home"), args.runs)
        print(f"{name:34} {result['median_ms']:10.1f} {result['queries']:9d} {'':>26} {'':>6} "
              f"{result['median_ms'] / baseline['median_ms']:8.2f}")

    served = first_bytes({
        "empty page": (reverse("activity"), session_of(user)),
        "overview": (reverse("home"), session_of(user)),
        "overview status (htmx poll)": (reverse("overview-status"), session_of(user)),
        "timeline state=attention": (reverse("timeline") + "?state=attention", session_of(user)),
        "properties list": (reverse("property-list"), session_of(user)),
        "1,000-property overview": (reverse("home"), session_of(middle_user)),
        "demo overview": (reverse("home"), session_of(demo)),
    }, args.runs)
    print("\nthrough gunicorn (Procfile, DEBUG off), first byte: median ms, x the empty page")
    targets = {"overview": 100, "timeline state=attention": 200, "properties list": 150, "demo overview": 50}
    for name, ms in served.items():
        ratio = ms / served["empty page"]
        target = targets.get(name)
        verdict = "" if target is None else f"  {'PASS' if ms < target else 'MISS'} (<{target} ms)"
        if name == "1,000-property overview":
            verdict = f"  {'PASS' if ratio < 3 else 'MISS'} (<3x the empty page)"
        print(f"{name:34} {ms:10.1f} {ratio:8.2f}{verdict}")
    database = "PostgreSQL" if "postgres" in (args.database_url or "") else "SQLite"
    print(f"overview: {served['overview']:.0f} ms at {args.properties} properties / {syncs} syncs ({database})")


if __name__ == "__main__":
    main()
