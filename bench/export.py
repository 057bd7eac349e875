"""The export feed under load: a guard, next to a constant-body view measured in the same run.

    .venv/bin/python bench/export.py [--database-url URL] [--seconds 10] [--rounds 3] [--clients 32]

Builds a property of 500 blocks (a 66 KB calendar) in a fresh database (SQLite in a temporary
folder, or PostgreSQL whose name contains "bench"), starts gunicorn as the Procfile does (DEBUG
off) and drives it with wrk (`apt-get install wrk`) at --clients keep-alive clients: the
constant view, the export answering 200, and the export answering 304, in alternating rounds.
Guard: the export's p99 under 50 ms, and its requests/s at least 0.6x the constant view's.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prepare(env: dict) -> tuple[str, str]:
    """The property, its blocks and export URL; the export's body written for the constant view."""
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from syncs.export import calendar_export
    from syncs.export_tokens import ServingToken, export_token_ensure, token_from_nonce
    from syncs.models import Account, Block, Property

    call_command("migrate", verbosity=0)
    prop = Property.objects.create(account=Account.objects.create(name="bench"), name="Bench flat", timezone="Europe/Lisbon")
    rng, first = random.Random(7), timezone.localdate()
    blocks, night = [], first
    for _ in range(500):
        night += timedelta(days=rng.randint(1, 2))
        blocks.append(Block(property=prop, start_date=night, end_date=night + timedelta(days=1)))
        night += timedelta(days=1)
    Block.objects.bulk_create(blocks)
    token = export_token_ensure(property=prop)
    exported = calendar_export(token=ServingToken.of(token))
    Path(env["BENCH_EXPORT_BODY"]).write_bytes(exported.body)
    return f"/ical/{token_from_nonce(token.nonce)}.ics", exported.etag


def wrk(port: int, path: str, *, seconds: int, clients: int, headers: dict) -> tuple[float, float]:
    """Requests per second and p99 latency in ms, as wrk measured them."""
    command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out and not headers:
        raise SystemExit(f"errors answered:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    return rate, float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-export-"))
    env = {
        "DJANGO_SETTINGS_MODULE": "bench.export_site", "PYTHONPATH": str(ROOT), "DEBUG": "0",
        "SECRET_KEY": "bench-export-" + "x" * 40, "SECURE_SSL_REDIRECT": "0", "ALLOWED_HOSTS": "127.0.0.1",
        "STATIC_MANIFEST": "0", "SITE_URL": "https://channelmgr.example", "VAR_DIR": str(folder),
        "BENCH_EXPORT_BODY": str(folder / "body.ics"), "LOG_LEVEL": "WARNING",
    }
    if args.database_url:
        from bench.capacity import fresh_database

        fresh_database(args.database_url)
        env["DATABASE_URL"] = args.database_url
    export_path, etag = prepare(env)
    from bench.capacity import web_start, web_stop

    server, port = web_start({**os.environ, **env}, folder / "gunicorn.log")
    try:
        for _ in range(100):  # listening; now until a worker answers
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/constant.ics", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        runs = {"constant view": ("/bench/constant.ics", {}), "export 200": (export_path, {}),
                "export 304": (export_path, {"If-None-Match": etag})}
        results: dict[str, list] = {name: [] for name in runs}
        for path, headers in runs.values():  # warm-up
            wrk(port, path, seconds=2, clients=args.clients, headers=headers)
        for _ in range(args.rounds):
            for name, (path, headers) in runs.items():
                results[name].append(wrk(port, path, seconds=args.seconds, clients=args.clients, headers=headers))
    finally:
        web_stop(server)
    median = {name: (statistics.median(r for r, _ in runs), statistics.median(p for _, p in runs)) for name, runs in results.items()}
    constant = median["constant view"][0]
    print(f"database: {'PostgreSQL' if args.database_url else 'SQLite'}; {args.clients} clients; median of {args.rounds} rounds of {args.seconds} s")
    print("| URL | requests/s | vs constant view | p99 |")
    print("|---|---|---|---|")
    for name, (rate, p99) in median.items():
        print(f"| {name} | {rate:,.0f} | {rate / constant:.2f}x | {p99:.1f} ms |")
    ok = median["export 200"][1] < 50 and median["export 304"][1] < 50 and median["export 200"][0] >= 0.6 * constant
    print(f"guard (p99 < 50 ms, export >= 0.6x constant): {'met' if ok else 'MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
