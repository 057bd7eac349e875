"""Is the service able to work? The database and the broker, checked with short timeouts."""

from __future__ import annotations

from django.db import DatabaseError, connection

from channelmgr.celery import app


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        return False


def broker_ok() -> bool:
    try:
        with app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=2)
        return True
    except Exception:  # any failure to reach the broker means "down"
        return False
