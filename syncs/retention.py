"""Forget what nobody needs any more, keeping what the pages and the checklist still use.

Pruned after ``days``: sync runs (but never a connection's latest run, nor any run since an
open pause began: the checklist's "what changed while paused" reads them), soft-deleted blocks
with their change history, per-day read counts of export URLs, and rotated export tokens that
stopped working, finished jobs (syncs.jobs), undo offers (syncs.undo), syncs' changes of state
(syncs.sync_state) and webhook deliveries that ended (the webhooks page lists each webhook's latest), long past use. Deleted
in batches, so a big backlog never holds a long transaction.

Whatever ``days`` says, properties and syncs an operator removed are deleted for good only when
they can no longer be restored, RESTORE_DAYS after their removal (``syncs.removal``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from syncs.models import (
    Block,
    ExportReadDay,
    ExportToken,
    Job,
    PauseEpisode,
    StateChange,
    SyncRun,
    Undo,
    WebhookDelivery,
)
from syncs.removal import removed_prune

BATCH = 2000


@dataclass
class Pruned:
    runs: int = 0
    blocks: int = 0
    read_days: int = 0
    tokens: int = 0
    removed_properties: int = 0
    removed_syncs: int = 0
    jobs: int = 0
    undos: int = 0
    deliveries: int = 0
    state_changes: int = 0


def _delete_in_batches(queryset) -> int:
    total = 0
    while True:
        batch = list(queryset.values_list("pk", flat=True)[:BATCH])
        if not batch:
            return total
        with transaction.atomic():
            queryset.model._base_manager.filter(pk__in=batch).delete()
        total += len(batch)


def prune(*, days: int, now: datetime | None = None) -> Pruned:
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    newer_run = SyncRun.objects.filter(connection_id=OuterRef("connection_id"), started_at__gt=OuterRef("started_at"))
    during_open_pause = PauseEpisode.objects.filter(
        connection_id=OuterRef("connection_id"), ended_at__isnull=True, started_at__lte=OuterRef("started_at")
    )
    old_runs = (
        SyncRun.objects.filter(started_at__lt=cutoff).filter(Exists(newer_run)).exclude(Exists(during_open_pause))
        .order_by("started_at")
    )
    removed = removed_prune(now=now)
    return Pruned(
        removed_properties=removed.properties,
        removed_syncs=removed.connections,
        runs=_delete_in_batches(old_runs),
        blocks=_delete_in_batches(Block.objects.filter(removed_at__lt=cutoff).order_by("pk")),
        read_days=_delete_in_batches(ExportReadDay.objects.filter(day__lt=cutoff.date()).order_by("pk")),
        tokens=_delete_in_batches(ExportToken.objects.filter(expires_at__lt=cutoff).order_by("pk")),
        jobs=_delete_in_batches(Job.objects.filter(finished_at__lt=cutoff).order_by("pk")),
        undos=_delete_in_batches(Undo.objects.filter(created_at__lt=cutoff).order_by("pk")),
        deliveries=_delete_in_batches(WebhookDelivery.objects.filter(finished_at__lt=cutoff).order_by("pk")),
        state_changes=_delete_in_batches(StateChange.objects.filter(at__lt=cutoff).order_by("at")),
    )
