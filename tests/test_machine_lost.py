"""A machine lost in the middle of a dispatch loses nothing (issue 32), with real processes on
hosts of their own: network namespaces (``ip netns``) joined by veth pairs to a bridge.

* host "web": gunicorn, beat (dispatching every few seconds) and the outgoing worker;
* hosts "w1" and "w2": one sync worker each, as the Procfile starts them;
* this namespace: PostgreSQL and Redis (the machine's own, through a forwarder on the bridge's
  address), the portals and the webhook receiver. Inside each host a forwarder puts the portals
  and the receiver on loopback addresses, the only ones a test may fetch.

1,000 syncs are due at once; 40 of their feeds answer a web page, so those syncs pause and each
pause is told to a webhook. When a third of the syncs have run, w1's link is cut: the process
runs on, and reaches nothing (not the database, not the broker, not the portals). Its claims
expire unserved and the dispatcher takes them over. Then w1's link comes back, and the messages
it took and never acknowledged (syncs it had recorded among them) are handed out again, as the
broker does after its visibility timeout. In the end every connection has exactly one run (none
twice, none missing), no lease is left held, each synced connection holds its feed's block, and
each pause reached the receiver exactly once.

Needs root and ``ip netns``: skipped without them, failed when CI asks for services.
"""

from __future__ import annotations

import http.server
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from channelmgr.celery import app
from syncs.models import Block, Connection, PauseEpisode, SyncRun, WebhookDelivery
from syncs.webhooks import DELIVERY_HEADER, EVENT_HEADER, webhook_create
from tests import feeds
from tests.conftest import require
from tests.factories import MembershipFactory, PropertyFactory, portal
from tests.processes import ROOT, child_env, start, stop, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.timeout(480),
]

SYNCS = 1000
FAILING = 40  # feeds that answer a web page: their syncs pause, and each pause is told
HOSTS = 20  # portal hosts 127.0.0.2 ...: each its own host to the workers' politeness
LEASE_SECONDS = 30  # the shortest lease the settings allow: a lost claim is taken over soon
DISPATCH_SECONDS = 5


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def _netns_problem() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "iproute2 (ip) is not installed"
    probe = f"cmprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"ip netns add failed: {getattr(exc, 'stderr', b'').decode(errors='replace').strip()}"
    _ip("netns", "del", probe)
    return None


class Network:
    """A bridge here at 10.231.<n>.1/24 and hosts linked to it, each a namespace with a veth
    pair; names carry our pid, so that runs at once do not meet."""

    def __init__(self) -> None:
        self.tag = str(os.getpid() % 100000)
        used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
        free = [n for n in range(16, 250) if f"10.231.{n}." not in used]
        self.subnet = f"10.231.{random.choice(free)}"
        self.gateway = f"{self.subnet}.1"
        self.bridge = f"cmb{self.tag}"
        self.hosts: dict[str, tuple[str, str]] = {}  # name: (namespace, the link's end on the bridge)
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add(self, name: str) -> None:
        namespace, outer, inner = f"cm{self.tag}{name}", f"cm{self.tag}{name}o", f"cm{self.tag}{name}i"
        address = f"{self.subnet}.{len(self.hosts) + 2}"
        _ip("netns", "add", namespace)
        self.hosts[name] = (namespace, outer)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", namespace)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inner)
        _ip("-n", namespace, "link", "set", inner, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")

    def on(self, name: str, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.hosts[name][0], *args]

    def cut(self, name: str) -> None:
        _ip("link", "set", self.hosts[name][1], "down")

    def heal(self, name: str) -> None:
        _ip("link", "set", self.hosts[name][1], "up")

    def close(self) -> None:
        for namespace, outer in self.hosts.values():
            subprocess.run(["ip", "link", "del", outer], capture_output=True, timeout=20)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=20)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=20)


class Portals:
    """Every feed, served here on the bridge's address: a stay for most, a web page for the
    failing ones; counts the fetches of each."""

    def __init__(self, address: str, failing: set[int]) -> None:
        today = timezone.localdate()
        calendar = feeds.airbnb(("stay", today + timedelta(days=3), today + timedelta(days=6)))
        self.fetches: Counter[int] = Counter()
        lock = threading.Lock()
        portals = self

        class Feed(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                n = int(re.fullmatch(r"/calendar/(\d+)\.ics", self.path).group(1))
                with lock:
                    portals.fetches[n] += 1
                body, kind = (b"<html><body>Sign in</body></html>", "text/html") if n in failing else (calendar, "text/calendar")
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((address, 0), Feed)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, n: int) -> str:
        return f"http://127.0.0.{2 + n % HOSTS}:{self.port}/calendar/{n}.ics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Receiver:
    """A webhook receiver here on the bridge's address: notes each request's delivery id."""

    def __init__(self, address: str) -> None:
        self.received: list[tuple[str, str]] = []
        receiver = self

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append((self.headers.get(DELIVERY_HEADER, ""), self.headers.get(EVENT_HEADER, "")))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((address, 0), Hook)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def procfile(name: str) -> str:
    [line] = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith(f"{name}:")]
    return line.split(":", 1)[1].strip()


def forwarder(args: list[str], pairs: list[str], log: Path) -> subprocess.Popen:
    process = start([*args, sys.executable, "-m", "tests.forwarder", *pairs], child_env(), log)
    wait_for(lambda: "ready" in log.read_text(), timeout=20, what=f"forwarder {log.stem} ready", log=log)
    return process


def lines(log: Path, pattern: str, start: int = 0) -> list[re.Match]:
    return list(re.finditer(pattern, log.read_text(errors="replace")[start:]))


def nothing_left(logs: dict[str, Path], what: str) -> None:
    """Wait for a dispatcher pass, on either sync worker, that finds nothing to hand out."""
    seen = {name: len(logs[name].read_text(errors="replace")) for name in ("w1", "w2")}
    wait_for(
        lambda: any(lines(logs[name], r"dispatched count=0 taken_over=0", seen[name]) for name in seen),
        timeout=4 * DISPATCH_SECONDS + 30, what=what, log=logs["w2"],
    )


def unacknowledged(client, queue: str) -> dict:
    """The messages of ``queue`` that a worker took and never acknowledged: kombu keeps them in a
    hash, with the exchange and routing key to send them to again after its visibility timeout."""
    return {tag: json.loads(entry) for tag, entry in client.hgetall("unacked").items() if json.loads(entry)[-1] == queue}


def redeliver(redis_url: str, queue: str) -> int:
    """Hand the unacknowledged messages of ``queue`` out again now, as the broker does once its
    visibility timeout has passed."""
    with app.connection_for_write(redis_url) as broker:
        client = broker.default_channel.client
        lost = unacknowledged(client, queue)
        for tag, (payload, _exchange, _routing_key) in lost.items():
            client.lpush(queue, json.dumps(payload))
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
        return len(lost)


def waiting(redis_url: str, queue: str) -> int:
    """Messages of ``queue`` waiting or taken and not yet acknowledged."""
    with app.connection_for_write(redis_url) as broker:
        client = broker.default_channel.client
        return client.llen(queue) + len(unacknowledged(client, queue))


def clear_queues(redis_url: str, queues: set[str]) -> None:
    """Our queues, their bindings, and the messages the lost worker took and never acknowledged
    (kombu keeps them for redelivery, in a hash every queue of the database shares)."""
    with app.connection_for_write(redis_url) as broker:
        for name in queues:
            leftover = broker.SimpleQueue(name)
            leftover.clear()
            leftover.close()
        client = broker.default_channel.client
        client.delete(*(f"_kombu.{kind}.{name}" for kind in ("binding", "binding_permanent") for name in queues))
        for tag, entry in client.hgetall("unacked").items():
            if json.loads(entry)[-1] in queues:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)


def test_a_worker_host_cut_off_in_the_middle_of_a_dispatch_loses_nothing_and_does_nothing_twice(postgres, redis_url, tmp_path):
    require(_netns_problem())
    began = time.monotonic()
    queue = f"machine-lost-{uuid.uuid4().hex[:8]}"
    failing = set(random.Random(SYNCS).sample(range(SYNCS), FAILING))
    network = Network()
    started: list[subprocess.Popen] = []
    servers = []
    try:
        for host in ("web", "w1", "w2"):
            network.add(host)
        portals, receiver = Portals(network.gateway, failing), Receiver(network.gateway)
        servers += [portals, receiver]
        # PostgreSQL and Redis on the bridge's address; portals and receiver inside each host.
        db = db_connection.settings_dict
        redis = urlsplit(redis_url)
        postgres_port, redis_port = free_port(network.gateway), free_port(network.gateway)
        started.append(forwarder([], [
            f"{network.gateway}:{postgres_port}={db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}",
            f"{network.gateway}:{redis_port}={redis.hostname}:{redis.port or 6379}",
        ], tmp_path / "forward-here.log"))
        inside = [f"127.0.0.{2 + n}:{portals.port}={network.gateway}:{portals.port}" for n in range(HOSTS)]
        inside.append(f"127.0.0.1:{receiver.port}={network.gateway}:{receiver.port}")
        for host in network.hosts:
            started.append(forwarder(network.on(host, []), inside, tmp_path / f"forward-{host}.log"))

        password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
        env = child_env(
            DATABASE_URL=f"postgres://{db['USER']}{password}@{network.gateway}:{postgres_port}/{db['NAME']}?application_name={queue}",
            REDIS_URL=f"redis://{network.gateway}:{redis_port}{redis.path or '/0'}", CELERY_QUEUE=queue,
            VAR_DIR=str(tmp_path), DEBUG="0", DEMO_MODE="1", SECRET_KEY="machine-lost-" + uuid.uuid4().hex * 2,
            FETCH_ALLOW_LOOPBACK="1", SYNC_LEASE_SECONDS=str(LEASE_SECONDS), DISPATCH_INTERVAL_SECONDS=str(DISPATCH_SECONDS),
            WORKER_CONCURRENCY="20", WEB_BIND="127.0.0.1:8000", DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS="10000",
        )

        # 1,000 syncs due now, on ten properties of one account; a webhook told of pauses.
        member = MembershipFactory()
        homes = PropertyFactory.create_batch(10, account=member.account)
        connections = Connection.objects.bulk_create(
            Connection(property=homes[n % 10], portal=portal("airbnb"), direction=Connection.Direction.IMPORT_ONLY,
                       import_url=portals.url(n), next_sync_at=None)
            for n in range(SYNCS)
        )
        number = {c.pk: n for n, c in enumerate(connections)}
        webhook, _secret = webhook_create(
            user=member.user, account=member.account, url=f"http://127.0.0.1:{receiver.port}/hook", events=["paused"],
            slack_text=False,
        )

        logs = {name: tmp_path / f"{name}.log" for name in ("w1", "w2", "outgoing", "web", "beat")}
        for host, name, command in (("w1", "w1", "worker1"), ("w2", "w2", "worker2"), ("web", "outgoing", "outgoing"), ("web", "web", "web")):
            started.append(start(network.on(host, ["sh", "-c", f"exec {procfile(command)}"]), env, logs[name]))
        for name in ("w1", "w2", "outgoing"):
            wait_for(lambda name=name: "ready." in logs[name].read_text(), timeout=60, what=f"{name} ready", log=logs[name])
        healthz = network.on("web", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8000/healthz"])
        wait_for(lambda: subprocess.run(healthz, capture_output=True, text=True).stdout == "200", timeout=60,
                 what="the web answering on its host", log=logs["web"])

        # Beat dispatches; when a third of the syncs have run, w1's link goes down.
        dispatch_started = timezone.now()
        ready_after = time.monotonic() - began
        started.append(start(network.on("web", ["sh", "-c", f"exec {procfile('beat')}"]), env, logs["beat"]))
        wait_for(lambda: SyncRun.objects.count() >= SYNCS // 3, timeout=120, what="a third of the syncs run", log=logs["w2"])
        network.cut("w1")
        cut_at = timezone.now()
        runs_at_cut = SyncRun.objects.count()
        by_w1 = len(lines(logs["w1"], r"sync connection=\d+ "))
        assert by_w1 > 0, "w1 had run no sync when it was cut: the test proves nothing"

        # Every sync ran and no lease is held: the lost claims expired and were taken over.
        def all_served() -> bool:
            return (
                SyncRun.objects.values("connection").distinct().count() == SYNCS
                and not Connection.objects.exclude(lease_holder="").exists()
            )

        wait_for(all_served, timeout=LEASE_SECONDS + 180, what="every sync run, every lease given back", log=logs["w2"])
        served_at = timezone.now()
        nothing_left(logs, "a dispatcher pass with nothing left")

        # w1 comes back, and the messages it took and never acknowledged (some of syncs it had
        # recorded) are handed out again: each finds its turn served, or taken over, and writes
        # nothing.
        network.heal("w1")
        redelivered = redeliver(redis_url, queue)
        assert redelivered > 0
        wait_for(lambda: waiting(redis_url, queue) == 0, timeout=60, what="the redelivered messages done", log=logs["w2"])
        nothing_left(logs, "a dispatcher pass with nothing left after the redeliveries")

        # The pauses told, as beat's notifier does every minute.
        with app.connection_for_write(redis_url) as broker:
            app.send_task("syncs.notifications.send_pause_notifications", connection=broker, queue=f"{queue}.outgoing",
                          routing_key=f"{queue}.outgoing", exchange=f"{queue}.outgoing")
        wait_for(
            lambda: WebhookDelivery.objects.filter(webhook=webhook, status="delivered").count() == FAILING,
            timeout=60, what="every pause delivered to the webhook", log=logs["outgoing"],
        )
        done_after = time.monotonic() - began
        taken_over = sum(int(m.group(1)) for log in (logs["w1"], logs["w2"]) for m in lines(log, r"taken_over=(\d+)"))
    finally:
        for process in reversed(started):
            stop(process)
        for server in servers:
            server.close()
        network.close()
        clear_queues(redis_url, {queue, f"{queue}.beat", f"{queue}.outgoing"})

    # Exactly one run per connection: none twice, none missing.
    runs = Counter(SyncRun.objects.values_list("connection_id", flat=True))
    assert len(runs) == SYNCS and set(runs.values()) == {1}, [pk for pk, count in runs.items() if count > 1]
    # Nothing half-written: no lease held; each feed's stay is its sync's one block; the web
    # pages' syncs paused, with one episode each.
    assert not Connection.objects.exclude(lease_holder="").exists()
    outcomes = dict(SyncRun.objects.values_list("connection_id", "outcome"))
    assert {pk for pk, outcome in outcomes.items() if outcome == "not_ical"} == {pk for pk in number if number[pk] in failing}
    assert {outcome for pk, outcome in outcomes.items() if number[pk] not in failing} == {"ok_changed"}
    blocks = Counter(Block.objects.filter(removed_at__isnull=True).values_list("source_id", flat=True))
    assert blocks == Counter({pk: 1 for pk in number if number[pk] not in failing})
    assert Connection.objects.filter(paused_at__isnull=False).count() == FAILING
    healthy = Connection.objects.filter(last_success_at__isnull=False, consecutive_failures=0, paused_at__isnull=True)
    assert {number[pk] for pk in healthy.values_list("pk", flat=True)} == set(range(SYNCS)) - failing
    assert set(Connection.objects.filter(paused_at__isnull=False).values_list("consecutive_failures", flat=True)) == {1}
    assert PauseEpisode.objects.count() == FAILING
    # Each pause reached the receiver once.
    deliveries = {str(pk) for pk in WebhookDelivery.objects.filter(webhook=webhook).values_list("pk", flat=True)}
    assert len(deliveries) == FAILING
    assert Counter(delivery for delivery, _event in receiver.received) == Counter(dict.fromkeys(deliveries, 1))
    # The cut came in the middle: w1 had syncs under way that the others took over.
    assert runs_at_cut < SYNCS and taken_over > 0
    sys.stdout.write(
        f"\nsyncs={SYNCS} runs_at_cut={runs_at_cut} by_w1_before_cut={by_w1} taken_over={taken_over} redelivered={redelivered} "
        f"fetches={sum(portals.fetches.values())} cut_after={(cut_at - dispatch_started).total_seconds():.1f}s "
        f"served_after_cut={(served_at - cut_at).total_seconds():.1f}s "
        f"processes_ready_after={ready_after:.1f}s done_after={done_after:.1f}s\n"
    )
