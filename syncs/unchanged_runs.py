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
# The fields of an unchanged run that differ from poll to poll, by attribute name. Every other
# field of the run holds its default (no events, no error), and is written as that constant.
RUN_VARYING = ("connection_id", "trigger", "started_at", "finished_at", "outcome", "http_status", "bytes_received")


def unchanged_run_record(
    *, connection_id: int, holder: str, run_values: dict, changing: dict, durable: bool
) -> SyncRun | None:
    """Save the run of an unchanged poll and write the connection's new state, and return the
    run; or write nothing and return None when the lease is no longer ``holder``'s or the
    connection was paused meanwhile.

    ``run_values``: the run's RUN_VARYING fields. ``changing``: the connection fields that
    differ from poll to poll (its times and validators); the rest of its new state is
    CONNECTION_CONSTANTS. ``durable``: whether the commit must wait for the disk (PostgreSQL;
    see above)."""
    db = direct_sql.database()
    if db.vendor == "postgresql":
        return _in_one_statement(
            db, connection_id=connection_id, holder=holder, run_values=run_values, changing=changing, durable=durable
        )
    still_ours = Connection.objects.filter(pk=connection_id, lease_holder=holder, paused_at__isnull=True)
    with transaction.atomic():
        if not still_ours.update(**changing, **CONNECTION_CONSTANTS):
            return None
        return SyncRun.objects.create(**run_values)


def _in_one_statement(
    db, *, connection_id: int, holder: str, run_values: dict, changing: dict, durable: bool
) -> SyncRun | None:
    # The values go to psycopg as they are: aware date-times, strings and integers, which it
    # binds exactly as their model fields would prepare them. Preparing a dozen values through
    # the fields cost about 0.04 ms of a 2 ms poll (bench/sync.py). The constants, JSON
    # among them, are prepared by their fields once, in the statement.
    varying = [run_values[name] for name in RUN_VARYING]
    params = [*changing.values(), connection_id, holder, *varying]
    durable = durable or not direct_sql.may_skip_disk_wait(db)
    inserted = direct_sql.execute_one(_statement(tuple(changing), durable), params)
    if inserted is None:
        return None
    # The run as the ORM would load it back, without the cost of Model.__init__ (a tenth of a
    # millisecond, in a poll's rhythm). Defaults are made afresh: the JSON one is a new dict.
    values = [inserted[0], *varying, *(field.get_default() for field in _run_constant_fields())]
    return direct_sql.loaded(SyncRun, db, attnames=_run_attnames(), values=values)


@functools.cache
def _run_constant_fields() -> list:
    return [field for field in SyncRun._meta.concrete_fields if not field.primary_key and field.attname not in RUN_VARYING]


@functools.cache
def _run_attnames() -> tuple[str, ...]:
    return (SyncRun._meta.pk.attname, *RUN_VARYING, *(field.attname for field in _run_constant_fields()))


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
    varying_fields = [run_meta.get_field(name) for name in RUN_VARYING]  # get_field knows attnames too
    run_columns = [quote(field.column) for field in (*varying_fields, *_run_constant_fields())]
    run_values = [f"CAST(%s AS {field.db_type(db_connection)})" for field in varying_fields] + [
        _literal(field, field.get_default()) for field in _run_constant_fields()
    ]
    return (
        f"WITH kept AS (UPDATE {quote(connection_meta.db_table)} SET {', '.join(assignments)} "
        f"WHERE {column('id')} = %s AND {column('lease_holder')} = %s AND {column('paused_at')} IS NULL"
        f"{'' if durable else direct_sql.NOT_DURABLE} RETURNING 1) "
        f"INSERT INTO {quote(run_meta.db_table)} ({', '.join(run_columns)}) SELECT {', '.join(run_values)} FROM kept "
        f"RETURNING {quote(run_meta.pk.column)}"
    )
