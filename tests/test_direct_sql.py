"""The statements sent past Django's cursor (syncs/direct_sql.py): errors reach the caller as
Django's, and only a dead kept connection is retried."""

from __future__ import annotations

import pytest
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db import connection as db

from syncs.direct_sql import execute_one


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
