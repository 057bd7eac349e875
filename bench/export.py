"""Benchmark of the export feed (/ical/<token>.ics) under load, against a constant view served by
the same gunicorn in the same run.

    .venv/bin/python bench/export.py [--blocks 500] [--duration 10] [--connections 32] [--quick]
        [--database-url postgres://postgres@127.0.0.1:5432/channelmgr_bench_export]

Needs wrk, a C load generator (a Python client would take the two cores the server needs):
    apt-get install -y wrk        (Debian/Ubuntu; macOS: brew install wrk)

It prepares a fresh database (SQLite in a temporary directory unless --database-url names a
PostgreSQL database, which it drops and re-creates), migrates it, creates one property with
--blocks manual blocks over the next two years, and starts gunicorn as production does
(`gunicorn channelmgr.wsgi`, gthread, 2 workers x 4 threads like the Procfile) with
bench/export_settings.py, whose urlconf adds /bench/constant.ics: the export's exact body and
content type, returned as a constant. After a warm-up it measures, with N keep-alive clients
for D seconds each, in rounds whose order rotates:

1. constant: GET /bench/constant.ics (the baseline: Django, middleware, same bytes);
2. export 200: GET of the export URL (cached body, the token query, read recording);
3. export 304: the same GET with If-None-Match set to the export's ETag.

Besides requests/s and latency as wrk saw them, it reports gunicorn's CPU time per request
(read from /proc), which other programs on the machine disturb far less. With N clients in a
closed loop, latency is about N / throughput, so the p99 target is mostly a cost target: at 32
clients a p99 under 50 ms needs well over 640 requests/s.

The table goes to stdout, the figures to var/bench-export.json. Nothing is asserted: a target
that is missed is reported as MISS. gunicorn is always stopped (its whole process group). All
traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "bench"
RESULTS_PATH = ROOT / "var" / "bench-export.json"
GUNICORN = Path(sys.executable).parent / "gunicorn"
GUNICORN_CONFIG = BENCH_DIR / "export_gunicorn.py"
CONSTANT_PATH = "/bench/constant.ics"
CALENDAR_TYPE = "text/calendar; charset=utf-8"  # the export's, checked against the real answer

# The targets the export path is held to.
TARGET_EXPORT_VS_CONSTANT = 0.8
TARGET_304_VS_200 = 1.0
TARGET_P99_MS = 50.0

WRK_INSTALL_HINT = "apt-get install -y wrk   (Debian/Ubuntu; macOS: brew install wrk)"
# Portals' fetchers name themselves; this one matches none of syncs/readers.py's patterns, so the
# reader lookup takes its longest path (every pattern tried) on every request.
USER_AGENT = "channelmgr-bench-export/1.0 (calendar fetcher)"
# Every bounded wait in one place: nothing here loops without a limit in count and time.
SERVER_START_SECONDS = 30
SERVER_STOP_SECONDS = 10
HTTP_TIMEOUT_SECONDS = 10
WRK_TIMEOUT = "5s"  # a request slower than this counts as a wrk timeout error
WRK_GRACE_SECONDS = 30  # beyond -d, before wrk itself is killed
HORIZON_DAYS = 730  # "the next two years", and settings.EXPORT_HORIZON_DAYS' default

# wrk prints its own report; this adds one machine-readable line after it. string.format with
# %.0f/%.3f because LuaJIT's %d rejects non-integral numbers.
WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-EXPORT {"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, ' ..
    '"errors": {"connect": %.0f, "read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f}, ' ..
    '"p50_us": %.0f, "p90_us": %.0f, "p99_us": %.0f, "max_us": %.0f, "mean_us": %.3f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


class BenchError(Exception):
    """The benchmark could not measure what it set out to: said plainly, never as a MISS."""


# --- Plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    blocks: int
    duration: int
    warmup: int
    rounds: int
    connections: int
    workers: int
    threads: int
    database_url: str | None  # None: SQLite in the run's temporary directory
    access_log: bool
    keep: bool
    quick: bool

    @property
    def database_label(self) -> str:
        return "PostgreSQL" if self.database_url else "SQLite (temporary file)"


def parse_args(argv: list[str] | None = None) -> Plan:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--blocks", type=int, default=500, help="blocks on the exported property (default 500)"
    )
    parser.add_argument(
        "--duration", type=int, help="seconds per measurement and round (default 10; --quick 3)"
    )
    parser.add_argument(
        "--warmup", type=int, help="seconds of untimed load per URL first (default 3; --quick 1)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds of the three measurements, order rotated (default 2; --quick 1)",
    )
    parser.add_argument(
        "--connections", type=int, default=32, help="concurrent keep-alive clients (default 32)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="gunicorn workers (default 2, the Procfile's)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=4,
        help="gthread threads per worker (default 4, the Procfile's)",
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL database to DROP and re-create, e.g.\n"
        "postgres://postgres@127.0.0.1:5432/channelmgr_bench_export (its name must contain 'bench')",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="gunicorn writes its (masked) access log, to a file",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (database, gunicorn log)"
    )
    parser.add_argument("--quick", action="store_true", help="short run, about a minute")
    args = parser.parse_args(argv)
    quick = args.quick
    plan = Plan(
        blocks=args.blocks,
        duration=args.duration if args.duration is not None else (3 if quick else 10),
        warmup=args.warmup if args.warmup is not None else (1 if quick else 3),
        rounds=args.rounds if args.rounds is not None else (1 if quick else 2),
        connections=args.connections,
        workers=args.workers,
        threads=args.threads,
        database_url=args.database_url,
        access_log=args.access_log,
        keep=args.keep,
        quick=quick,
    )
    _check_plan(plan, parser)
    return plan


def _check_plan(plan: Plan, parser: argparse.ArgumentParser) -> None:
    for name, value, low, high in (
        ("--blocks", plan.blocks, 1, 100_000),
        ("--duration", plan.duration, 1, 300),
        ("--warmup", plan.warmup, 0, 60),
        ("--rounds", plan.rounds, 1, 10),
        ("--connections", plan.connections, 1, 1000),
        ("--workers", plan.workers, 1, 16),
        ("--threads", plan.threads, 1, 64),
    ):
        if not low <= value <= high:
            parser.error(f"{name} must be between {low} and {high}")
    if plan.database_url:
        _check_database_url(plan.database_url, parser)


def _check_database_url(url: str, parser: argparse.ArgumentParser) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        parser.error("--database-url must be a postgres:// URL (SQLite is the default)")
    if parts.hostname not in {None, "127.0.0.1", "localhost", "::1"}:
        parser.error(
            "--database-url must point at this machine (127.0.0.1): the benchmark drops that database"
        )
    if "bench" not in database_name(url):
        parser.error(
            "--database-url: the benchmark drops its database, so the name must contain 'bench'"
        )


def database_name(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


# --- Environment and database -----------------------------------------------------------------


def server_environment(plan: Plan, run_dir: Path, database_url: str) -> dict[str, str]:
    """Production-like settings (DEBUG off) that neither redirect to https nor need a manifest."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.export_settings",
        PYTHONPATH=str(ROOT),
        DEBUG="0",
        SECRET_KEY="bench-export-" + "x" * 40,  # fixed: the exported UIDs derive from it
        SECURE_SSL_REDIRECT="0",
        ALLOWED_HOSTS="127.0.0.1",
        STATIC_MANIFEST="0",
        # A realistic host for the events' UIDs (".example" is reserved); nothing is fetched from it.
        SITE_URL="https://channelmgr.example",
        VAR_DIR=str(run_dir),
        DATABASE_URL=database_url,
        BENCH_EXPORT_BODY=str(run_dir / "export-body.ics"),
    )
    return env


def reset_postgres(url: str) -> None:
    """DROP and CREATE the benchmark's database, connected to the "postgres" database."""
    import psycopg
    from psycopg import sql

    name = database_name(url)
    try:
        with psycopg.connect(url, dbname="postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise BenchError(f"cannot re-create PostgreSQL database {name!r}: {exc}") from exc


# --- Fixture ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    path: str  # the export URL's path; its token is a secret, so it is never printed
    body: bytes
    etag: str
    blocks: int
    events: int


def block_layout(count: int, first_night: date, rng: random.Random) -> list[tuple[date, date]]:
    """`count` blocks within the two-year horizon, as many distinct exported events as fit.

    Touching blocks merge into one event, so distinct ones need a free day between them: with
    500 blocks that is 365 one-night blocks a day apart, and the other 135 overlap nights that
    are already taken (a direct booking also blocked by hand), as real calendars do.
    """
    spacing = max(2, HORIZON_DAYS // count)
    distinct = min(count, (HORIZON_DAYS - 1) // spacing + 1)
    ranges = []
    for slot in range(distinct):
        start = first_night + timedelta(days=slot * spacing)
        ranges.append((start, start + timedelta(days=1 + rng.randrange(spacing - 1))))
    for _ in range(count - distinct):
        start, end = ranges[rng.randrange(distinct)]
        ranges.append((start + timedelta(days=rng.randrange((end - start).days)), end))
    rng.shuffle(ranges)
    return ranges


def prepare_fixture(plan: Plan, env: dict[str, str]) -> Fixture:
    """Migrate, create the property and its blocks, and build the export once, in this process.

    It runs with channelmgr.settings, not the bench settings: the bench urlconf reads the body
    file this step writes. Nothing else differs, so the body is the one gunicorn will serve
    (checked over HTTP before any measurement).
    """
    os.environ.update(env, DJANGO_SETTINGS_MODULE="channelmgr.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    # Django's modules need configured settings, so they are imported only now.
    from django.core.management import call_command
    from django.db import connections
    from django.urls import reverse

    from syncs.blocks import block_create_manual
    from syncs.export import calendar_export
    from syncs.export_tokens import export_token_ensure, export_token_find, token_from_nonce
    from syncs.models import Account, BlockKind, Property

    call_command("migrate", verbosity=0, interactive=False)
    account = Account.objects.create(name="Bench export")
    prop = Property.objects.create(
        account=account, name="Casa do Benchmark", timezone="Europe/Lisbon"
    )
    rng = random.Random(20240601)  # the same calendar every run
    tomorrow = prop.local_today() + timedelta(days=1)
    for start, end in block_layout(plan.blocks, tomorrow, rng):
        kind = BlockKind.RESERVED if rng.random() < 0.5 else BlockKind.BLOCKED
        block_create_manual(
            property=prop, start=start, end=end, kind=kind, summary="Direct booking"
        )
    url_token = token_from_nonce(export_token_ensure(property=prop).nonce)
    exported = calendar_export(token=export_token_find(url_token))
    Path(env["BENCH_EXPORT_BODY"]).write_bytes(exported.body)
    path = reverse("export-feed", kwargs={"token": url_token})
    connections.close_all()  # gunicorn opens its own; SQLite must not see a writer from here
    return Fixture(
        path=path,
        body=exported.body,
        etag=exported.etag,
        blocks=plan.blocks,
        events=exported.body.count(b"BEGIN:VEVENT"),
    )


# --- gunicorn ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`gunicorn channelmgr.wsgi` in its own process group, so that stopping it stops its workers."""

    def __init__(self, *, plan: Plan, env: dict[str, str], run_dir: Path):
        self.port = free_port()
        self.log_path = run_dir / "gunicorn.log"
        self.args = [
            str(GUNICORN), "channelmgr.wsgi",
            "-c", str(GUNICORN_CONFIG),
            "--bind", f"127.0.0.1:{self.port}",
            "--worker-class", "gthread",
            "--workers", str(plan.workers),
            "--threads", str(plan.threads),
            "--graceful-timeout", "5",
        ]  # fmt: skip
        if plan.access_log:
            self.args += ["--access-logfile", str(run_dir / "access.log")]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if not self.alive:
                raise BenchError(
                    f"gunicorn exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if fetch(self.port, CONSTANT_PATH, timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise BenchError(
            f"gunicorn did not answer within {SERVER_START_SECONDS} s:\n{self.log_tail()}"
        )

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by gunicorn's master and workers (Linux /proc; None elsewhere).

        Unlike requests per second, CPU per request hardly moves when other programs share the
        machine, so it tells the export's own cost apart from a busy neighbour's.
        """
        ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        total = 0
        try:
            entries = list(Path("/proc").iterdir())
        except OSError:
            return None
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                # The command may hold spaces and parentheses: the fields start after the last ")".
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue  # a process that ended meanwhile
            if int(fields[2]) == self.process.pid:  # fields[2] is the process group
                total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / ticks

    def stop(self) -> None:
        """SIGTERM to the whole group, then SIGKILL to whatever is left of it."""
        for sig, wait in ((signal.SIGTERM, SERVER_STOP_SECONDS), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # The master is gone; a worker it failed to reap would still be in the group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            break


# --- HTTP checks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = HTTP_TIMEOUT_SECONDS,
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": USER_AGENT, **(headers or {})})
        response = conn.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()


def check_answers(port: int, fixture: Fixture) -> dict[str, Reply]:
    """Each URL answers what it is meant to before it is measured: a fast wrong answer is no figure."""
    constant = fetch(port, CONSTANT_PATH)
    export = fetch(port, fixture.path)
    not_modified = fetch(port, fixture.path, {"If-None-Match": fixture.etag})
    problems = []
    for name, reply, status in (
        ("constant", constant, 200),
        ("export", export, 200),
        ("export 304", not_modified, 304),
    ):
        if reply.status != status:
            problems.append(f"{name}: status {reply.status}, expected {status}")
    if export.body != fixture.body or constant.body != fixture.body:
        problems.append(
            "the export's body and the constant body differ from the one built at preparation"
        )
    if not (
        export.headers.get("content-type") == constant.headers.get("content-type") == CALENDAR_TYPE
    ):
        problems.append("content types differ between the export and the constant view")
    if export.headers.get("etag") != fixture.etag:
        problems.append("the export's ETag is not the one built at preparation")
    if not_modified.body:
        problems.append("the 304 answer has a body")
    if problems:
        raise BenchError("wrong answers, nothing measured:\n  " + "\n  ".join(problems))
    return {"constant": constant, "export_200": export, "export_304": not_modified}


# --- Load -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One wrk run."""

    requests: int
    seconds: float
    bytes: int
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    server_cpu_s: float | None = None  # gunicorn's CPU time during the run

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.requests:
            return None
        return 1000 * self.server_cpu_s / self.requests

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def find_wrk() -> str:
    wrk = shutil.which("wrk")
    if not wrk:
        raise BenchError(
            "wrk is not installed. This benchmark needs a C load generator: a Python client would "
            f"compete with gunicorn for the CPU and measure itself. Install it with:\n    {WRK_INSTALL_HINT}"
        )
    return wrk


def run_wrk(
    wrk: str, script: Path, url: str, *, seconds: int, connections: int, headers: dict[str, str]
) -> Load:
    # One wrk thread: it keeps up with a Python server easily and leaves the cores to gunicorn.
    command = [
        wrk,
        "-t",
        "1",
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(script),
    ]
    for name, value in {"User-Agent": USER_AGENT, **headers}.items():
        command += ["-H", f"{name}: {value}"]
    try:
        done = subprocess.run(
            [*command, url], capture_output=True, text=True, timeout=seconds + WRK_GRACE_SECONDS
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {seconds + WRK_GRACE_SECONDS} s") from exc
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH-EXPORT ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    raw = json.loads(line.removeprefix("BENCH-EXPORT "))
    return Load(
        requests=int(raw["requests"]),
        seconds=raw["duration_us"] / 1e6,
        bytes=int(raw["bytes"]),
        errors={k: int(v) for k, v in raw["errors"].items()},
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        mean_ms=raw["mean_us"] / 1000,
    )


@dataclass
class Measurement:
    name: str
    label: str
    path: str
    headers: dict[str, str]
    rounds: list[Load] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        """Pooled over the rounds: all requests over all the time."""
        seconds = sum(load.seconds for load in self.rounds)
        return sum(load.requests for load in self.rounds) / seconds if seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return statistics.median(load.p50_ms for load in self.rounds)

    @property
    def p99_ms(self) -> float:
        """The worst round's: a p99 target should hold in every round."""
        return max(load.p99_ms for load in self.rounds)

    @property
    def errors(self) -> int:
        return sum(load.error_count for load in self.rounds)

    @property
    def cpu_ms_per_request(self) -> float | None:
        if any(load.server_cpu_s is None for load in self.rounds):
            return None
        requests = sum(load.requests for load in self.rounds)
        return (
            1000 * sum(load.server_cpu_s for load in self.rounds) / requests if requests else None
        )

    @property
    def bytes_per_request(self) -> float:
        requests = sum(load.requests for load in self.rounds)
        return sum(load.bytes for load in self.rounds) / requests if requests else 0.0


def measurements(fixture: Fixture) -> list[Measurement]:
    return [
        Measurement("constant", "constant view (baseline)", CONSTANT_PATH, {}),
        Measurement("export_200", "export, 200 with body", fixture.path, {}),
        Measurement(
            "export_304",
            "export, 304 (If-None-Match)",
            fixture.path,
            {"If-None-Match": fixture.etag},
        ),
    ]


def measure(plan: Plan, server: Server, wrk: str, script: Path, runs: list[Measurement]) -> None:
    """Warm every URL up, then run the rounds; each round starts with a different URL, so that no
    measurement always comes first (or last) while the machine warms or throttles."""
    base = f"http://127.0.0.1:{server.port}"
    if plan.warmup:
        for run in runs:
            run_wrk(
                wrk,
                script,
                base + run.path,
                seconds=plan.warmup,
                connections=plan.connections,
                headers=run.headers,
            )
    for number in range(plan.rounds):
        order = runs[number % len(runs) :] + runs[: number % len(runs)]
        for run in order:
            cpu_before = server.cpu_seconds()
            load = run_wrk(
                wrk,
                script,
                base + run.path,
                seconds=plan.duration,
                connections=plan.connections,
                headers=run.headers,
            )
            cpu_after = server.cpu_seconds()
            if cpu_before is not None and cpu_after is not None:
                load = replace(load, server_cpu_s=cpu_after - cpu_before)
            run.rounds.append(load)
            print(
                f"  round {number + 1}/{plan.rounds}  {run.label:<30} {load.per_second:7.0f} req/s  "
                f"p50 {load.p50_ms:6.2f} ms  p99 {load.p99_ms:6.2f} ms  "
                f"CPU {format_ms(load.cpu_ms_per_request)} ms/req  errors {load.error_count}",
                flush=True,
            )
            if not server.alive:
                raise BenchError(f"gunicorn died during the load:\n{server.log_tail()}")


# --- Report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    measurement: str
    figure: str
    baseline: str
    ratio: str
    target: str
    result: str


def ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline else float("nan")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def format_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def build_rows(by_name: dict[str, Measurement]) -> list[Row]:
    constant, ok200, ok304 = by_name["constant"], by_name["export_200"], by_name["export_304"]
    export_vs_constant = ratio(ok200.per_second, constant.per_second)
    not_modified_vs_200 = ratio(ok304.per_second, ok200.per_second)
    rows = [
        Row(
            "export 200 throughput",
            f"{ok200.per_second:,.0f} req/s",
            f"{constant.per_second:,.0f} req/s (constant)",
            f"{export_vs_constant:.2f}x",
            f">= {TARGET_EXPORT_VS_CONSTANT:.2f}x",
            verdict(export_vs_constant >= TARGET_EXPORT_VS_CONSTANT),
        ),
        Row(
            "export 304 throughput",
            f"{ok304.per_second:,.0f} req/s",
            f"{ok200.per_second:,.0f} req/s (export 200)",
            f"{not_modified_vs_200:.2f}x",
            f">= {TARGET_304_VS_200:.2f}x",
            verdict(not_modified_vs_200 >= TARGET_304_VS_200),
        ),
    ]
    for run in (ok200, ok304):
        rows.append(
            Row(
                f"{run.name.replace('_', ' ')} p99 latency",
                f"{run.p99_ms:.1f} ms",
                f"{constant.p99_ms:.1f} ms (constant)",
                f"{ratio(run.p99_ms, constant.p99_ms):.2f}x",
                f"< {TARGET_P99_MS:.0f} ms",
                verdict(run.p99_ms < TARGET_P99_MS),
            )
        )
    return rows + cpu_rows(constant, ok200, ok304)


def cpu_rows(constant: Measurement, ok200: Measurement, ok304: Measurement) -> list[Row]:
    """No target: gunicorn's CPU per request, the figure a busy machine disturbs least."""
    rows = []
    for run, base in ((ok200, constant), (ok304, ok200)):
        ours, theirs = run.cpu_ms_per_request, base.cpu_ms_per_request
        if ours is None or theirs is None:
            continue
        rows.append(
            Row(
                f"{run.name.replace('_', ' ')} server CPU",
                f"{ours:.2f} ms/req",
                f"{theirs:.2f} ms/req ({base.name.replace('_', ' ')})",
                f"{ratio(ours, theirs):.2f}x",
                "(info)",
                "-",
            )
        )
    return rows


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    line = "  ".join("-" * width for width in widths)
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print(line)
    for row in rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)))


def print_report(plan: Plan, runs: list[Measurement], rows: list[Row], command: str) -> None:
    print(
        f"\nMeasured figures ({plan.connections} connections, {plan.rounds} x {plan.duration} s each; "
        "req/s pooled over rounds, p50 median of rounds, p99 worst round):\n"
    )
    print_table(
        [
            "measurement",
            "req/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "CPU ms/req",
            "bytes/req",
            "errors",
        ],
        [
            [
                run.label,
                f"{run.per_second:,.0f}",
                f"{run.p50_ms:.2f}",
                f"{max(load.p90_ms for load in run.rounds):.2f}",
                f"{run.p99_ms:.2f}",
                f"{max(load.max_ms for load in run.rounds):.1f}",
                format_ms(run.cpu_ms_per_request),
                f"{run.bytes_per_request:,.0f}",
                str(run.errors),
            ]
            for run in runs
        ],
    )
    print("\nTargets:\n")
    print_table(
        ["measurement", "figure", "baseline", "ratio", "target", "result"],
        [list(asdict(row).values()) for row in rows],
    )
    errors = sum(run.errors for run in runs)
    if errors:
        print(
            f"\nWARNING: wrk counted {errors} errors (connect/read/write/timeouts/4xx-5xx); see the JSON."
        )
    print(
        "\nCPU ms/req is gunicorn's CPU time (all workers) over the requests served: it is the figure"
        "\nleast disturbed by other programs on the machine (the PostgreSQL server's own CPU is not"
        "\nin it); req/s and latency are what clients saw."
    )
    print(f"\nCommand: {command}")
    print(f"Figures: {RESULTS_PATH.relative_to(ROOT)}")


def describe_machine() -> dict:
    wrk = shutil.which("wrk")
    wrk_version = ""
    if wrk:
        # `wrk --version` prints its banner and exits 1; the banner is what we want.
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
        wrk_version = (
            (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""
        )
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wrk": wrk_version,
    }


def load_average() -> float | None:
    """The machine's 1-minute load average, so that a run shared with other work says so."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def warn_if_busy(load: float | None) -> None:
    # Our own processes are not running yet: any load now is someone else's.
    if load is not None and load > 0.5 * (os.cpu_count() or 1):
        print(
            f"WARNING: the machine is already busy (1-minute load average {load:.1f} on "
            f"{os.cpu_count()} CPUs): req/s and latency will be lower and noisier than on an idle "
            "machine; CPU ms/req and the ratios of one run are less affected.",
            flush=True,
        )


def write_json(data: dict) -> None:
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(data, indent=2, default=str) + "\n")


def results_json(
    plan: Plan, fixture: Fixture | None, runs: list[Measurement], rows: list[Row]
) -> dict:
    return {
        "plan": asdict(plan),
        "fixture": fixture
        and {
            "blocks": fixture.blocks,
            "events": fixture.events,
            "body_bytes": len(fixture.body),
        },
        "measurements": {
            run.name: {
                "label": run.label,
                "requests_per_second": run.per_second,
                "p50_ms": run.p50_ms,
                "p99_ms": run.p99_ms,
                "server_cpu_ms_per_request": run.cpu_ms_per_request,
                "bytes_per_request": run.bytes_per_request,
                "errors": run.errors,
                "rounds": [
                    asdict(load)
                    | {
                        "requests_per_second": load.per_second,
                        "server_cpu_ms_per_request": load.cpu_ms_per_request,
                    }
                    for load in run.rounds
                ],
            }
            for run in runs
            if run.rounds
        },
        "targets": [asdict(row) for row in rows],
    }


# --- Main -------------------------------------------------------------------------------------


def run(plan: Plan, run_dir: Path, data: dict, command: str) -> None:
    wrk = find_wrk()  # before anything is built: without it there is nothing to measure with
    database_url = plan.database_url or f"sqlite:///{run_dir / 'db.sqlite3'}"
    if plan.database_url:
        reset_postgres(plan.database_url)
    env = server_environment(plan, run_dir, database_url)
    started = time.monotonic()
    fixture = prepare_fixture(plan, env)
    print(
        f"prepared in {time.monotonic() - started:.1f} s: {fixture.blocks} blocks -> {fixture.events} events, "
        f"body {len(fixture.body):,} bytes",
        flush=True,
    )
    script = run_dir / "report.lua"
    script.write_text(WRK_LUA)
    runs = measurements(fixture)
    data["load_average_before"] = load_average()
    warn_if_busy(data["load_average_before"])
    server = Server(plan=plan, env=env, run_dir=run_dir)
    try:
        server.wait_ready()
        data["server"] = {"command": shlex.join(server.args), "worker_class": "gthread"}
        print(f"gunicorn: {shlex.join(server.args[1:])}", flush=True)
        check_answers(server.port, fixture)
        measure(plan, server, wrk, script, runs)
    finally:
        server.stop()
    data["load_average_after"] = load_average()
    rows = build_rows({r.name: r for r in runs})
    data.update(results_json(plan, fixture, runs, rows))
    print_report(plan, runs, rows, command)


def main(argv: list[str] | None = None) -> int:
    plan = parse_args(argv)
    command = shlex.join(
        [".venv/bin/python", "bench/export.py", *(sys.argv[1:] if argv is None else argv)]
    )
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so that gunicorn is stopped in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run_dir = Path(tempfile.mkdtemp(prefix="channelmgr-bench-export-"))
    data: dict = {
        "command": command,
        "started_at": datetime.now(UTC).isoformat(),
        "machine": describe_machine(),
        "database": plan.database_label,
    }
    print(
        f"channelmgr export benchmark: {plan.database_label}, {plan.blocks} blocks, {plan.connections} connections, "
        f"{plan.rounds} round(s) x {plan.duration} s per URL after {plan.warmup} s warm-up; "
        f"gunicorn gthread {plan.workers} workers x {plan.threads} threads; {os.cpu_count()} CPUs",
        flush=True,
    )
    status = 0
    try:
        run(plan, run_dir, data, command)
    except BenchError as exc:
        data["error"] = str(exc)
        print(f"\nNOT MEASURED: {exc}", file=sys.stderr)
        status = 1
    except (KeyboardInterrupt, SystemExit):
        data["error"] = "interrupted before the end: the figures are incomplete"
        raise
    except Exception:
        data["error"] = traceback.format_exc()
        traceback.print_exc()
        status = 1
    finally:
        data["finished_at"] = datetime.now(UTC).isoformat()
        write_json(data)
        if plan.keep:
            print(f"kept: {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
