"""Write a diff to the database: new blocks, blocks changed in place, blocks soft-deleted by
the run, and a change row for each, so history and undo are possible. Runs inside the sync's
transaction; writes nothing when nothing changed, and bumps the property's calendar version
(so its exports change at once) when something did."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from syncs.blocks import property_calendar_changed
from syncs.diff import BlockDiff
from syncs.ical import ParsedEvent
from syncs.models import Block, BlockChange, Connection, SyncRun

SUMMARY_MAX = Block._meta.get_field("summary").max_length


def _event_fields(event: ParsedEvent) -> dict:
    return {
        "uid": event.uid,
        "recurrence_id": event.recurrence_id or "",
        "start_date": event.start,
        "end_date": event.end,
        "kind": event.kind,
        "summary": event.summary[:SUMMARY_MAX],
        # The parser keeps UIDs and summaries within what a block keeps, so the block is exactly
        # the reading of that text (tests tie the parser's limits to the model's).
        "text_digest": event.text_digest,
    }


def apply_diff(
    *, connection: Connection, run: SyncRun, diff: BlockDiff, hold_removals: bool, now: datetime | None = None
) -> None:
    now = now or timezone.now()
    changes: list[BlockChange] = []

    added = Block.objects.bulk_create(
        [
            Block(property_id=connection.property_id, source=connection, first_seen_at=now, last_seen_at=now, **_event_fields(e))
            for e in diff.added
        ]
    )
    changes += [
        BlockChange(block=b, run=run, action=BlockChange.Action.ADDED, new_start_date=b.start_date, new_end_date=b.end_date, new_kind=b.kind)
        for b in added
    ]

    for stored, event in diff.updated:
        # One plain UPDATE per block: a feed changes a few blocks at a time, and bulk_update's
        # CASE per field costs more than that.
        Block.objects.filter(pk=stored.id).update(last_seen_at=now, **_event_fields(event))
        if (stored.start, stored.end, stored.kind) != (event.start, event.end, event.kind):
            changes.append(
                BlockChange(
                    block_id=stored.id, run=run, action=BlockChange.Action.UPDATED,
                    old_start_date=stored.start, old_end_date=stored.end, old_kind=stored.kind,
                    new_start_date=event.start, new_end_date=event.end, new_kind=event.kind,
                )
            )

    if diff.removed and not hold_removals:
        Block.objects.filter(pk__in=[b.id for b in diff.removed]).update(removed_at=now, removed_by_run=run)
        changes += [
            BlockChange(block_id=b.id, run=run, action=BlockChange.Action.REMOVED, old_start_date=b.start, old_end_date=b.end, old_kind=b.kind)
            for b in diff.removed
        ]
    BlockChange.objects.bulk_create(changes)
    removed = bool(diff.removed and not hold_removals)
    if diff.added or diff.updated or removed:
        # A stay's dates or kind, or a stay more or less: its double bookings may have changed.
        nights = bool(diff.added or removed or any(
            (stored.start, stored.end, stored.kind) != (event.start, event.end, event.kind) for stored, event in diff.updated
        ))
        property_calendar_changed(property_id=connection.property_id, now=now, nights_changed=nights)
        # Only alongside real changes: an unchanged feed still makes no write at all.
        Block.objects.bulk_update(
            [Block(pk=stored.id, text_digest=event.text_digest) for stored, event in diff.restamped],
            ["text_digest"],
            batch_size=500,
        )
