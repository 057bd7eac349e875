"""Where an export request's time goes, in one process, without HTTP: the WSGI application called
in a loop, for the constant view and the export (200 and 304), then cProfile of the export.

    .venv/bin/python bench/export_profile.py [--requests 5000] [--profile 200|304|none]
        [--database-url postgres://postgres@127.0.0.1:5432/channelmgr_bench_export]

It prepares the same database as bench/export.py (a property of 500 blocks) and uses the same
production-like settings. The figures are CPU time per request of Django alone (no gunicorn, no
sockets), so they tell the export's own cost apart from the server's; bench/export.py is the
figure that counts for the targets.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.export import (  # after the path above, which makes "bench" importable
    USER_AGENT,
    Plan,
    prepare_fixture,
    reset_postgres,
    server_environment,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per measurement")
    parser.add_argument("--blocks", type=int, default=500)
    parser.add_argument("--profile", choices=("200", "304", "none"), default="200")
    parser.add_argument("--database-url", help="a PostgreSQL database to DROP and re-create")
    return parser.parse_args(argv)


def environ(path: str, headers: dict[str, str]) -> dict:
    base = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_USER_AGENT": USER_AGENT,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
    }
    return base | {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}


def call(application, path: str, headers: dict[str, str]) -> str:
    status = ""

    def start_response(line, _headers, _exc=None):
        nonlocal status
        status = line

    result = application(environ(path, headers), start_response)
    for _chunk in result:
        pass
    result.close()  # fires request_finished, as gunicorn does
    return status


def per_request_us(application, path: str, headers: dict[str, str], count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        call(application, path, headers)
    return (time.process_time() - started) / count * 1e6


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="channelmgr-export-profile-"))
    database_url = args.database_url or f"sqlite:///{run_dir / 'db.sqlite3'}"
    if args.database_url:
        reset_postgres(args.database_url)
    plan = Plan(
        blocks=args.blocks, duration=1, warmup=0, rounds=1, connections=1, workers=1, threads=1,
        database_url=args.database_url, access_log=False, keep=False, quick=True,
    )  # fmt: skip
    fixture = prepare_fixture(plan, server_environment(plan, run_dir, database_url))
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    settings.ROOT_URLCONF = (
        "bench.export_urls"  # adds the constant view, as the server's settings do
    )
    application = get_wsgi_application()
    runs = {
        "constant": ("/bench/constant.ics", {}),
        "export 200": (fixture.path, {}),
        "export 304": (fixture.path, {"If-None-Match": fixture.etag}),
    }
    for name, (path, headers) in runs.items():
        status = call(application, path, headers)
        per_request_us(application, path, headers, min(500, args.requests))  # warm up
        print(
            f"{name:<12} {status:<18} {per_request_us(application, path, headers, args.requests):7.1f} µs/request"
        )
    if args.profile != "none":
        path, headers = runs[f"export {args.profile}"]
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.requests):
            call(application, path, headers)
        profiler.disable()
        stats = pstats.Stats(profiler).sort_stats("cumulative")
        stats.print_stats(45)
        stats.sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
