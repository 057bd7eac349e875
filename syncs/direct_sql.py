"""The few statements that run on every poll, every changed sync and every export request, sent
past Django's cursor.

Django's query building, its cursor wrapper, its client-side parameter binding and its
per-request health check cost more than these one-row statements take to run (bench/sync.py,
bench/export_profile.py). update_row() and insert() write rows as the ORM's update() and
bulk_create() would, for the writes of a changed sync; everything else stays with the ORM.
Here a statement runs on the DB-API connection under Django's own: on PostgreSQL with the
parameters bound by the server and the statement prepared once per connection, so that it is
planned once, not on every call. A connection kept from earlier that fails is closed and the
statement tried once more on a new one: the recovery Django's health check gives, paid only
when a connection has really died.

Statements are written with ``%s`` placeholders; each database gets its own paramstyle.
"""

from __future__ import annotations

import functools

import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.models.base import ModelState

# Appended to the WHERE clause of a PostgreSQL write whose loss in a crash would change nothing
# anyone sees (a lease, the record of a poll that found nothing new): its commit does not wait
# for the disk. The database stays consistent; a crash can only forget the last fraction of a
# second of such writes, as if those polls had not happened yet, and they are simply made again.
# set_config(..., true) lasts until the end of the statement's own transaction, nothing more.
# SQLite needs nothing: in WAL mode with synchronous=NORMAL no commit waits for the disk.
NOT_DURABLE = " AND set_config('synchronous_commit', 'off', true) IS NOT NULL"


def database():
    """This thread's connection wrapper itself. ``django.db.connection`` is a proxy that looks
    the wrapper up again on every attribute read: a few microseconds each, dozens per poll."""
    return connections[DEFAULT_DB_ALIAS]


def may_skip_disk_wait(db) -> bool:
    """Whether a statement run now may carry NOT_DURABLE: on PostgreSQL, and only when it is
    its own transaction. Inside a caller's transaction the setting would last to that
    transaction's end and cover the caller's own writes too."""
    return db.vendor == "postgresql" and not db.in_atomic_block


def loaded(model, db, *, attnames: tuple[str, ...], values: list):
    """An instance of ``model`` as the ORM would load it with only these fields (the others
    load on first use), without running ``__init__``: for a row of thirty-odd fields that is
    most of the cost of a one-row load. Like ``Model.from_db``, minus ``__init__``'s pass over
    every field and its init signals, which no receiver listens to for these models (a test
    checks)."""
    instance = model.__new__(model)
    instance.__dict__.update(zip(attnames, values, strict=True))
    instance._state = ModelState()
    instance._state.adding, instance._state.db = False, db.alias
    return instance


@functools.cache
def _for_sqlite(sql: str) -> str:
    return sql.replace("%s", "?")


ONE, ALL, NONE = "one", "all", "none"  # what a statement's caller takes of its rows


def _execute(db, sql: str, params: list, *, rows: str = ONE) -> tuple | list[tuple] | None:
    with db.wrap_database_errors:  # psycopg's and sqlite3's errors become Django's DatabaseError
        db.ensure_connection()
        if db.vendor == "postgresql":
            # DATABASE_PREPARED_STATEMENTS=0 (for a pooler that cannot keep them) makes psycopg
            # ignore prepare=True.
            with psycopg.Cursor(db.connection) as cursor:
                cursor.execute(sql, params, prepare=True)
                return _taken(cursor, rows)
        return _taken(db.connection.execute(_for_sqlite(sql), params), rows)


def _taken(cursor, rows: str):
    if rows == ONE:
        return cursor.fetchone()
    return cursor.fetchall() if rows == ALL else None


def execute_one(sql: str, params: list) -> tuple | None:
    """Run one statement and return its first row, if any.

    Outside a transaction the statement commits on its own, and when it fails because a
    connection kept from earlier has died, it is tried once more on a new one. Any other error
    (a constraint, a bad statement) reaches the caller untried: running it again could not
    help. Retrying a write is safe only when running it twice changes nothing more than running
    it once: the callers' writes are conditional on a lease, which a first run that did commit
    has already changed. Inside a transaction nothing is retried: the error reaches the caller,
    whose transaction rolls back.
    """
    return _run(sql, params, rows=ONE)


def execute_all(sql: str, params: list) -> list[tuple]:
    """Run one statement and return all its rows; errors and retries as for execute_one."""
    return _run(sql, params, rows=ALL)


def execute(sql: str, params: list) -> None:
    """Run one statement that returns no rows; errors and retries as for execute_one."""
    _run(sql, params, rows=NONE)


def _run(sql: str, params: list, *, rows: str):
    db = database()
    kept = db.connection is not None and not db.in_atomic_block
    try:
        return _execute(db, sql, params, rows=rows)
    except DatabaseError:
        # is_usable() costs a round trip, paid only here, on the way to an error.
        if not kept or db.is_usable():
            raise
        db.close()
        return _execute(db, sql, params, rows=rows)


def field_converters(model, names) -> list[tuple]:
    """The model's fields of these names, in that order, each with the converters that turn a
    value as the database driver returns it into the field's Python value."""
    meta = model._meta
    db = connections[DEFAULT_DB_ALIAS]
    columns = [meta.get_field(name).get_col(meta.db_table) for name in names]
    # The backend's converters, then the field's: the ORM's compiler applies both, in this order
    # (SQLite's make its naive date-times aware).
    return [
        (column.target, db.ops.get_db_converters(column) + column.get_db_converters(db)) for column in columns
    ]


def load_one(model, sql: str, fields: list[tuple], params: list):
    """The instance of ``model`` that ``sql`` reads (its columns: ``fields``, as field_converters
    gives them), loaded as the ORM would load those fields (see loaded); None if no row."""
    row = execute_one(sql, params)
    if row is None:
        return None
    db = database()
    attnames = tuple(field.attname for field, _ in fields)
    return loaded(model, db, attnames=attnames, values=converted(row, fields, db))


def converted(row, fields: list[tuple], db) -> list:
    """A row's values through their fields' converters: what the ORM's raw() does, without its
    per-call setup (SQLite's dates and booleans, JSON)."""
    values = []
    for value, (field, converters) in zip(row, fields, strict=True):
        for converter in converters:
            value = converter(value, field, db)
        values.append(value)
    return values


# Rows per INSERT: within every database's limit on parameters, as bulk_create batches.
INSERT_BATCH = 500


def update_row(model, pk, values: dict) -> None:
    """``model.objects.filter(pk=pk).update(**values)`` for plain values (no expressions), as
    one prepared statement. Each value is prepared by its field, as the ORM prepares it; like
    the ORM's update(), no auto_now field is touched and no signal is sent."""
    db = database()
    sql, fields = _update_statement(model, tuple(values))
    execute(sql, [*(field.get_db_prep_save(value, db) for field, value in zip(fields, values.values(), strict=True)), pk])


def insert(instances: list) -> None:
    """Save new instances of one model, as ``bulk_create`` does (no save() signals), and give
    each its primary key. Values come from each field's pre_save and get_db_prep_save, as the
    ORM's; one prepared statement per batch."""
    if not instances:
        return
    db = database()
    model = type(instances[0])
    fields = _insert_fields(model)
    for first in range(0, len(instances), INSERT_BATCH):
        batch = instances[first : first + INSERT_BATCH]
        params = [field.get_db_prep_save(field.pre_save(obj, True), db) for obj in batch for field in fields]
        pks = execute_all(_insert_statement(model, len(batch)), params)
        for obj, (pk,) in zip(batch, pks, strict=True):
            obj.pk = pk
            obj._state.adding, obj._state.db = False, db.alias


@functools.lru_cache(maxsize=64)
def _update_statement(model, names: tuple[str, ...]) -> tuple[str, list]:
    meta = model._meta
    quote = database().ops.quote_name
    fields = [meta.get_field(name) for name in names]  # get_field knows attnames too
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    return f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s", fields


@functools.cache
def _insert_fields(model) -> list:
    return [field for field in model._meta.concrete_fields if not field.primary_key]


@functools.lru_cache(maxsize=64)
def _insert_statement(model, rows: int) -> str:
    meta = model._meta
    quote = database().ops.quote_name
    fields = _insert_fields(model)
    row = f"({', '.join(['%s'] * len(fields))})"
    return (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES {', '.join([row] * rows)} RETURNING {quote(meta.pk.column)}"
    )
