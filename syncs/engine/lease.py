"""When connections sync, and who syncs them.

The dispatcher claims due connections: in one transaction it moves their next turn one interval
ahead and leases them to a claim id, so two dispatchers running at once never hand out the same
connection twice. A task carries the connection's id and that claim id, nothing of the
connection itself: the worker keeps the claim's lease (never a free one, nor anyone else's) and
reads the connection as it is then (syncs.engine.task).

A claim is served once: its lease is given back only with the run's record, or when the sync is
not to run after all (switched off, paused, its portal host busy). A claim whose lease expired
still held (its worker lost: killed, or cut off from the network) is taken over by a dispatcher
run that finds no sync waiting in the broker's queue, for the same turn: a new claim leases it
without moving its next turn. The lost worker's task, should it ever run or answer again, no
longer holds the lease and writes nothing.

A lease on the row makes sure one worker at a time syncs a connection. Changes to what a sync
reads go through syncs.sync_settings, which moves the row's settings version on: a sync that
read an older version records nothing.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from syncs.models import Connection, SyncRun

log = logging.getLogger(__name__)

# What a sync reads of its connection, property and portal (other fields would load on first use,
# one query each: tests count a poll's queries).
POLL_FIELDS = (
    "property__timezone", "portal__labels", "direction", "enabled", "paused_at", "import_url", "etag", "last_modified",
    "body_fingerprint", "held_answer", "held_since", "held_accepted_answer", "https_works", "sync_interval_minutes",
    "consecutive_failures", "settings_version", "state",
)
# The fields that give a lease back, written with the run's last update.
LEASE_RELEASED = {"lease_holder": "", "lease_until": None}
# Spread syncs over a little time so a thousand feeds on one portal do not fire on the same second.
JITTER_FRACTION = 0.1
# Claimed connections of one interval get one of this many jitters (a record draws its own).
CLAIM_JITTERS = 8
# What a dispatcher's claim's holder starts with (a "Sync now" holds leases under other names).
CLAIM_PREFIX = "claim:"


def _holder_names() -> tuple[str, itertools.count]:
    # Random rather than the pid: pids repeat across restarts and containers.
    return f"{socket.gethostname()}:{secrets.token_hex(4)}", itertools.count(1)


_holder_prefix, _holder_count = _holder_names()


def _new_holder_names_after_fork() -> None:
    # Each of Celery's pool processes is its own holder.
    global _holder_prefix, _holder_count
    _holder_prefix, _holder_count = _holder_names()


os.register_at_fork(after_in_child=_new_holder_names_after_fork)


def new_lease_holder() -> str:
    """A name that no other sync holds at the same time: this host and process, and a count."""
    return f"{_holder_prefix}:{next(_holder_count)}"


def new_claim_holder() -> str:
    """A dispatcher's claim: a lease holder whose expired lease the next dispatcher takes over."""
    return f"{CLAIM_PREFIX}{new_lease_holder()}"


def jittered(interval: timedelta, *, rng: random.Random | None = None) -> timedelta:
    rng = rng or random
    return interval + timedelta(seconds=rng.uniform(0, interval.total_seconds() * JITTER_FRACTION))


@dataclass(frozen=True, slots=True)
class Claim:
    """A due connection handed to a worker: its id and the claim's lease holder, both ids.
    ``taken_over``: an earlier claim of the same turn whose lease expired unserved."""

    connection_id: int
    holder: str
    taken_over: bool = False


def _free(now: datetime) -> Q:
    return Q(lease_until__isnull=True) | Q(lease_until__lte=now)


def _due(now: datetime) -> Q:
    return Q(next_sync_at__isnull=True) | Q(next_sync_at__lte=now)


def _abandoned_claim(now: datetime) -> Q:
    """A claim's lease that expired with its turn unserved: a record, or a sync that is not to
    run, gives the lease back."""
    return Q(lease_holder__startswith=CLAIM_PREFIX, lease_until__lte=now)


def connections_claim_due(*, now: datetime | None = None, limit: int = 500, take_over: bool = False) -> list[Claim]:
    """Claim up to ``limit`` due connections, oldest due first, and lease them to one holder;
    with ``take_over``, the claims whose lease expired unserved too. Only the caller knows
    whether such a claim's worker was lost: its task may still be waiting in the broker's queue
    behind a backlog longer than a lease (syncs.tasks takes over once no sync waits there).

    Claiming moves ``next_sync_at`` one interval (plus jitter) ahead; taking over does not (the
    turn is the one the lost claim moved on from). A connection someone holds (a "Sync now"
    running, a claim being synced) is not claimed until it is free or its claim expired. On
    PostgreSQL the rows another dispatcher is claiming, or a worker is recording, are skipped
    (``FOR UPDATE SKIP LOCKED``); SQLite serialises writers anyway (transaction mode IMMEDIATE).
    """
    now = now or timezone.now()
    holder = new_claim_holder()
    with transaction.atomic():
        due = (
            Connection.objects.runnable()
            .filter((_due(now) & _free(now)) | (_abandoned_claim(now) if take_over else Q(pk__in=[])))
            .order_by("next_sync_at", "pk")
            .select_for_update(skip_locked=True)
        )
        claimed = list(due.values_list("pk", "sync_interval_minutes", "next_sync_at")[:limit])
        taken_over = {pk for pk, _minutes, turn in claimed if turn is not None and turn > now}
        # A few statements per batch, not one per row (nor one CASE over the whole batch): the
        # rows of one interval share CLAIM_JITTERS jitters, drawn afresh for each claim.
        groups: dict[tuple[int, int], list[int]] = {}
        for pk, minutes, _turn in claimed:
            if pk not in taken_over:
                groups.setdefault((minutes, random.randrange(CLAIM_JITTERS)), []).append(pk)
        lease = {"lease_holder": holder, "lease_until": now + timedelta(seconds=settings.SYNC_LEASE_SECONDS)}
        jitters: dict[int, list[timedelta]] = {}
        for (minutes, slot), ids in groups.items():
            if minutes not in jitters:
                jitters[minutes] = [jittered(timedelta(minutes=minutes)) for _ in range(CLAIM_JITTERS)]
            Connection.objects.filter(pk__in=ids).update(next_sync_at=now + jitters[minutes][slot], **lease)
        if taken_over:
            Connection.objects.filter(pk__in=taken_over).update(**lease)
    return [Claim(pk, holder, pk in taken_over) for pk, _minutes, _turn in claimed]


def connection_acquire_lease(*, connection_id: int, holder: str, now: datetime | None = None) -> bool:
    """Take the connection for ``holder`` unless someone else holds an unexpired lease. A holder
    may take its own lease again (a retried task of a claim)."""
    now = now or timezone.now()
    return bool(
        Connection.objects.filter(pk=connection_id)
        .filter(_free(now) | Q(lease_holder=holder))
        .update(lease_holder=holder, lease_until=now + timedelta(seconds=settings.SYNC_LEASE_SECONDS))
    )


def connection_keep_claim(*, connection_id: int, holder: str, now: datetime | None = None) -> bool:
    """Renew the claim ``holder``'s lease if the claim still holds it, expired or not: never a
    lease given back (its turn was served) or taken over (another claim serves it)."""
    now = now or timezone.now()
    return bool(
        Connection.objects.filter(pk=connection_id, lease_holder=holder).update(
            lease_until=now + timedelta(seconds=settings.SYNC_LEASE_SECONDS)
        )
    )


def connection_release_lease(*, connection_id: int, holder: str) -> None:
    Connection.objects.filter(pk=connection_id, lease_holder=holder).update(**LEASE_RELEASED)


class LeaseLost(Exception):
    """Someone else holds the connection now, or its settings changed since we read them (see
    syncs.sync_settings): our result is dropped."""


def connection_lease_and_read(*, connection_id: int, holder: str, claimed: bool = False) -> Connection | None:
    """Take the connection's lease for ``holder`` and read it, with its property and portal, as
    it is now; None if it is gone or someone else holds it.

    ``claimed``: ``holder`` is a dispatcher's claim, which leased the row when it claimed it. The
    claim's task keeps that lease, and only that: a lease given back means the claim's turn was
    served (a task delivered again, or a lost worker's late one), a lease someone else holds
    means it was taken over (connections_claim_due). A task that finds the lease still its own with
    at least half its length to run needs no write to keep it: it reads the row in one
    statement; otherwise (it waited in the queue, or it is a retry) it renews the lease first.
    Anyone else (a "Sync now") takes the lease if it is free.
    """
    rows = Connection.objects.select_related("property", "portal").only(*POLL_FIELDS).filter(
        pk=connection_id, lease_holder=holder
    ).order_by()
    if claimed:
        spare = timezone.now() + timedelta(seconds=settings.SYNC_LEASE_SECONDS / 2)
        held = next(iter(rows.filter(lease_until__gte=spare)[:1]), None)
        if held is not None:
            return held
        if not connection_keep_claim(connection_id=connection_id, holder=holder):
            return None
    elif not connection_acquire_lease(connection_id=connection_id, holder=holder):
        return None
    return next(iter(rows[:1]), None)


@dataclass(frozen=True)
class Leased:
    """A connection leased for a sync: as read under the lease, and the lease's holder.
    ``claimed``: the holder is a dispatcher's claim, whose lease a retry of its task takes again."""

    connection: Connection
    holder: str
    claimed: bool


def connection_lease_for_sync(
    *, connection_id: int, trigger: str, holder: str | None = None, switched_off_too: bool = False
) -> Leased | None:
    """Take the connection's lease for a sync and read it, unless it is gone or someone else
    holds it; None, with the lease given back, if it is not to sync: it imports nothing, it is
    switched off (but for ``switched_off_too``: an administrator's explicit sync from the
    command line), or it is paused and the sync is a scheduled one. ``holder``: the dispatcher's
    claim, for a scheduled poll (its task, retried or not, takes the lease again); a new one
    otherwise. A request ("Sync now") that finds the connection not to sync is served, so it
    is asked no more."""
    claimed = holder is not None
    holder = holder or new_lease_holder()
    connection = connection_lease_and_read(connection_id=connection_id, holder=holder, claimed=claimed)
    if connection is None:
        log.info("sync skipped connection=%s reason=gone_or_leased", connection_id)
        return None
    switched_off = not connection.enabled and not switched_off_too
    paused = trigger == SyncRun.Trigger.SCHEDULED and connection.paused_at is not None
    if connection.imports and not switched_off and not paused:
        return Leased(connection=connection, holder=holder, claimed=claimed)
    if connection.imports and switched_off:
        # Switched off since the request was made: nothing is imported until it is switched on.
        log.info("sync skipped connection=%s reason=switched_off", connection_id)
    if trigger != SyncRun.Trigger.SCHEDULED:
        Connection.objects.filter(pk=connection_id, sync_requested_at__isnull=False).update(sync_requested_at=None)
    connection_release_lease(connection_id=connection_id, holder=holder)
    return None
