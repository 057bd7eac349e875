"""Recording a poll that found nothing new: the write the engine makes most often.

Most polls find a feed unchanged. Their record (the run, the connection's new times and
validators, the lease given back) is written only if the connection is still leased to us and
nobody paused it meanwhile. On PostgreSQL that is one statement, a data-modifying WITH whose
INSERT happens only if its UPDATE found the row: one round trip instead of four (BEGIN, UPDATE,
INSERT, COMMIT), atomic as any single statement is, written by hand because the ORM cannot
express it, and sent past Django's cursor (syncs/direct_sql.py). Elsewhere (SQLite, the demo)
the same two statements run in a transaction. bench/sync.py measures the difference.

The record of a healthy connection's poll is not worth waiting for the disk: a crash that
forgets it leaves the connection as it was before the poll, and the poll is made again at the
next turn (direct_sql.NOT_DURABLE). A poll that ends a run of failures is written durably:
forgetting it would leave a failure count that could pause the connection too early.
"""

from __future__ import annotations

import functools

from django.db import connection as db_connection
from django.db import transaction

from syncs import direct_sql
from syncs.models import Connection, SyncRun


def unchanged_run_record(*, connection_id: int, holder: str, run: SyncRun, updates: dict, durable: bool) -> bool:
    """Save ``run`` and apply ``updates`` to the connection, or write nothing and return False
    when the lease is no longer ``holder``'s or the connection was paused meanwhile.

    ``durable``: whether the commit must wait for the disk (PostgreSQL; see above)."""
    if db_connection.vendor == "postgresql":
        return _in_one_statement(
            connection_id=connection_id, holder=holder, run=run, updates=updates, durable=durable
        )
    still_ours = Connection.objects.filter(pk=connection_id, lease_holder=holder, paused_at__isnull=True)
    with transaction.atomic():
        kept = still_ours.update(**updates)
        if kept:
            run.save()
    return bool(kept)


def _in_one_statement(*, connection_id: int, holder: str, run: SyncRun, updates: dict, durable: bool) -> bool:
    names = tuple(updates)
    connection_field = Connection._meta.get_field
    db = direct_sql.database()
    params = [
        *(connection_field(name).get_db_prep_save(value, db) for name, value in updates.items()),
        connection_id,
        holder,
        *(field.get_db_prep_save(field.pre_save(run, add=True), db) for field in _run_fields()),
    ]
    durable = durable or not direct_sql.may_skip_disk_wait(db)
    inserted = direct_sql.execute_one(_statement(names, durable), params)
    if inserted is None:
        return False
    run.pk = inserted[0]
    run._state.adding, run._state.db = False, db.alias
    return True


@functools.cache
def _run_fields() -> list:
    return [field for field in SyncRun._meta.concrete_fields if not field.primary_key]


@functools.cache
def _statement(update_names: tuple[str, ...], durable: bool) -> str:
    """The statement for these connection fields, built once: composing it cost more than
    running it. Values are prepared by each field, as the ORM would (JSON, time zones)."""
    quote = db_connection.ops.quote_name
    connection_meta, run_meta = Connection._meta, SyncRun._meta

    def column(name: str) -> str:
        return quote(connection_meta.get_field(name).column)

    assignments = ", ".join(f"{column(name)} = %s" for name in update_names)
    run_columns = ", ".join(quote(field.column) for field in _run_fields())
    # INSERT ... SELECT gives untyped parameters no column type (a NULL would be text): cast each.
    run_values = ", ".join(f"CAST(%s AS {field.db_type(db_connection)})" for field in _run_fields())
    return (
        f"WITH kept AS (UPDATE {quote(connection_meta.db_table)} SET {assignments} "
        f"WHERE {column('id')} = %s AND {column('lease_holder')} = %s AND {column('paused_at')} IS NULL"
        f"{'' if durable else direct_sql.NOT_DURABLE} RETURNING 1) "
        f"INSERT INTO {quote(run_meta.db_table)} ({run_columns}) SELECT {run_values} FROM kept "
        f"RETURNING {quote(run_meta.pk.column)}"
    )
