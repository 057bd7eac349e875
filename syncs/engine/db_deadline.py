"""A bound on how long a request waits for PostgreSQL, whatever the network between them does.

``statement_timeout`` bounds a query the server runs, TCP keepalives and ``tcp_user_timeout``
notice a peer that vanished, and ``connect_timeout`` bounds a new connection (settings.py). None
of them ends a wait on a connection that is open and acknowledged but never answers (a stalled
proxy or pooler in between): the server never saw the query, and the kernel answers every probe.
Inside ``database_deadline(seconds)`` such a wait is cut: when the time is up, the socket of
this thread's connection is shut down, the driver's wait ends with an error, and the caller sees
Django's ``DatabaseError`` as for any other database failure (the export answers 503).

The watchdog is the one every deadline of the process shares (syncs.engine.deadlines, the fetch's
too). Cutting and leaving are serialised, so a connection is never cut after its deadline was
left (when it may already serve someone else).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

from django.db import DEFAULT_DB_ALIAS, connections

from syncs.engine.deadlines import at_deadline


class _Cut:
    """What the watchdog does at one deadline: cut the connection's socket, unless the deadline
    was left first (leaving and cutting are serialised: the connection may serve someone else
    once left)."""

    def __init__(self, db) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._left = False

    def fire(self) -> None:
        with self._lock:
            if not self._left:
                _cut(self._db)

    def leave(self) -> None:
        with self._lock:
            self._left = True


def _cut(db) -> None:
    """Shut down the socket under the connection wrapper ``db`` holds now, if any."""
    raw = getattr(db, "connection", None)
    fileno = getattr(raw, "fileno", None)  # psycopg's connection; SQLite's has no socket
    if fileno is None:
        return
    with contextlib.suppress(Exception):  # closed meanwhile: nothing left to cut
        sock = socket.socket(fileno=os.dup(fileno()))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


@contextlib.contextmanager
def database_deadline(seconds: float, *, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    db = connections[using]
    if db.vendor != "postgresql" or not seconds:
        yield
        return
    cut = _Cut(db)
    at_deadline(time.monotonic() + seconds, cut.fire)
    try:
        yield
    finally:
        cut.leave()
