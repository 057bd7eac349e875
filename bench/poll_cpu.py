"""The CPU of one sync on the loopback: a regression guard, not a goal (real portals take
hundreds of milliseconds; bench/capacity.py measures what that allows).

    .venv/bin/python bench/poll_cpu.py [--polls 300] [--database-url URL]

In one process, against portals in another that answer at once: the CPU of an unchanged poll
(lease, read, fetch with a 304, record), next to a bare ``requests.get`` of the same URL on a
kept-alive session; of the polls of real portals' 200s (bench/capacity.py's --feeds modes: the
same stays with every DTSTAMP the moment of the answer, and one summary changed at each poll),
next to that 304 poll; and of a first import of a 50-event feed (every event parsed, every block
written), next to icalendar's own ``Calendar.from_ical`` of that feed. SQLite in a temporary
folder unless --database-url names a PostgreSQL database whose name contains "bench".
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_per_call(call, n: int) -> float:
    call()  # warm
    started = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - started) / n * 1000  # ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=300)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    os.environ.update(
        DJANGO_SETTINGS_MODULE="channelmgr.settings", VAR_DIR=tempfile.mkdtemp(prefix="bench-poll-"),
        FETCH_ALLOW_LOOPBACK="1", LOG_LEVEL="WARNING", PROCESS_ROLE="worker",  # its database settings
    )
    if args.database_url:
        from bench.capacity import fresh_database

        fresh_database(args.database_url)
        os.environ["DATABASE_URL"] = args.database_url
    import django

    django.setup()
    import icalendar
    import requests
    from django.core.management import call_command

    from bench.capacity import FEED, FEEDS, free_port
    from syncs.engine.task import connection_sync_leased
    from syncs.models import Account, Connection, Portal, Property

    call_command("migrate", verbosity=0)
    ports = {mode: free_port() for mode in FEEDS}  # a portal for each kind of answer
    servers = [
        subprocess.Popen([sys.executable, str(ROOT / "bench" / "capacity.py"), "--portal", str(port), "0", mode])
        for mode, port in ports.items()
    ]
    time.sleep(1)
    url = f"http://127.0.0.1:{ports['304']}/feed.ics"
    prop = Property.objects.create(account=Account.objects.create(name="bench"), name="bench", timezone="Europe/Lisbon")
    portal = Portal.objects.get(slug="airbnb")

    def new_connection(mode: str = "304") -> Connection:
        return Connection.objects.create(
            property=prop, portal=portal, import_url=f"http://127.0.0.1:{ports[mode]}/feed.ics?{Connection.objects.count()}"
        )

    def polled(mode: str) -> Callable[[], object]:
        """A sync of a connection whose feed was imported once already (its stays are blocks)."""
        connection = new_connection(mode)
        connection_sync_leased(connection_id=connection.pk)
        return lambda: connection_sync_leased(connection_id=connection.pk)

    session = requests.Session()
    fresh = iter([new_connection().pk for _ in range(args.polls // 10 + 1)])  # made before, not measured
    not_modified = cpu_per_call(polled("304"), args.polls)
    rows = [
        ("unchanged poll (304)", not_modified,
         "requests.get, kept alive", cpu_per_call(lambda: session.get(url, headers={"If-None-Match": '"v1"'}), args.polls)),
        ("200, same stays, DTSTAMP now", cpu_per_call(polled("dtstamp"), args.polls), "unchanged poll (304)", not_modified),
        ("200, one summary changed each poll", cpu_per_call(polled("changing"), args.polls), "unchanged poll (304)", not_modified),
        ("first import, 50 events", cpu_per_call(lambda: connection_sync_leased(connection_id=next(fresh)), args.polls // 10),
         "icalendar from_ical", cpu_per_call(lambda: icalendar.Calendar.from_ical(FEED), args.polls // 10)),
    ]
    print("| measurement | ours (CPU ms) | baseline | baseline (CPU ms) | ratio |\n|---|---|---|---|---|")
    for name, ours, baseline_name, baseline in rows:
        print(f"| {name} | {ours:.2f} | {baseline_name} | {baseline:.2f} | {ours / baseline:.2f}x |")
    for server in servers:
        server.terminate()


if __name__ == "__main__":
    main()
