"""When connections sync, and who syncs them.

The dispatcher claims due connections, moves their next-due time forward and leases them in one
transaction, so two dispatchers running at once never hand out the same connection twice. A
lease on the row makes sure one worker at a time syncs a connection: a scheduled poll gets it
with its claim, a "Sync now" takes it when it runs (connection_take_lease). Whoever changes what
a sync in flight would act on (how it imports, switching it off) takes the lease back, and that
sync's record, conditional on the lease, is dropped.
"""

from __future__ import annotations

import functools
import itertools
import os
import random
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from syncs import direct_sql
from syncs.models import Connection

# The fields that give a lease back, written with the run's last update.
LEASE_RELEASED = {"lease_holder": "", "lease_until": None}
# What a poll reads of its connection: loaded with the dispatcher's claim, or with the lease a
# "Sync now" takes (connection_take_lease).
POLL_FIELDS = (
    "id", "property", "portal", "direction", "enabled", "paused_at", "import_url", "etag", "last_modified",
    "body_fingerprint", "held_answer", "https_works", "sync_interval_minutes", "consecutive_failures",
)
# What the record of a sync reads of its connection, with the lock on its row (see
# connection_lock_if_leased): the state the operator or a failure may have changed since the lease.
RECORD_FIELDS = (
    "id", "property", "portal", "paused_at", "sync_interval_minutes", "consecutive_failures",
    "held_answer", "held_since", "held_accepted_answer",
)
# Spread syncs over a little time so a thousand feeds on one portal do not fire on the same second.
JITTER_FRACTION = 0.1


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
    """A name that no other sync holds at the same time: this host and process, and a count.
    Drawn once per process, not per poll: a uuid4 per poll cost a system call for entropy."""
    return f"{_holder_prefix}:{next(_holder_count)}"


def jittered(interval: timedelta, *, rng: random.Random | None = None) -> timedelta:
    rng = rng or random
    return interval + timedelta(seconds=rng.uniform(0, interval.total_seconds() * JITTER_FRACTION))


@dataclass(frozen=True, slots=True)
class Claim:
    """A due connection handed to a worker, leased to ``holder`` from the moment it was claimed,
    with what its poll needs to know (``state``: POLL_FIELDS by attribute name, JSON-safe), so
    that the worker's first statement is the poll's record."""

    connection_id: int
    holder: str
    state: dict


def connections_claim_due(*, now: datetime | None = None, limit: int = 500) -> list[Claim]:
    """Claim up to ``limit`` due connections, oldest due first, and lease them to one holder.

    Claiming moves ``next_sync_at`` one interval (plus jitter) ahead, so a connection whose task
    is lost is simply picked up again at its next turn, and takes the lease a worker would
    otherwise take first thing: every poll is one statement shorter (its record), and a
    connection that someone else holds (a "Sync now" running) is not claimed until it is free.
    On PostgreSQL, rows another dispatcher holds are skipped, and the claim is one statement;
    SQLite serialises writers anyway (transaction mode IMMEDIATE).
    """
    now = now or timezone.now()
    holder = new_lease_holder()
    if db_connection.vendor == "postgresql":
        return _claim_in_one_statement(now=now, limit=limit, holder=holder)
    lease_until = now + timedelta(seconds=settings.SYNC_LEASE_SECONDS)
    with transaction.atomic():
        due = Connection.objects.due(now).filter(_free(now)).order_by("next_sync_at", "pk")
        claimed = list(due.values_list("sync_interval_minutes", *_poll_attnames())[:limit])
        Connection.objects.bulk_update(
            [
                Connection(
                    pk=state[0], next_sync_at=now + jittered(timedelta(minutes=minutes)), lease_holder=holder,
                    lease_until=lease_until,
                )
                for minutes, *state in claimed
            ],
            ["next_sync_at", "lease_holder", "lease_until"],
            batch_size=500,
        )
    return [Claim(state[0], holder, dict(zip(_poll_attnames(), state, strict=True))) for _, *state in claimed]


def _free(now: datetime) -> Q:
    return Q(lease_until__isnull=True) | Q(lease_until__lte=now)


def _claim_in_one_statement(*, now: datetime, limit: int, holder: str) -> list[Claim]:
    db = direct_sql.database()
    lease_until = Connection._meta.get_field("lease_until")
    moment = lease_until.get_db_prep_save(now, db)
    until = lease_until.get_db_prep_save(now + timedelta(seconds=settings.SYNC_LEASE_SECONDS), db)
    sql, fields = _claim_statement()
    rows = direct_sql.execute_all(sql, [moment, moment, limit, moment, JITTER_FRACTION, holder, until])
    rows.sort(key=lambda row: (row[0] is None, row[0], row[1]))  # oldest due first, as the ORM orders
    return [Claim(row[1], holder, dict(zip(_poll_attnames(), direct_sql.converted(row[1:], fields, db), strict=True))) for row in rows]


@functools.cache
def _claim_statement() -> tuple[str, list]:
    """Due, free, oldest first, locked or skipped; then moved ahead and leased, in one statement.
    The same conditions as Connection.objects.due(), written for PostgreSQL."""
    quote = db_connection.ops.quote_name
    meta = Connection._meta
    table = quote(meta.db_table)

    def column(name: str) -> str:
        return quote(meta.get_field(name).column)

    fields = direct_sql.field_converters(Connection, POLL_FIELDS)
    export_only = Connection.Direction.EXPORT_ONLY.value
    sql = (
        f"WITH due AS (SELECT {column('id')}, {column('next_sync_at')} FROM {table} "
        f"WHERE {column('enabled')} AND {column('paused_at')} IS NULL AND {column('direction')} <> '{export_only}' "
        f"AND ({column('next_sync_at')} IS NULL OR {column('next_sync_at')} <= %s) "
        f"AND ({column('lease_until')} IS NULL OR {column('lease_until')} <= %s) "
        f"ORDER BY {column('next_sync_at')}, {column('id')} LIMIT %s FOR UPDATE SKIP LOCKED) "
        f"UPDATE {table} c SET "
        f"{column('next_sync_at')} = %s + make_interval(mins => c.{column('sync_interval_minutes')}) * (1 + random() * %s), "
        f"{column('lease_holder')} = %s, {column('lease_until')} = %s "
        f"FROM due WHERE c.{column('id')} = due.{column('id')} "
        f"RETURNING due.{column('next_sync_at')}, {', '.join('c.' + quote(field.column) for field, _ in fields)}"
    )
    return sql, fields


def connection_from_claim(claim: Claim) -> Connection:
    """The claimed connection as a poll reads it: what the claim read. Other fields load on
    first use."""
    state = claim.state
    return direct_sql.loaded(Connection, direct_sql.database(), attnames=tuple(state), values=list(state.values()))


def connection_take_lease(*, connection_id: int, holder: str, now: datetime | None = None) -> Connection | None:
    """Take the connection for ``holder`` unless another worker holds an unexpired lease, and
    return it as taken; None if it is gone or leased.

    For polls not claimed by the dispatcher ("Sync now", the management command, tasks queued
    before claims carried their lease). One statement (UPDATE ... RETURNING) instead of an
    update and a load.
    Only the fields a poll reads are loaded (POLL_FIELDS; others load on first use, one query
    each: tests count a poll's queries), and its property and portal only if the feed changed.
    Its commit does not wait for the disk (direct_sql.NOT_DURABLE): a lease forgotten in a
    crash is a lease given back, which is what a crash should do to it anyway.
    """
    now = now or timezone.now()
    db = direct_sql.database()
    lease_until = Connection._meta.get_field("lease_until")
    params = [
        holder,
        lease_until.get_db_prep_save(now + timedelta(seconds=settings.SYNC_LEASE_SECONDS), db),
        connection_id,
        lease_until.get_db_prep_save(now, db),
        holder,
    ]
    sql, fields = _take_lease_statement(durable=not direct_sql.may_skip_disk_wait(db))
    return direct_sql.load_one(Connection, sql, fields, params)


@functools.cache
def _poll_attnames() -> tuple[str, ...]:
    return tuple(field.attname for field, _ in _take_lease_statement(durable=True)[1])


@functools.cache
def _take_lease_statement(*, durable: bool) -> tuple[str, list]:
    """The lease statement and the fields it returns with their converters, built once."""
    quote = db_connection.ops.quote_name
    meta = Connection._meta

    def column(name: str) -> str:
        return quote(meta.get_field(name).column)

    fields = direct_sql.field_converters(Connection, POLL_FIELDS)
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {column('lease_holder')} = %s, {column('lease_until')} = %s "
        f"WHERE {column('id')} = %s AND ({column('lease_until')} IS NULL OR {column('lease_until')} <= %s "
        f"OR {column('lease_holder')} = %s){'' if durable else direct_sql.NOT_DURABLE} "
        f"RETURNING {', '.join(quote(field.column) for field, _ in fields)}"
    )
    return sql, fields


def connection_lock_if_leased(*, connection_id: int, holder: str) -> Connection | None:
    """Lock the connection's row for the caller's transaction and return it as it is now, if
    ``holder`` still has the lease; None otherwise.

    Only that row: the property and portal stay unlocked, or every sync of a portal would wait
    for all the others. Only RECORD_FIELDS are loaded (others load on first use, one query each;
    tests count a record's queries). A prepared statement rather than the ORM's query: building
    that query and the instance cost about 1 ms of a 9 ms changed sync (bench/sync.py).
    """
    sql, fields = _lock_statement()
    return direct_sql.load_one(Connection, sql, fields, [connection_id, holder])


@functools.cache
def _lock_statement() -> tuple[str, list]:
    quote = db_connection.ops.quote_name
    meta = Connection._meta
    fields = direct_sql.field_converters(Connection, RECORD_FIELDS)
    # SQLite has no row locks: its writers take turns (transaction mode IMMEDIATE).
    lock = " FOR UPDATE" if db_connection.features.has_select_for_update else ""
    sql = (
        f"SELECT {', '.join(quote(field.column) for field, _ in fields)} FROM {quote(meta.db_table)} "
        f"WHERE {quote(meta.get_field('id').column)} = %s AND {quote(meta.get_field('lease_holder').column)} = %s"
        f"{lock}"
    )
    return sql, fields


def connection_acquire_lease(*, connection_id: int, holder: str, now: datetime | None = None) -> bool:
    """Take the connection for ``holder`` unless another worker holds an unexpired lease."""
    return connection_take_lease(connection_id=connection_id, holder=holder, now=now) is not None


def connection_release_lease(*, connection_id: int, holder: str) -> None:
    Connection.objects.filter(pk=connection_id, lease_holder=holder).update(**LEASE_RELEASED)
