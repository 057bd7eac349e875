"""One watchdog thread per process that ends waits past their deadline, for whatever waits: a
portal's fetch (syncs.engine.fetch) and a request's wait on PostgreSQL (``database_deadline``
below) each give it the moment and what to do then (shut their sockets down, which ends a blocked read at once).

The thread sleeps until the earliest deadline. A deadline left before its time stays in the
heap until then and its owner ignores the call (each owner keeps whether it was left, under its
own lock), so adding one is O(log n) and leaving one costs nothing here.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

from django.db import DEFAULT_DB_ALIAS, connections

log = logging.getLogger(__name__)


class _Watchdog:
    def __init__(self) -> None:
        self._wakeup = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, expires: float, fire: Callable[[], None]) -> None:
        with self._wakeup:
            heapq.heappush(self._heap, (expires, next(self._order), fire))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is fire:
                self._wakeup.notify()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._wakeup.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, fire = heapq.heappop(self._heap)
            try:
                fire()
            except Exception:  # one owner's failure must not stop every other deadline
                log.exception("deadline: ending a wait failed")


_WATCHDOG = _Watchdog()


def at_deadline(expires: float, fire: Callable[[], None]) -> None:
    """Call ``fire`` from the watchdog's thread once ``time.monotonic()`` reaches ``expires``."""
    _WATCHDOG.add(expires, fire)


def _forget_after_fork() -> None:
    # A forked child (Celery's prefork pool) has no watchdog thread: it starts its own.
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_forget_after_fork)


# --------------------------------------------------------------------------- the database's deadline
# A bound on how long a request waits for PostgreSQL, whatever the network between them does.
#
# ``statement_timeout`` bounds a query the server runs, TCP keepalives and ``tcp_user_timeout``
# notice a peer that vanished, and ``connect_timeout`` bounds a new connection (settings.py). None
# of them ends a wait on a connection that is open and acknowledged but never answers (a stalled
# proxy or pooler in between): the server never saw the query, and the kernel answers every probe.
# Inside ``database_deadline(seconds)`` such a wait is cut: when the time is up, the socket of
# this thread's connection is shut down, the driver's wait ends with an error, and the caller sees
# Django's ``DatabaseError`` as for any other database failure (the export answers 503).
#
# The watchdog is the one above, which every deadline of the process shares (the fetch's too).
# Cutting and leaving are serialised, so a connection is never cut after its deadline was
# left (when it may already serve someone else).


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
