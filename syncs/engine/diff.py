"""Compare a feed's events with the blocks we hold for that feed, and decide whether its removals
are held (the shrink guard). Pure: no database.

Events are matched to blocks by UID (and occurrence). What is left is matched by dates: first
the exact same nights, then the same kind of block over overlapping nights, because Airbnb and
Vrbo give their rolling "not available" blocks a new UID every day, and a new UID for the same
nights is an update, not a cancellation plus a new booking.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings

from syncs.engine.parse.ical import ParsedEvent

if TYPE_CHECKING:
    from syncs.models import Connection

# Removals are held when a feed loses at least this share of its future blocks...
SHRINK_SHARE = 0.5
# ...and at least this many (a single cancellation among two bookings is ordinary).
SHRINK_MIN_REMOVALS = 3


@dataclass(frozen=True)
class StoredBlock:
    """What the diff needs to know of a block we hold."""

    id: int
    uid: str
    recurrence_id: str
    start: date
    end: date
    kind: str
    summary: str
    text_digest: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.uid, self.recurrence_id)


def known_readings(stored: Iterable[StoredBlock]) -> dict[str, ParsedEvent]:
    """The blocks as the readings of the feed texts they were read from, by text digest: the
    parser takes them instead of parsing those texts again (``ParsedEvent.text_digest``)."""
    return {
        block.text_digest: ParsedEvent(
            uid=block.uid, start=block.start, end=block.end, kind=block.kind, summary=block.summary,
            text_digest=block.text_digest,
        )
        for block in stored
        if block.text_digest
    }


def event_key(event: ParsedEvent) -> tuple[str, str]:
    return (event.uid, event.recurrence_id or "")


@dataclass
class BlockDiff:
    added: list[ParsedEvent] = field(default_factory=list)
    updated: list[tuple[StoredBlock, ParsedEvent]] = field(default_factory=list)
    removed: list[StoredBlock] = field(default_factory=list)
    unchanged: int = 0
    # Unchanged blocks now read from a text with another digest: worth noting when writing
    # anyway, so that the next change parses less (not a change of the block).
    restamped: list[tuple[StoredBlock, ParsedEvent]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def _differs(block: StoredBlock, event: ParsedEvent) -> bool:
    return (
        (block.start, block.end, block.kind, block.summary, block.key)
        != (event.start, event.end, event.kind, event.summary, event_key(event))
    )


def _pair_by(
    blocks: list[StoredBlock], events: list[ParsedEvent], matches
) -> tuple[list[tuple[StoredBlock, ParsedEvent]], list[StoredBlock], list[ParsedEvent]]:
    """Pair each block with the first unpaired event that ``matches`` it, one to one."""
    pairs, left_blocks = [], []
    remaining = list(events)
    for block in blocks:
        partner = next((event for event in remaining if matches(block, event)), None)
        if partner is None:
            left_blocks.append(block)
        else:
            remaining.remove(partner)
            pairs.append((block, partner))
    return pairs, left_blocks, remaining


def diff_blocks(*, stored: Sequence[StoredBlock], events: Sequence[ParsedEvent], today: date) -> BlockDiff:
    """What must change so that the stored blocks say what the feed says.

    Blocks that ended before today and are no longer in the feed are left alone: portals drop
    stays after check-out, and that is not a cancellation.
    """
    diff = BlockDiff()
    by_key = {block.key: block for block in stored}
    unmatched_events: list[ParsedEvent] = []
    for event in events:
        block = by_key.pop(event_key(event), None)
        if block is None:
            unmatched_events.append(event)
        elif _differs(block, event):
            diff.updated.append((block, event))
        else:
            diff.unchanged += 1
            if event.text_digest and event.text_digest != block.text_digest:
                diff.restamped.append((block, event))

    unmatched_blocks = sorted(by_key.values(), key=lambda b: (b.start, b.end, b.id))
    same_nights, unmatched_blocks, unmatched_events = _pair_by(
        unmatched_blocks, unmatched_events, lambda b, e: (b.start, b.end) == (e.start, e.end)
    )
    overlapping, unmatched_blocks, unmatched_events = _pair_by(
        unmatched_blocks, unmatched_events, lambda b, e: b.kind == e.kind and b.start < e.end and e.start < b.end
    )
    diff.updated.extend(same_nights + overlapping)
    diff.added = unmatched_events
    diff.removed = [block for block in unmatched_blocks if block.end > today]
    return diff


def shrink_guard_trips(*, future_blocks_before: int, future_removals: int) -> bool:
    """Whether a feed lost so much of its future that the removals must wait for confirmation."""
    if future_blocks_before == 0 or future_removals == 0:
        return False
    if future_removals == future_blocks_before:
        return True
    return future_removals >= SHRINK_MIN_REMOVALS and future_removals >= future_blocks_before * SHRINK_SHARE


def answer_fingerprint(events: Iterable[ParsedEvent]) -> str:
    """Identifies a feed's answer by its events, so a repeated answer is recognised."""
    digest = hashlib.sha256()
    for line in sorted(f"{e.uid}|{e.recurrence_id or ''}|{e.start}|{e.end}|{e.kind}" for e in events):
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def must_hold(
    connection: Connection, diff: BlockDiff, stored: list, today: date, answer: str, now: datetime
) -> bool:
    """The shrink guard: hold the removals of a feed that suddenly lost much of its future,
    until the same answer comes again SHRINK_CONFIRM_MINUTES later or the operator accepts it."""
    future_before = sum(1 for block in stored if block.end > today)
    if not shrink_guard_trips(future_blocks_before=future_before, future_removals=len(diff.removed)):
        return False
    if connection.held_accepted_answer == answer:
        return False
    confirmed_after = timedelta(minutes=settings.SHRINK_CONFIRM_MINUTES)
    return not (connection.held_answer == answer and connection.held_since and now - connection.held_since >= confirmed_after)

