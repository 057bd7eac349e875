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
from kombu.exceptions import ChannelError

from syncs.engine.lease import connections_claim_due
from syncs.engine.task import connection_sync_leased
from syncs.jobs import (
    DurableTask,
    resend_jobs,  # noqa: F401 - registers the task with the worker
)
from syncs.models import Connection, SyncRun
from syncs.notifications import send_pause_notifications  # noqa: F401 - registers the task with the worker
from syncs.password_reset import password_reset_send  # noqa: F401 - registers the task with the worker
from syncs.probing import probe_paused_connections
from syncs.retention import prune
from syncs.sync_requests import connection_request_sync, sync_request_serve

log = logging.getLogger(__name__)

DISPATCH_BATCH = 500
DISPATCH_BUDGET_SECONDS = 30


def _publish(claims: list) -> None:
    """Hand the claims to the workers: on Redis, one pipeline of pushes per batch (kombu's
    publish batch); elsewhere, one publish each. A batch the broker refuses is lost as a whole,
    like a single publish: its claims expire unserved and the next dispatcher takes them over
    (scheduling)."""
    with sync_connection.app.producer_or_acquire() as producer, producer.batch(max_size=DISPATCH_BATCH):
        for claim in claims:
            sync_connection.apply_async((claim.connection_id, SyncRun.Trigger.SCHEDULED, claim.holder), producer=producer)


def _syncs_waiting() -> int | None:
    """How many messages wait in the syncs' queue of the broker; None if the broker cannot say."""
    try:
        with sync_connection.app.connection_for_write() as connection:
            try:
                return connection.default_channel.queue_declare(queue=settings.CELERY_TASK_DEFAULT_QUEUE, passive=True).message_count
            except ChannelError:
                return 0  # no such queue: nothing was ever sent, or every message was taken
    except Exception:
        log.warning("dispatch: the broker did not say how many syncs wait; no claim taken over this time")
        return None


@shared_task(ignore_result=True)
def dispatch_due_syncs() -> int:
    """Run by beat every minute: hand each due connection to a worker. (An operator's "Sync now"
    is a job: syncs.jobs sends it again if the broker lost it.)

    Claims whose lease expired unserved are taken over only when no sync waits in the broker's
    queue: then none of them is a message waiting its turn, their worker was lost. Behind a
    backlog longer than a lease they would be (and taking them over would send each again)."""
    ids, taken_over = [], 0
    take_over = _syncs_waiting() == 0
    started = time.monotonic()
    # Claim in batches until no full batch comes back: thousands of connections due at once (a
    # restart, a new account) are handed out in one pass, within a time budget.
    while time.monotonic() - started < DISPATCH_BUDGET_SECONDS:
        batch = connections_claim_due(limit=DISPATCH_BATCH, take_over=take_over)
        _publish(batch)
        ids += [claim.connection_id for claim in batch]
        taken_over += sum(claim.taken_over for claim in batch)
        if len(batch) < DISPATCH_BATCH:
            break
    log.info("dispatched count=%d taken_over=%d", len(ids), taken_over)
    return len(ids)


# Only what stops the task itself is retried: the database could not even record a failed
# run. Feed failures, and anything else that goes wrong inside a sync, are recorded runs and never
# raise. A retry keeps the claim (``holder``), so it takes the lease again; its delays stay far
# below the broker's visibility timeout, so a retried message is never delivered twice.
@shared_task(
    base=DurableTask,
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
    or, for an operator's request (a job: "Sync now" and the like, run once however often it is
    sent), taking its lease first. ``_legacy``: what messages queued by an older version carried
    after the holder; the connection is read afresh instead."""
    if trigger == SyncRun.Trigger.MANUAL:
        run = sync_request_serve(connection_id=connection_id)
    else:
        run = connection_sync_leased(connection_id=connection_id, trigger=trigger, holder=holder)
    return run.outcome if run else None


@shared_task(ignore_result=True)
def probe_paused_feeds() -> int:
    """Run by beat: quietly check the feeds of paused connections (see syncs/probing.py), and
    ask for the sync of each one switched back on (its check), as the operator's switch does."""
    done = probe_paused_connections()
    for connection in Connection.objects.filter(pk__in=done.resumed):
        connection_request_sync(connection=connection, user=None, pressed=False)
    return done.probed


@shared_task(ignore_result=True)
def prune_history() -> None:
    """Run by beat daily: forget old history (see syncs/retention.py)."""
    pruned = prune(days=settings.RETENTION_DAYS)
    log.info(
        "pruned runs=%d blocks=%d read_days=%d tokens=%d jobs=%d undos=%d removed_properties=%d removed_syncs=%d",
        pruned.runs, pruned.blocks, pruned.read_days, pruned.tokens, pruned.jobs, pruned.undos, pruned.removed_properties,
        pruned.removed_syncs,
    )
