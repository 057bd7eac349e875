"""When connections sync, and who syncs them.

The dispatcher claims due connections and moves their next-due time forward in one
transaction, so two dispatchers running at once never hand out the same connection twice.
A lease on the row makes sure one worker at a time syncs a connection.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from syncs.models import Connection

# Spread syncs over a little time so a thousand feeds on one portal do not fire on the same second.
JITTER_FRACTION = 0.1


def jittered(interval: timedelta, *, rng: random.Random | None = None) -> timedelta:
    rng = rng or random
    return interval + timedelta(seconds=rng.uniform(0, interval.total_seconds() * JITTER_FRACTION))


def connections_claim_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Claim up to ``limit`` due connections and return their ids, oldest due first.

    Claiming moves ``next_sync_at`` one interval (plus jitter) ahead, so a connection whose task
    is lost is simply picked up again at its next turn. On PostgreSQL, rows another dispatcher
    holds are skipped; SQLite serialises writers anyway (transaction mode IMMEDIATE).
    """
    now = now or timezone.now()
    with transaction.atomic():
        due = Connection.objects.due(now).order_by("next_sync_at", "pk")
        if db_connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, of=("self",))
        claimed = list(due.values_list("pk", "sync_interval_minutes")[:limit])
        Connection.objects.bulk_update(
            [Connection(pk=pk, next_sync_at=now + jittered(timedelta(minutes=minutes))) for pk, minutes in claimed],
            ["next_sync_at"],
            batch_size=500,
        )
    return [pk for pk, _ in claimed]


def connection_acquire_lease(*, connection_id: int, holder: str, now: datetime | None = None) -> bool:
    """Take the connection for ``holder`` unless another worker holds an unexpired lease."""
    now = now or timezone.now()
    taken = (
        Connection.objects.filter(pk=connection_id)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now) | Q(lease_holder=holder))
        .update(lease_holder=holder, lease_until=now + timedelta(seconds=settings.SYNC_LEASE_SECONDS))
    )
    return taken == 1


def connection_release_lease(*, connection_id: int, holder: str) -> None:
    Connection.objects.filter(pk=connection_id, lease_holder=holder).update(lease_holder="", lease_until=None)
