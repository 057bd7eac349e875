"""The statements sent past Django's cursor (syncs/direct_sql.py): errors reach the caller as
Django's, and only a dead kept connection is retried."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db import connection as db
from django.db.models.signals import post_init, post_save, pre_init, pre_save

from syncs.direct_sql import execute_one, insert, update_row
from syncs.models import Block, BlockChange, Connection, SyncRun
from syncs.scheduling import connection_lock_if_leased, connection_take_lease
from tests.factories import BlockFactory, ConnectionFactory


@pytest.mark.django_db
def test_a_row_comes_back_with_the_placeholders_of_every_database():
    assert execute_one("SELECT %s + %s", [2, 3]) == (5,)
    assert execute_one("SELECT 1 WHERE 1 = %s", [2]) is None


@pytest.mark.django_db
def test_a_failing_statement_raises_djangos_error():
    with pytest.raises(DatabaseError):
        execute_one("SELECT * FROM no_such_table WHERE id = %s", [1])


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_statement_that_fails_on_a_live_connection_is_not_run_again(postgres):
    # A sequence moves on even when the statement that called it fails: it counts the runs.
    with db.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE direct_sql_runs")
    try:
        execute_one("SELECT 1", [])  # the connection is now kept: a failure could be retried
        with pytest.raises(DatabaseError):
            execute_one("SELECT nextval('direct_sql_runs') / 0", [])
        assert execute_one("SELECT last_value FROM direct_sql_runs", []) == (1,)
    finally:
        with db.cursor() as cursor:
            cursor.execute("DROP SEQUENCE direct_sql_runs")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_kept_connection_that_died_is_replaced_once(postgres):
    first_pid = execute_one("SELECT pg_backend_pid()", [])[0]
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [first_pid])
    other.close()
    assert execute_one("SELECT pg_backend_pid()", [])[0] != first_pid


@pytest.mark.django_db
def test_a_leased_connection_behaves_as_one_the_orm_loaded():
    # connection_take_lease builds its instance without Model.__init__ (direct_sql.loaded):
    # it must read, load what it lacks, and save like an instance of the ORM's own.
    made = ConnectionFactory(etag='"v7"', export_summary="Taken")
    # Model.from_db would send these; loaded() does not, which only holds while nobody listens.
    for model in (Connection, SyncRun):  # the two models built that way
        assert not pre_init.has_listeners(model) and not post_init.has_listeners(model)

    leased = connection_take_lease(connection_id=made.pk, holder="worker-1")

    assert (leased.pk, leased.etag, leased.import_url, leased.enabled) == (made.pk, '"v7"', made.import_url, True)
    assert not leased._state.adding and leased._state.db == DEFAULT_DB_ALIAS
    assert "export_summary" in leased.get_deferred_fields()
    assert leased.export_summary == "Taken"  # loaded on first use
    assert leased.property.name == made.property.name
    leased.sync_interval_minutes = 45
    leased.save(update_fields=["sync_interval_minutes"])
    assert Connection.objects.get(pk=made.pk).sync_interval_minutes == 45
    assert leased == Connection.objects.get(pk=made.pk)


@pytest.mark.django_db
def test_a_locked_connection_reads_as_the_orm_reads_it():
    # connection_lock_if_leased builds its instance the same way, from the fields a record uses.
    # Date-times come back as the ORM gives them: aware, also on SQLite, whose driver hands
    # them over naive (the backend's converters run as well as the field's).
    paused = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
    made = ConnectionFactory(paused_at=paused, held_since=paused, held_answer="abc", consecutive_failures=2)
    assert connection_lock_if_leased(connection_id=made.pk, holder="worker-1") is None  # not leased

    connection_take_lease(connection_id=made.pk, holder="worker-1")
    with transaction.atomic():
        locked = connection_lock_if_leased(connection_id=made.pk, holder="worker-1")

    assert (locked.paused_at, locked.held_since) == (paused, paused)
    assert (locked.held_answer, locked.consecutive_failures, locked.sync_interval) == (
        "abc", 2, made.sync_interval
    )
    assert locked.property_id == made.property_id and locked.portal_id == made.portal_id
    assert "import_url" in locked.get_deferred_fields()
    assert locked == Connection.objects.get(pk=made.pk)


@pytest.mark.django_db
def test_rows_written_past_the_orm_read_back_as_the_orm_wrote_them():
    # The changed sync's writes (syncs/apply.py, syncs/sync.py) go through direct_sql.insert and
    # update_row: each value prepared by its field (JSON, aware date-times, dates, nulls).
    # insert() sends no save() signals, as bulk_create sends none: only safe while nobody
    # listens for these models' saves.
    for model in (SyncRun, BlockChange):
        assert not pre_save.has_listeners(model) and not post_save.has_listeners(model)
    connection = ConnectionFactory()
    started = datetime(2027, 1, 10, 12, 0, 30, 123456, tzinfo=UTC)
    runs = [
        SyncRun(connection=connection, started_at=started, outcome="http_5xx", error_params={"status": 503}),
        SyncRun(connection=connection, started_at=started, finished_at=None, outcome="ok_changed", events_added=3),
    ]

    insert(runs)

    assert all(run.pk and not run._state.adding for run in runs)
    stored = SyncRun.objects.get(pk=runs[0].pk)
    assert (stored.started_at, stored.error_params, stored.trigger) == (started, {"status": 503}, "scheduled")
    assert SyncRun.objects.get(pk=runs[1].pk).events_added == 3

    update_row(Connection, connection.pk, {
        "last_error_params": {"status": 503, "url": "https://x"}, "paused_at": started, "held_since": None,
        "consecutive_failures": 3, "property_id": connection.property_id,
    })  # fmt: skip
    updated = Connection.objects.get(pk=connection.pk)
    assert (updated.last_error_params, updated.paused_at, updated.held_since, updated.consecutive_failures) == (
        {"status": 503, "url": "https://x"}, started, None, 3
    )

    block = BlockFactory(property=connection.property, source=connection)
    update_row(Block, block.pk, {"start_date": date(2027, 3, 1), "end_date": date(2027, 3, 4), "summary": "Reserved"})
    change = BlockChange(block=block, run=runs[1], action="updated", old_start_date=block.start_date, new_start_date=date(2027, 3, 1))
    insert([change])
    assert Block.objects.filter(pk=block.pk, start_date=date(2027, 3, 1), end_date=date(2027, 3, 4)).exists()
    assert BlockChange.objects.get(pk=change.pk).new_start_date == date(2027, 3, 1)
