"""How many syncs a second the shipped worker keeps up with against portals of a given latency.

    .venv/bin/python bench/capacity.py --latency-ms 300 --connections 3000 [--feeds 304|dtstamp|changing]
        [--hang-rate 0.05] [--hosts 250] [--database-url URL] [--redis-url URL] [--processes N] [--pool P]
        [--concurrency N]

Starts its own portal on the loopback (each of --hosts portal hosts is its own 127.x address;
every answer comes after --latency-ms; the hosts of --hang-rate drip a byte every few seconds so
each fetch runs to the fetch deadline), creates a fresh database (its name must contain "bench")
and seeds N connections. What the portal answers, by --feeds: ``304`` (the feed unchanged, and the
portal says so: Not Modified), ``dtstamp`` (a 200 with the same 50 stays each time, every DTSTAMP
the moment of the answer, as Airbnb and Booking.com send) or ``changing`` (a 200 whose 50 stays
are the same but one, whose summary changes at each poll). Then it runs every worker and the beat
of the Procfile, as deployed (DEBUG off). With ``304`` it dispatches once and waits until every
connection has been synced (or --timeout); with the others a first round syncs every connection
once (the feed's stays become blocks, as on a live system), then a second round, the one
measured, syncs them all again. It samples the workers' CPU and memory (their
process trees) and the PostgreSQL connections they hold, then prints a table ending with
``capacity: <n> syncs/s at <latency> ms``. --processes/--pool/--concurrency override the shipped
workers, to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")


def feed(events: int) -> bytes:
    first = datetime.now(UTC).date() + timedelta(days=2)
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Airbnb Inc//Hosting Calendar 1.0//EN"]
    for i in range(events):
        start = first + timedelta(days=4 * i)
        lines += ["BEGIN:VEVENT", f"UID:stay-{i}@airbnb.com", "DTSTAMP:20270101T000000Z", "SUMMARY:Reserved",
                  f"DTSTART;VALUE=DATE:{start:%Y%m%d}", f"DTEND;VALUE=DATE:{start + timedelta(days=3):%Y%m%d}", "END:VEVENT"]
    return ("\r\n".join([*lines, "END:VCALENDAR"]) + "\r\n").encode()


FEED = feed(50)  # what the portal answers with a 200
FEEDS = ("304", "dtstamp", "changing")


def answer(mode: str, polls: int) -> bytes:
    """The 200's body in ``mode``, at the ``polls``-th request for that feed."""
    if mode == "304":
        return FEED
    body = FEED.replace(b"DTSTAMP:20270101T000000Z", datetime.now(UTC).strftime("DTSTAMP:%Y%m%dT%H%M%SZ").encode())
    if mode == "changing":  # one stay's summary, a different one at each poll
        uid = f"UID:stay-{polls % 50}@airbnb.com\r\n".encode()
        head, tail = body.split(uid, 1)
        body = head + uid + tail.replace(b"SUMMARY:Reserved", f"SUMMARY:Reserved ({polls})".encode(), 1)
    return body


async def _serve(port: int, latency: float, hang_every: float, mode: str) -> None:
    polls: dict[bytes, int] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await asyncio.sleep(latency)
                if b" /hang/" in head:  # headers, then a byte now and then: only the deadline ends it
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/calendar\r\nContent-Length: 100000\r\n\r\n")
                    while True:
                        writer.write(b"B")
                        await writer.drain()
                        await asyncio.sleep(hang_every)
                if mode == "304" and b'if-none-match: "v1"' in head.lower():
                    writer.write(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n')
                else:
                    path = head.split(b" ", 2)[1]
                    polls[path] = polls.get(path, 0) + 1
                    body = answer(mode, polls[path])
                    etag = b'ETag: "v1"\r\n' if mode == "304" else b""
                    writer.write(b"HTTP/1.1 200 OK\r\n" + etag + b"Content-Type: text/calendar\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "0.0.0.0", port, backlog=4096)
    async with server:
        await server.serve_forever()


def portal_main(port: int, latency: float, mode: str) -> None:
    asyncio.run(_serve(port, latency, hang_every=5.0, mode=mode))


def setup(database_url: str, redis_url: str, queue: str) -> None:
    os.environ.update(
        DATABASE_URL=database_url, REDIS_URL=redis_url, DJANGO_SETTINGS_MODULE="channelmgr.settings", CELERY_QUEUE=queue
    )
    import django

    django.setup()


def fresh_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1].split("?")[0]
    if "bench" not in name:
        sys.exit(f"refusing to reset database {name!r}: its name must contain 'bench'")
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([str(BIN / "python"), "manage.py", "migrate", "-v0"], cwd=ROOT, check=True,
                   env={**os.environ, "DATABASE_URL": url})


def seed(n: int, hosts: int, hang_rate: float, port: int) -> int:
    from syncs.models import Account, Connection, Portal, Property

    account = Account.objects.create(name="bench")
    portal = Portal.objects.get(slug="airbnb")
    props = Property.objects.bulk_create([Property(account=account, name=f"p{i}") for i in range((n + 4) // 5)])
    hanging_hosts = round(hosts * hang_rate)  # the first ones
    rows = [
        Connection(property=props[i // 5], portal=portal, etag='"v1"', next_sync_at=None, import_url=(
            f"http://127.0.{i % hosts // 250}.{i % hosts % 250 + 1}:{port}/{'hang' if i % hosts < hanging_hosts else 'feed'}/{i}.ics"
        ))
        for i in range(n)
    ]
    Connection.objects.bulk_create(rows, batch_size=2000)
    return sum(1 for c in rows if "/hang/" in c.import_url)


def tree(pid: int) -> list[int]:
    """The process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def cpu_and_rss(pids: list[int]) -> tuple[float, float]:
    cpu = rss = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICK
            rss += int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024
        except (OSError, AttributeError):
            continue
    return cpu, rss


def pg_connections(queue: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [queue])
        return cursor.fetchone()[0]


def runs_per_connection(*, hanging: bool) -> list[int]:
    from django.db.models import Count

    from syncs.models import Connection

    connections = Connection.objects.filter(import_url__contains="/hang/") if hanging else Connection.objects.exclude(import_url__contains="/hang/")
    return list(connections.annotate(n=Count("runs")).values_list("n", flat=True))


def start(command: str, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(shlex.split(command), cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def procfile(prefix: str) -> list[str]:
    """The commands of the Procfile's processes whose names start with ``prefix``."""
    found = [line.split(":", 1)[1].strip() for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith(prefix)]
    return found or sys.exit(f"no {prefix} in the Procfile")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=int, default=300)
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--hosts", type=int, default=250)
    parser.add_argument("--hang-rate", type=float, default=0.0)
    parser.add_argument("--feeds", choices=FEEDS, default="304", help="what the portal answers (see above)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/channelmgr_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--pool", help="override the shipped worker pool (threads, gevent, prefork)")
    parser.add_argument("--concurrency", type=int, help="override the shipped worker concurrency")
    parser.add_argument("--processes", type=int, help="override the number of worker processes (the Procfile's)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds to wait for every sync")
    args = parser.parse_args()

    queue = f"bench-{uuid.uuid4().hex[:6]}"
    fresh_database(args.database_url)
    setup(args.database_url, args.redis_url, queue)
    port = free_port()
    portal = subprocess.Popen([sys.executable, __file__, "--portal", str(port), str(args.latency_ms / 1000), args.feeds])
    hanging = seed(args.connections, args.hosts, args.hang_rate, port)
    folder = Path(tempfile.mkdtemp(prefix="bench-capacity-"))
    env = {
        **os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DATABASE_URL": f"{args.database_url}?application_name={queue}",
        "REDIS_URL": args.redis_url, "CELERY_QUEUE": queue, "VAR_DIR": str(folder), "FETCH_ALLOW_LOOPBACK": "1",
        # As deployed (DEBUG off); demo mode only so that the worker may fetch the loopback portal.
        "DEBUG": "0", "DEMO_MODE": "1", "SECRET_KEY": "bench-" + uuid.uuid4().hex, "LOG_LEVEL": "INFO",
    }
    commands = procfile("worker")
    if args.processes:
        commands = [f"{commands[0]} -n w{i}@%h" for i in range(args.processes)]
    extra = (f" --pool {args.pool}" if args.pool else "") + (f" --concurrency {args.concurrency}" if args.concurrency else "")
    workers = [start(command + extra, env, folder / f"worker{i}.log") for i, command in enumerate(commands)]
    beat = start(procfile("beat")[0], env, folder / "beat.log")
    samples = []
    try:
        time.sleep(3)  # the worker connects to its broker
        from django.utils import timezone

        from syncs.models import Connection, SyncRun
        from syncs.tasks import dispatch_due_syncs

        working = SyncRun.objects.exclude(connection__import_url__contains="/hang/")
        if args.feeds != "304":  # a first round: every feed's stays become blocks, unmeasured
            dispatch_due_syncs.delay()
            deadline = time.monotonic() + args.timeout
            while working.values("connection").distinct().count() < args.connections - hanging:
                if time.monotonic() > deadline:
                    sys.exit("the first round did not end")
                time.sleep(2)
            round_started = timezone.now()
            Connection.objects.update(next_sync_at=None)  # all due again
            working = working.filter(started_at__gte=round_started)
        dispatch_due_syncs.delay()  # what beat sends every minute, once now
        started = time.monotonic()
        cpu0, _ = cpu_and_rss([pid for worker in workers for pid in tree(worker.pid)])
        while time.monotonic() - started < args.timeout:
            time.sleep(1)
            done = working.count()
            cpu, rss = cpu_and_rss([pid for worker in workers for pid in tree(worker.pid)])
            samples.append((time.monotonic() - started, done, cpu - cpu0, rss, pg_connections(queue)))
            if working.values("connection").distinct().count() >= args.connections - hanging:
                break
    finally:
        for process in (beat, *workers, portal):
            process.terminate()
        for process in (beat, *workers, portal):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a warm shutdown waits for the tasks it holds
                process.kill()
                process.wait()
        import redis  # leave nothing queued in the shared Redis

        broker = redis.Redis.from_url(args.redis_url)
        broker.delete(queue, f"{queue}.beat", *broker.keys(f"_kombu.binding*{queue}*"))
    report(args, samples, hanging, folder, measured=working)


def report(args, samples, hanging: int, folder: Path, measured) -> None:
    counts, hung = runs_per_connection(hanging=False), runs_per_connection(hanging=True)
    rounds = 1 if args.feeds == "304" else 2
    from django.db.models import Count

    outcomes = dict(measured.values("outcome").annotate(n=Count("pk")).values_list("outcome", "n"))
    elapsed, done, cpu, _, _ = samples[-1]
    # The rate between 10% and 90% of the syncs: neither the start nor the tail of the queue.
    low, high = (next(s for s in samples if s[1] >= done * share) for share in (0.1, 0.9))
    rate = (high[1] - low[1]) / max(high[0] - low[0], 1e-9)
    log = "".join(path.read_text(errors="replace") for path in sorted(folder.glob("worker*.log")))
    dispatches = sorted(re.findall(r"(\d\d:\d\d:\d\d),\d+ INFO syncs\.tasks dispatched", log))
    rows = [
        ("connections (hanging)", f"{args.connections} ({hanging})"),
        ("portal latency", f"{args.latency_ms} ms"),
        ("portal answers", {"304": "304 Not Modified", "dtstamp": "200, same stays, DTSTAMP now",
                            "changing": "200, one summary changed each poll"}[args.feeds]),
        ("outcomes (measured round)", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))),
        ("worker processes", str(args.processes or len(procfile("worker")))),
        ("worker", procfile("worker")[0] + (f" --pool {args.pool}" if args.pool else "") + (f" --concurrency {args.concurrency}" if args.concurrency else "")),
        ("syncs/s (10%-90%, working portals)", f"{rate:.1f}"),
        ("syncs done, seconds", f"{done} in {elapsed:.0f} s"),
        ("worker CPU", f"{cpu / elapsed * 100:.0f}% of one core, {cpu / max(done, 1) * 1000:.1f} ms per sync"),
        ("worker RSS (max)", f"{max(s[3] for s in samples):.0f} MiB"),
        ("PostgreSQL connections (max)", str(max(s[4] for s in samples))),
        ("missed (no run)", str(sum(1 for n in counts if n < rounds))),
        ("duplicated (more than one run a round)", str(sum(1 for n in counts if n > rounds))),
        ("hanging: timed out, deferred", f"{sum(1 for n in hung if n)}, {sum(1 for n in hung if not n)}"),
        ("dispatcher runs received", ", ".join(dispatches) or "-"),
        ("discarded (expired) tasks", str(log.count("Discarding revoked task"))),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    print(f"capacity: {rate:.0f} syncs/s at {args.latency_ms} ms")


def free_port() -> int:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


def web_start(env: dict, log: Path) -> tuple[subprocess.Popen, int]:
    """gunicorn as the Procfile starts it, on a free port of 127.0.0.1, once it listens; stop it
    with web_stop."""
    import socket

    port = free_port()
    command = procfile("web")[0].replace("${WEB_BIND:-127.0.0.1:8000}", f"127.0.0.1:{port}") + " --access-logfile /dev/null"
    env = {**env, "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', os.environ['PATH'])}"}
    server = subprocess.Popen(shlex.split(command), cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    for _ in range(150):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            time.sleep(0.2)
    web_stop(server)
    sys.exit(f"gunicorn did not start:\n{log.read_text()[-2000:]}")


def web_stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--portal"]:
        portal_main(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "304")
    else:
        main()
