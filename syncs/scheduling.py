"""When connections sync, and who syncs them.

The dispatcher claims due connections and moves their next-due time forward in one
transaction, so two dispatchers running at once never hand out the same connection twice.
A lease on the row makes sure one worker at a time syncs a connection.
"""

from __future__ import annotations

import functools
import random
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from syncs import direct_sql
from syncs.models import Connection

# The fields that give a lease back, written with the run's last update.
LEASE_RELEASED = {"lease_holder": "", "lease_until": None}
# What a poll reads of its connection, loaded with the lease (see connection_take_lease).
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


def connection_take_lease(*, connection_id: int, holder: str, now: datetime | None = None) -> Connection | None:
    """Take the connection for ``holder`` unless another worker holds an unexpired lease, and
    return it as taken; None if it is gone or leased.

    One statement (UPDATE ... RETURNING) instead of an update and a load: every poll starts
    here, and on an unchanged feed the database work is most of a poll's cost (bench/sync.py).
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
    row = direct_sql.execute_one(sql, params)
    if row is None:
        return None
    values = direct_sql.converted(row, fields, db)
    return direct_sql.loaded(Connection, db, attnames=_poll_attnames(), values=values)


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
    db = direct_sql.database()
    sql, fields = _lock_statement()
    row = direct_sql.execute_one(sql, [connection_id, holder])
    if row is None:
        return None
    values = direct_sql.converted(row, fields, db)
    return direct_sql.loaded(Connection, db, attnames=_record_attnames(), values=values)


@functools.cache
def _record_attnames() -> tuple[str, ...]:
    return tuple(field.attname for field, _ in _lock_statement()[1])


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
