"""Recording a poll that found nothing new: the write the engine makes most often.

Most polls find a feed unchanged. Their record (the run, the connection's new times and
validators, the lease given back) is written only if the connection is still leased to us and
nobody paused it meanwhile. On PostgreSQL that is one statement, a data-modifying WITH whose
INSERT happens only if its UPDATE found the row: one round trip instead of four (BEGIN, UPDATE,
INSERT, COMMIT), atomic as any single statement is, written by hand because the ORM cannot
express it, and sent past Django's cursor (syncs/direct_sql.py). Elsewhere (SQLite, the demo)
the same two statements run in a transaction. bench/sync.py measures the difference.

Most of what it writes is the same on every poll: the connection healthy (HEALTHY), its lease
given back, and a run with no events and no error. That part is written into the statement
once, as constants; only the times, the validators and the run's status and size are sent as
parameters. Preparing thirty-odd parameters through their model fields on every poll cost more
Python than the statement's round trip.

The record of a healthy connection's poll is not worth waiting for the disk: a crash that
forgets it leaves the connection as it was before the poll, and the poll is made again at the
next turn (direct_sql.NOT_DURABLE). A poll that ends a run of failures is written durably:
forgetting it would leave a failure count that could pause the connection too early.
"""

from __future__ import annotations

import functools

from django.db import connection as db_connection
from django.db import transaction
from psycopg import sql

from syncs import direct_sql
from syncs.connection_state import HEALTHY
from syncs.models import Connection, SyncRun
from syncs.scheduling import LEASE_RELEASED

# Written on every unchanged poll alike.
CONNECTION_CONSTANTS = {**HEALTHY, **LEASE_RELEASED}
# The fields of an unchanged run that differ from poll to poll. Every other field of the run
# keeps the value a new SyncRun has (no events, no error), and is written as that constant.
RUN_VARYING = ("connection", "trigger", "started_at", "finished_at", "outcome", "http_status", "bytes_received")


def unchanged_run_record(*, connection_id: int, holder: str, run: SyncRun, changing: dict, durable: bool) -> bool:
    """Save ``run`` and write the connection's new state, or write nothing and return False when
    the lease is no longer ``holder``'s or the connection was paused meanwhile.

    ``changing``: the connection fields that differ from poll to poll (its times and validators);
    the rest of its new state is CONNECTION_CONSTANTS. ``run``: a new run whose fields other than
    RUN_VARYING hold their defaults. ``durable``: whether the commit must wait for the disk
    (PostgreSQL; see above)."""
    db = direct_sql.database()
    if db.vendor == "postgresql":
        return _in_one_statement(db, connection_id=connection_id, holder=holder, run=run, changing=changing, durable=durable)
    still_ours = Connection.objects.filter(pk=connection_id, lease_holder=holder, paused_at__isnull=True)
    with transaction.atomic():
        kept = still_ours.update(**changing, **CONNECTION_CONSTANTS)
        if kept:
            run.save()
    return bool(kept)


def _in_one_statement(db, *, connection_id: int, holder: str, run: SyncRun, changing: dict, durable: bool) -> bool:
    # The values go to psycopg as they are: aware date-times, strings and integers, which it
    # binds exactly as their model fields would prepare them. Preparing a dozen values through
    # the fields cost about 0.04 ms of a 2 ms poll (bench/sync.py). The constants, JSON
    # among them, are prepared by their fields once, in the statement.
    params = [
        *changing.values(),
        connection_id,
        holder,
        *(getattr(run, attname) for attname in _run_varying_attnames()),
    ]
    durable = durable or not direct_sql.may_skip_disk_wait(db)
    inserted = direct_sql.execute_one(_statement(tuple(changing), durable), params)
    if inserted is None:
        return False
    run.pk = inserted[0]
    run._state.adding, run._state.db = False, db.alias
    return True


@functools.cache
def _run_varying_fields() -> list:
    return [SyncRun._meta.get_field(name) for name in RUN_VARYING]


@functools.cache
def _run_varying_attnames() -> tuple[str, ...]:
    return tuple(field.attname for field in _run_varying_fields())


@functools.cache
def _run_constant_fields() -> list:
    return [field for field in SyncRun._meta.concrete_fields if not field.primary_key and field.name not in RUN_VARYING]


def _literal(field, value) -> str:
    """``value`` prepared by its model field, as the SQL constant psycopg would send, cast to the
    column's type (INSERT ... SELECT gives untyped values no column type: a NULL would be text)."""
    prepared = field.get_db_prep_save(value, db_connection)
    return f"CAST({sql.Literal(prepared).as_string(None)} AS {field.db_type(db_connection)})"


@functools.cache
def _statement(changing_names: tuple[str, ...], durable: bool) -> str:
    """The statement for these changing connection fields, built once: composing it cost more
    than running it."""
    quote = db_connection.ops.quote_name
    connection_meta, run_meta = Connection._meta, SyncRun._meta

    def column(name: str) -> str:
        return quote(connection_meta.get_field(name).column)

    assignments = [f"{column(name)} = %s" for name in changing_names] + [
        f"{column(name)} = {_literal(connection_meta.get_field(name), value)}"
        for name, value in CONNECTION_CONSTANTS.items()
    ]
    new_run = SyncRun()
    run_columns = [quote(field.column) for field in (*_run_varying_fields(), *_run_constant_fields())]
    run_values = [f"CAST(%s AS {field.db_type(db_connection)})" for field in _run_varying_fields()] + [
        _literal(field, getattr(new_run, field.attname)) for field in _run_constant_fields()
    ]
    return (
        f"WITH kept AS (UPDATE {quote(connection_meta.db_table)} SET {', '.join(assignments)} "
        f"WHERE {column('id')} = %s AND {column('lease_holder')} = %s AND {column('paused_at')} IS NULL"
        f"{'' if durable else direct_sql.NOT_DURABLE} RETURNING 1) "
        f"INSERT INTO {quote(run_meta.db_table)} ({', '.join(run_columns)}) SELECT {', '.join(run_values)} FROM kept "
        f"RETURNING {quote(run_meta.pk.column)}"
    )
