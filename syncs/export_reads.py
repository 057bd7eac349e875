"""Each read of an export URL, recorded cheaply: counts gather in this process and reach the
database at most once per EXPORT_READ_FLUSH_SECONDS per URL, as one row per URL, reader and day
(bounded), plus the last read on the token. A failure to record never fails the export.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from syncs.models import ExportReadDay, ExportToken, SyncState
from syncs.sync_state import state_record

log = logging.getLogger(__name__)

# How portals' calendar fetchers name themselves in User-Agent (first match wins).
READER_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("airbnb", re.compile(r"airbnb", re.IGNORECASE)),
    ("booking", re.compile(r"booking\.com|bookingcom", re.IGNORECASE)),
    ("vrbo", re.compile(r"vrbo|homeaway|abritel|fewo", re.IGNORECASE)),
    ("expedia", re.compile(r"expedia", re.IGNORECASE)),
    ("tripadvisor", re.compile(r"tripadvisor|flipkey", re.IGNORECASE)),
    ("google", re.compile(r"google", re.IGNORECASE)),
)


# Each portal's fetcher sends the same few User-Agents again and again: match each one once.
@functools.lru_cache(maxsize=256)
def reader_from_user_agent(user_agent: str) -> str:
    for slug, pattern in READER_PATTERNS:
        if pattern.search(user_agent or ""):
            return slug
    return "other"


@dataclass
class _Pending:
    counts: Counter = field(default_factory=Counter)
    last: tuple | None = None
    flushed_at: float = float("-inf")


_lock = threading.Lock()
_pending: dict[int, _Pending] = {}


def export_read_record(*, token_id: int, status: int, user_agent: str, now: datetime | None = None) -> None:
    now = now or timezone.now()
    reader = reader_from_user_agent(user_agent)
    with _lock:
        pending = _pending.setdefault(token_id, _Pending())
        pending.counts[(now.date(), reader)] += 1
        pending.last = (now, status, user_agent[:300], reader)
        if time.monotonic() - pending.flushed_at < settings.EXPORT_READ_FLUSH_SECONDS:
            return
        counts, last = pending.counts, pending.last
        pending.counts, pending.flushed_at = Counter(), time.monotonic()
    try:
        _flush(token_id, counts, last)
    except DatabaseError:
        log.warning("export reads not recorded token_id=%s", token_id, exc_info=True)


def _flush(token_id: int, counts: Counter, last: tuple) -> None:
    for (day, reader), count in counts.items():
        _add_reads(token_id, day, reader, count)
    read_at, status, user_agent, reader = last
    ExportToken.objects.filter(pk=token_id).update(
        last_read_at=read_at, last_status=status, last_user_agent=user_agent, last_reader=reader
    )
    # A read can change the sync's state only when its portal was not reading (it reads again)
    # or when the URL read is one rotated out (the portal still reads the old URL). Any other
    # read moves the moment its portal is late later, never earlier: the stored one stays early.
    token = (
        ExportToken.objects.filter(pk=token_id, connection__isnull=False)
        .values("connection_id", "expires_at", "connection__state").first()
    )
    if token and (token["expires_at"] is not None or token["connection__state"] == SyncState.NOT_READING):
        state_record([token["connection_id"]], now=read_at)


def _add_reads(token_id: int, day: date, reader: str, count: int) -> None:
    rows = ExportReadDay.objects.filter(token_id=token_id, day=day, reader=reader)
    if rows.update(count=F("count") + count):
        return
    try:
        with transaction.atomic():
            ExportReadDay.objects.create(token_id=token_id, day=day, reader=reader, count=count)
    except IntegrityError:  # another process created today's row first
        rows.update(count=F("count") + count)
