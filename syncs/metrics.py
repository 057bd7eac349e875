"""Metrics for Prometheus, written with prometheus-client (never by hand).

Two kinds, so that every process's view adds up:

* From the database, at scrape time (true whatever the number of web and worker processes, and
  machines): syncs by state (``syncs.sync_state``, the dashboard's very rule), "Sync now"
  requests not served yet, syncs due but not handed out, export requests per reader today,
  webhook deliveries by status, and the broker's queue depth.
* From the worker, as it runs (sync runs by outcome, their durations): Celery's prefork workers
  are separate processes, so these use prometheus-client's multiprocess mode, in the folder
  ``PROMETHEUS_MULTIPROC_DIR`` (default ``VAR_DIR/metrics``) that the web process reads. Web and
  workers must share that folder (one machine, or a shared volume as in docker-compose).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Sum
from django.utils import timezone

from syncs.models import Connection, ExportReadDay, Job, StateChange, WebhookDelivery
from syncs.sync_state import TILES, states_counted

log = logging.getLogger(__name__)

_started: dict[str, float] = {}


def multiprocess_dir() -> str:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(settings.VAR_DIR / "metrics")
    os.makedirs(folder, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    return folder


def _worker_metrics():
    """The worker's counters, created once per process in the multiprocess folder."""
    global _WORKER
    if "_WORKER" not in globals():
        multiprocess_dir()
        from prometheus_client import Counter, Histogram

        _WORKER = (
            Counter("channelmgr_sync_runs", "Sync runs by the worker, by outcome.", ["outcome"]),
            Histogram(
                "channelmgr_sync_duration_seconds", "How long one sync took in the worker: fetch, parse and apply.",
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            ),
        )
    return _WORKER


def task_started(task_id: str) -> None:
    _started[task_id] = time.monotonic()


def task_finished(task_id: str, outcome: str | None) -> None:
    started = _started.pop(task_id, None)
    if started is None:
        return
    runs, duration = _worker_metrics()
    runs.labels(outcome=outcome or "skipped").inc()
    duration.observe(time.monotonic() - started)


def connect_worker_signals() -> None:
    """Count each sync the worker runs (Celery's signals: the engine is not touched)."""
    from celery.signals import task_postrun, task_prerun

    def prerun(sender=None, task_id=None, **_):
        if sender is not None and sender.name == "syncs.tasks.sync_connection":
            task_started(task_id)

    def postrun(sender=None, task_id=None, retval=None, **_):
        if sender is not None and sender.name == "syncs.tasks.sync_connection":
            try:
                task_finished(task_id, retval if isinstance(retval, str) else None)
            except Exception:  # a metrics problem must never fail a sync
                log.exception("metrics: sync run not counted")

    task_prerun.connect(prerun, weak=False, dispatch_uid="metrics_prerun")
    task_postrun.connect(postrun, weak=False, dispatch_uid="metrics_postrun")


class DatabaseCollector:
    """Read at each scrape; the rules are the dashboard's."""

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


        now = timezone.now()
        states = GaugeMetricFamily("channelmgr_syncs", "Syncs by state (the overview's tiles).", labels=["state"])
        counts = states_counted(Connection.objects.all())
        for state in TILES:
            states.add_metric([state.value], counts[state.value])
        yield states
        # Read from the changes recorded as they happen (syncs.sync_state.state_record), over the
        # last hour: the index on their moment serves it, whatever the history kept.
        changes = GaugeMetricFamily(
            "channelmgr_state_changes_last_hour", "Syncs that entered each state in the last hour.", labels=["state"]
        )
        entered = dict(
            StateChange.objects.filter(at__gte=now - timedelta(hours=1)).order_by().values_list("to_state")
            .annotate(count=Count("pk"))
        )
        for state in TILES:
            changes.add_metric([state.value], entered.get(state.value, 0))
        yield changes
        yield GaugeMetricFamily(
            "channelmgr_sync_requests_waiting", "Sync now requests no worker has served yet.",
            value=Connection.objects.filter(sync_requested_at__isnull=False).count(),
        )
        yield GaugeMetricFamily(
            "channelmgr_jobs_waiting", "Operators' actions written and not started by a worker yet (sent again by the sweeper).",
            value=Job.objects.filter(finished_at__isnull=True, started_at__isnull=True).count(),
        )
        yield GaugeMetricFamily(
            "channelmgr_syncs_overdue", "Syncs due for more than two minutes and not handed out (the dispatcher is behind or down).",
            value=Connection.objects.due(now - timedelta(minutes=2)).count(),
        )
        reads = CounterMetricFamily(
            "channelmgr_export_requests_today", "Requests for our export feeds today (UTC), by reader; reset daily.",
            labels=["reader"],
        )
        rows = ExportReadDay.objects.filter(day=now.date()).values("reader").annotate(n=Sum("count")).order_by("reader")
        for row in rows:
            reads.add_metric([row["reader"] or "unknown"], row["n"] or 0)
        yield reads
        deliveries = GaugeMetricFamily("channelmgr_webhook_deliveries", "Webhook deliveries kept, by status.", labels=["status"])
        for row in WebhookDelivery.objects.values("status").annotate(n=Count("pk")).order_by("status"):
            deliveries.add_metric([row["status"]], row["n"])
        yield deliveries
        depth = _queue_depth()
        yield GaugeMetricFamily("channelmgr_broker_up", "Whether the broker answered this scrape.", value=1 if depth is not None else 0)
        if depth is not None:
            yield GaugeMetricFamily("channelmgr_queue_depth", "Tasks waiting in the broker's queue.", value=depth)


def _queue_depth() -> int | None:
    from channelmgr.celery import app

    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            return connection.default_channel.queue_declare(
                queue=settings.CELERY_TASK_DEFAULT_QUEUE, passive=True
            ).message_count
    except Exception as exc:
        log.warning("metrics: queue depth unknown: %s", type(exc).__name__)
        return None


def metrics_text() -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiprocess_dir())
    registry.register(DatabaseCollector())
    return generate_latest(registry)
