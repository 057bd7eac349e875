"""Being a polite client of each portal host, within this process.

At most ``FETCH_PER_HOST_LIMIT`` fetches are in flight to one host at a time, and fewer to a
host we know little of: a host starts with two, and may have one more for every fetch it has
answered in a row, up to the limit. A host whose last fetch ran to its deadline is given one
fetch at a time until one answers. So a portal that hangs holds one or two worker slots, not a
slot per connection it serves. A host that asked us to wait (429, or a ``Retry-After`` on any
answer) is not asked again before that time.

A sync that may not ask its host now is not made to wait: it gives its lease back and comes
again when the host is free (``syncs.engine.lease.connection_defer``), with a little jitter so
that the deferred syncs of one host do not return on the same second.

Limits are counted per worker process: with W processes a host sees at most W times the limit.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

# A host that answered 429 without saying how long to wait is left alone this long.
DEFAULT_BACKOFF_SECONDS = 60
# Deferred syncs come back after the wait plus up to this much.
DEFER_JITTER_SECONDS = 30
# Codes of a fetch that ran out of time: the host may be hanging.
HANGING = frozenset({"timeout"})


def host_of(url: str) -> str:
    try:
        return (urlsplit(url.strip()).hostname or "").lower()
    except ValueError:
        return ""


# A host we know nothing of may have this many fetches in flight.
FIRST_SLOTS = 2


@dataclass
class _Host:
    in_flight: int = 0
    answered: int = 0  # fetches answered in a row (capped at the limit)
    not_before: float = 0.0  # time.monotonic()
    hanging: bool = False

    def slots(self, limit: int) -> int:
        return 1 if self.hanging else min(limit, FIRST_SLOTS + self.answered)


class HostSlots:
    """The fetches in flight per host, and when each host may be asked again. One small entry
    per host this process has asked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}

    def take(self, host: str, *, limit: int | None = None) -> float | None:
        """Take a slot for ``host`` and return None, or return how many seconds to come back
        after without taking one."""
        limit = limit or settings.FETCH_PER_HOST_LIMIT
        now = time.monotonic()
        with self._lock:
            state = self._hosts.setdefault(host, _Host())
            if state.not_before > now:
                return state.not_before - now
            if state.in_flight >= state.slots(limit):
                return 0.0
            state.in_flight += 1
            return None

    def give_back(self, host: str, *, error_code: str | None = None, retry_after: int | None = None) -> None:
        """Give the slot back, with what the fetch learnt about the host."""
        now = time.monotonic()
        with self._lock:
            state = self._hosts.setdefault(host, _Host())
            state.in_flight = max(state.in_flight - 1, 0)
            state.hanging = error_code in HANGING
            state.answered = 0 if state.hanging else min(state.answered + 1, settings.FETCH_PER_HOST_LIMIT)
            if retry_after or error_code == "rate_limited":
                state.not_before = max(state.not_before, now + (retry_after or DEFAULT_BACKOFF_SECONDS))

    def in_flight(self, host: str) -> int:
        with self._lock:
            state = self._hosts.get(host)
            return state.in_flight if state else 0


def defer_seconds(wait: float) -> float:
    """How long a sync refused a slot stays away: the host's wait, plus jitter."""
    return wait + random.uniform(1, DEFER_JITTER_SECONDS)


SLOTS = HostSlots()
