"""One watchdog thread per process that ends waits past their deadline, for whatever waits: a
portal's fetch (syncs.engine.fetch) and a request's wait on PostgreSQL (syncs.engine.db_deadline) each give it
the moment and what to do then (shut their sockets down, which ends a blocked read at once).

The thread sleeps until the earliest deadline. A deadline left before its time stays in the
heap until then and its owner ignores the call (each owner keeps whether it was left, under its
own lock), so adding one is O(log n) and leaving one costs nothing here.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable

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
