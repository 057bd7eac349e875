"""Celery tasks: thin. They take ids (a scheduled poll: its connection's and its claim's), reload
what they need, and call the domain code.

Beat's tasks (the dispatcher, notifications, probes, pruning) go to their own queue
(settings.CELERY_BEAT_QUEUE), which the worker serves before the syncs' queue: no backlog of syncs
can delay or expire them."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from syncs.models import SyncRun
from syncs.notifications import send_pause_notifications  # noqa: F401 - registers the task with the worker
from syncs.password_reset import password_reset_send  # noqa: F401 - registers the task with the worker
from syncs.probing import probe_paused_connections
from syncs.retention import prune
from syncs.scheduling import connections_claim_due, unserved_requests
from syncs.sync import connection_sync_leased

log = logging.getLogger(__name__)

DISPATCH_BATCH = 500
DISPATCH_BUDGET_SECONDS = 30


def _publish(claims: list) -> None:
    """Hand the claims to the workers: on Redis, one pipeline of pushes per batch (kombu's
    publish batch); elsewhere, one publish each. A batch the broker refuses is lost as a whole,
    like a single publish: its connections come back at their next turn (scheduling)."""
    with sync_connection.app.producer_or_acquire() as producer, producer.batch(max_size=DISPATCH_BATCH):
        for claim in claims:
            sync_connection.apply_async((claim.connection_id, SyncRun.Trigger.SCHEDULED, claim.holder), producer=producer)


@shared_task(ignore_result=True)
def dispatch_due_syncs() -> int:
    """Run by beat every minute: hand each due connection to a worker, and each "Sync now"
    that the broker could not take when it was pressed."""
    ids = []
    started = time.monotonic()
    # Claim in batches until no full batch comes back: thousands of connections due at once (a
    # restart, a new account) are handed out in one pass, within a time budget.
    while time.monotonic() - started < DISPATCH_BUDGET_SECONDS:
        batch = connections_claim_due(limit=DISPATCH_BATCH)
        _publish(batch)
        ids += [claim.connection_id for claim in batch]
        if len(batch) < DISPATCH_BATCH:
            break
    requested = unserved_requests()
    for connection_id in requested:
        sync_connection.delay(connection_id, SyncRun.Trigger.MANUAL)
    log.info("dispatched count=%d requested=%d", len(ids), len(requested))
    return len(ids) + len(requested)


# Only what stops the task itself is retried: the database could not even record a failed
# run. Feed failures, and anything else that goes wrong inside a sync, are recorded runs and never
# raise. A retry keeps the claim (``holder``), so it takes the lease again; its delays stay far
# below the broker's visibility timeout, so a retried message is never delivered twice.
@shared_task(
    ignore_result=True,
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=10,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=3,
)
def sync_connection(
    connection_id: int, trigger: str = SyncRun.Trigger.SCHEDULED, holder: str | None = None, *_legacy
) -> str | None:
    """Sync one connection: as claimed by the dispatcher (``holder``: the claim's lease holder),
    or taking its lease first ("Sync now"). ``_legacy``: what messages queued by an older
    version carried after the holder; the connection is read afresh instead."""
    run = connection_sync_leased(connection_id=connection_id, trigger=trigger, holder=holder)
    return run.outcome if run else None


@shared_task(ignore_result=True)
def probe_paused_feeds() -> int:
    """Run by beat: quietly check the feeds of paused connections (see syncs/probing.py), and
    hand the sync of each one switched back on to a worker."""
    done = probe_paused_connections()
    for connection_id in done.resumed:
        sync_connection.delay(connection_id, SyncRun.Trigger.MANUAL)
    return done.probed


@shared_task(ignore_result=True)
def prune_history() -> None:
    """Run by beat daily: forget old history (see syncs/retention.py)."""
    pruned = prune(days=settings.RETENTION_DAYS)
    log.info("pruned runs=%d blocks=%d read_days=%d tokens=%d", pruned.runs, pruned.blocks, pruned.read_days, pruned.tokens)
