"""Limits on how often something may happen ("5 reset requests per client a quarter hour"),
counted in the shared cache so that every web process and worker counts together: Redis when
``REDIS_URL`` is set, the database otherwise (settings.CACHES). A count kept in each process's
memory lets N gunicorn processes do N times what the limit says.
"""

from __future__ import annotations

import hashlib
import time

from django.core.cache import cache


def rate_limit_take(key: str, *, limit: int, seconds: int) -> bool:
    """Take one of the ``limit`` turns of the ``seconds``-long window this moment falls in;
    False when every turn is taken.

    Each turn is a ``cache.add`` of its own key, which one process alone can make (an atomic
    SET NX on Redis, an INSERT on the database), so processes asking at the same moment never
    take one turn twice, on either backend."""
    window = int(time.time()) // seconds
    return any(cache.add(f"syncs:limit:{key}:{window}:{turn}", 1, seconds) for turn in range(limit))


def rate_limit_give_back(key: str, *, limit: int, seconds: int) -> None:
    """Give back the last turn taken in this window (what it allowed did not happen)."""
    window = int(time.time()) // seconds
    for turn in reversed(range(limit)):
        if cache.delete(f"syncs:limit:{key}:{window}:{turn}"):
            return


def digest(value: str) -> str:
    """A cache key's part for a value that is personal (an email address) or long."""
    return hashlib.sha256(value.encode()).hexdigest()
