"""Run a piece of a test in a forked child under a hard wall-clock and memory limit.

A hostile feed that makes the parser loop or balloon must fail its test, not take the test run
down with it: the child gets an address-space limit (``RLIMIT_AS``: past it, allocations raise
MemoryError) and is killed at the wall-clock limit. The child starts as a copy of the test
process (its settings, its travelled clock, its loopback portals, and on SQLite its in-memory
database); on PostgreSQL it opens a connection of its own, so the test's data must be committed
(``django_db(transaction=True)``).
"""

from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connections

MiB = 1024 * 1024


@dataclass
class Isolated:
    value: Any
    seconds: float  # wall-clock time of the work in the child
    peak_growth: int  # bytes the child's resident memory grew at its peak, over the parent's


def run_isolated(work: Callable[[], Any], *, seconds: float, memory: int) -> Isolated:
    """``work()``'s value from a child limited to ``seconds`` and ``memory`` bytes more address
    space than the test process has now; its exception fails the test, with its traceback."""
    reader, writer = os.pipe()
    rss_before = _rss()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(reader)
        _child(work, writer, memory)
    os.close(writer)
    chunks, deadline = [], time.monotonic() + seconds
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([reader], [], [], max(left, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"killed after {seconds} s: still running")
            chunk = os.read(reader, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(reader)
    _, status, usage = os.wait4(pid, 0)
    if not chunks:
        pytest.fail(f"the child died without an answer (status {status})")
    kind, value, took = pickle.loads(b"".join(chunks))
    if kind == "error":
        pytest.fail(f"the child raised:\n{value}")
    return Isolated(value=value, seconds=took, peak_growth=max(usage.ru_maxrss * 1024 - rss_before, 0))


def _child(work: Callable[[], Any], writer: int, memory: int) -> None:
    try:
        limit = _address_space() + memory
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        database = connections["default"]
        if database.vendor != "sqlite" and database.connection is not None:
            # The parent's session is not ours to use: keep its socket untouched (os._exit runs
            # no finalizer that would close it) and open a connection of our own.
            _kept.append(database.connection)
            database.connection = None
        started = time.monotonic()
        payload = ("ok", work(), time.monotonic() - started)
    except BaseException:
        payload = ("error", traceback.format_exc(), 0.0)
    try:
        data = pickle.dumps(payload)
    except Exception:
        data = pickle.dumps(("error", traceback.format_exc(), 0.0))
    view = memoryview(data)
    while view:
        view = view[os.write(writer, view) :]
    os._exit(0)


_kept: list = []


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _address_space() -> int:
    return _status("VmSize")


def _rss() -> int:
    return _status("VmRSS")
