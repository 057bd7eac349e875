"""This thread's database connection around calls to the outside world, and when it fails us.

* ``database_idle``: before a wait on the network (a portal, a webhook's receiver, the mail
  server), give the connection back to the worker's pool, so that a receiver that hangs holds a
  thread, never one of the few connections every sync of every account shares. The next query
  takes one again.
* ``database_unavailable``: whether a database error is ours to bear (the database could not be
  reached, had no connection to give, or another transaction was in the way) rather than
  something about what was being written. A sync that meets one records nothing against its
  connection (no failed run, no step towards a pause): the task tries again (syncs.engine.task).
"""

from __future__ import annotations

import psycopg_pool
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections

# SQLSTATE classes and codes that say nothing about the data (PostgreSQL, Appendix A): the
# connection failed or the server refused one (08), the server is out of connections or other
# resources (53: "too many connections" included), it is shutting down or starting (57P01-57P03),
# or another transaction was in the way (40001 serialization failure, 40P01 deadlock, 55P03 lock
# not available: lock_timeout). A statement timeout (57014) is not among them: a feed large
# enough to cause one would cause it again, and the operator must see it.
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53")
UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01", "55P03"})


def database_idle(using: str = DEFAULT_DB_ALIAS) -> None:
    """Give this thread's connection back to the pool while we wait on the network, when there
    is a pool and no transaction is open. Without a pool (SQLite; PostgreSQL in a web process,
    one kept connection per thread) holding it costs no one else anything."""
    db = connections[using]
    if db.settings_dict.get("OPTIONS", {}).get("pool") and not db.in_atomic_block:
        db.close()


def database_unavailable(exc: BaseException, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether ``exc`` (raised by Django's database layer) means our database failed us, not the
    statement: no connection to be had (pool timeout, too many connections, server down or
    restarting), the connection lost, or a lock or deadlock in the way."""
    if isinstance(exc, InterfaceError):
        return True  # the connection was closed under us
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if isinstance(cause, psycopg_pool.PoolTimeout | psycopg_pool.PoolClosed | psycopg_pool.TooManyRequests):
        return True  # the worker's pool had no connection to give
    sqlstate = getattr(cause, "sqlstate", None) or ""
    if sqlstate.startswith(UNAVAILABLE_SQLSTATE_CLASSES) or sqlstate in UNAVAILABLE_SQLSTATES:
        return True
    if type(cause).__module__ == "sqlite3":
        # SQLite's driver has no SQLSTATE: "database is locked" is another writer, for longer
        # than the timeout. The error says which driver raised it, whatever the default database.
        return "locked" in str(cause)
    db = connections[using]
    # psycopg raises what keeps a connection from being made or kept (refused, reset, a pool
    # timeout) without a SQLSTATE; whatever the error, a connection that is gone or no longer
    # answers was not the statement's fault.
    return db.connection is None or not db.is_usable()
