"""A bound on how long a request waits for PostgreSQL, whatever the network between them does.

``statement_timeout`` bounds a query the server runs, TCP keepalives and ``tcp_user_timeout``
notice a peer that vanished, and ``connect_timeout`` bounds a new connection (settings.py). None
of them ends a wait on a connection that is open and acknowledged but never answers (a stalled
proxy or pooler in between): the server never saw the query, and the kernel answers every probe.
Inside ``database_deadline(seconds)`` such a wait is cut: when the time is up, the socket of
this thread's connection is shut down, the driver's wait ends with an error, and the caller sees
Django's ``DatabaseError`` as for any other database failure (the export answers 503).

One watchdog thread per process serves every deadline; entering and leaving one costs a dict
operation. Cutting and leaving are serialised, so a connection is never cut after its deadline
was left (when it may already serve someone else).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator

from django.db import DEFAULT_DB_ALIAS, connections

# How often the watchdog looks at the deadlines it holds: a deadline is kept within this much.
TICK_SECONDS = 0.25


class _Watchdog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[int, tuple[float, object]] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, expires: float, db) -> int:
        with self._lock:
            key = next(self._ids)
            self._deadlines[key] = (expires, db)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="database-deadline", daemon=True)
                self._thread.start()
            return key

    def remove(self, key: int) -> None:
        with self._lock:
            self._deadlines.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(TICK_SECONDS)
            now = time.monotonic()
            with self._lock:
                for key, (expires, db) in list(self._deadlines.items()):
                    if expires <= now:
                        del self._deadlines[key]
                        _cut(db)


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


_WATCHDOG = _Watchdog()


def _forget_after_fork() -> None:
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_forget_after_fork)


@contextlib.contextmanager
def database_deadline(seconds: float, *, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    db = connections[using]
    if db.vendor != "postgresql" or not seconds:
        yield
        return
    key = _WATCHDOG.add(time.monotonic() + seconds, db)
    try:
        yield
    finally:
        _WATCHDOG.remove(key)
