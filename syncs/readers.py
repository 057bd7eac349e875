"""Who reads our export URLs, and whether they still do: what a connection's export tokens say
(their reads are recorded by syncs.export_reads)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from syncs.models import Connection, ExportToken

# A portal that publishes no pick-up delay is expected to read at least every 6 hours.
DEFAULT_PICKUP_MINUTES = 360
# A reader is "stale" after its portal's longest usual pick-up delay times this.
STALE_FACTOR = 3


@dataclass(frozen=True, slots=True)
class ExportReaderFacts:
    """What the operator needs to know about who reads a connection's export URL."""

    state: str  # "reading", "waiting" (new URL, not read yet), "never_read", "stale"
    last_read_at: datetime | None
    last_reader: str
    expected_within: timedelta
    old_url_reader: str = ""  # after a rotation, who still reads the old URL
    old_url_read_at: datetime | None = None

    @property
    def needs_attention(self) -> bool:
        # A rotated-out URL that is still read, whoever reads it (the reader may be unknown).
        return self.state in {"never_read", "stale"} or self.old_url_read_at is not None


def expected_within(pickup_max_minutes: int | None) -> timedelta:
    """How long a portal with this pick-up delay may go without reading our calendar."""
    return timedelta(minutes=(pickup_max_minutes or DEFAULT_PICKUP_MINUTES) * STALE_FACTOR)


def _current(tokens: list) -> Any:
    """The URL in use now among a connection's tokens: the newest that does not expire (ties keep
    the first, as max() would); None when there is none."""
    current = None
    for token in tokens:
        if token.expires_at is None and (current is None or token.created_at > current.created_at):
            current = token
    return current


def export_facts(*, tokens: list, pickup_max_minutes: int | None, now: datetime) -> ExportReaderFacts | None:
    """Facts from a connection's serving tokens (objects with created_at, expires_at,
    last_read_at, last_reader). Pure, so pages listing thousands of connections need no query each."""
    # Plain loops: this runs for every sync of an account on the overview. Ties keep the first,
    # as max() would.
    current = _current(tokens)
    if current is None:
        return None
    expected = expected_within(pickup_max_minutes)
    if current.last_read_at is None:
        state = "never_read" if now - current.created_at > expected else "waiting"
    else:
        state = "stale" if now - current.last_read_at > expected else "reading"
    old = None  # the rotated-out URL read most recently since the current one was made
    for token in tokens:
        read_at = token.last_read_at
        if (token.expires_at is not None and read_at and read_at > current.created_at
                and (old is None or read_at > old.last_read_at)):
            old = token
    return ExportReaderFacts(
        state=state,
        last_read_at=current.last_read_at,
        last_reader=current.last_reader,
        expected_within=expected,
        old_url_reader=old.last_reader if old else "",
        old_url_read_at=old.last_read_at if old else None,
    )


# The rules above compare with a strict "more than": a moment is late by one tick of the clock.
TICK = timedelta(microseconds=1)


def export_facts_change_at(*, tokens: list, pickup_max_minutes: int | None, now: datetime) -> datetime | None:
    """The earliest moment after ``now`` at which ``export_facts`` could say otherwise of these
    tokens with no new read and no new token: the current URL's wait running out, or a rotated
    URL read since the current one was made ending its grace. None when no moment is ahead."""
    current = _current(tokens)
    if current is None:
        return None
    moments = [(current.last_read_at or current.created_at) + expected_within(pickup_max_minutes) + TICK]
    moments += [
        token.expires_at for token in tokens
        if token.expires_at is not None and token.last_read_at and token.last_read_at > current.created_at
    ]
    return min((moment for moment in moments if moment > now), default=None)


def connection_export_facts(*, connection: Connection, now: datetime | None = None) -> ExportReaderFacts | None:
    """Is the connection's portal reading our calendar? None when the connection does not export."""
    if not connection.exports:
        return None
    now = now or timezone.now()
    tokens = list(ExportToken.objects.serving(now).filter(connection=connection))
    return export_facts(tokens=tokens, pickup_max_minutes=connection.portal.pickup_delay_max_minutes, now=now)
