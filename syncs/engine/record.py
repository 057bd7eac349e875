"""The record of one sync: the run, the blocks it changed (with a change row each, so history
and undo are possible), and the connection's new state, in one transaction, under the lease;
or, for a sync its portal host could not take now, the connection's next turn.

Nothing is written before; a feed's changes bump the property's calendar version (so its
exports change at once), and an unchanged feed writes no block at all. A failed fetch never
deletes a block, and a worker killed in the middle leaves nothing half-applied (the next run
repairs). What the record itself cannot write (a statement the database refused) is recorded
as a failed run in a transaction of its own; our database being unavailable raises, with
nothing recorded (syncs.db_connections): the task tries again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.db import DatabaseError, transaction
from django.utils import timezone

from syncs.blocks import property_calendar_changed
from syncs.connection_state import failure_updates, success_updates
from syncs.db_connections import database_replace_if_unusable, database_unavailable
from syncs.engine.diff import BlockDiff, Changes
from syncs.engine.fetch import FetchResult
from syncs.engine.lease import LEASE_RELEASED, Leased, LeaseLost
from syncs.engine.parse.ical import INVALID_REASONS, ParsedEvent, ParsedFeed
from syncs.models import Block, BlockChange, Connection, SyncRun, SyncState
from syncs.sync_state import state_record

log = logging.getLogger(__name__)

OK_CHANGED, OK_UNCHANGED, OK_EMPTY = "ok_changed", "ok_unchanged", "ok_empty"
# Whatever else stops a sync between its fetch and its commit, recorded as a transient failure:
# a statement our database refused, or something we did not foresee (a soft time limit included).
# Our database being unavailable is not among them: it is ours to bear, never the connection's
# (syncs.db_connections), and the task tries again.
DATABASE_ERROR, SYNC_FAILED = "database_error", "sync_failed"


@dataclass
class Failure:
    code: str
    params: dict = field(default_factory=dict)
    permanent: bool = False
    retry_after: int | None = None


@dataclass
class Outcome:
    """What the sync found, gathered before anything is written: a failure, or an answer (with
    the feed read from a body not read before, and its changes)."""

    fetched: FetchResult | None = None
    failure: Failure | None = None
    feed: ParsedFeed | None = None
    changes: Changes | None = None
    fingerprint: str = ""
    https_works: bool | None = None
    # The portal host may not be asked now: nothing was asked, come back after this long.
    put_off_seconds: float | None = None


def _put_off(leased: Leased, seconds: float, started: datetime) -> None:
    """Give the lease back and come back to the connection in ``seconds``: for a sync whose
    portal host may not be asked now (syncs.engine.fetch). Nothing is recorded: no poll was made."""
    until = timezone.now() + timedelta(seconds=seconds)
    Connection.objects.filter(pk=leased.connection.pk, lease_holder=leased.holder).update(
        next_sync_at=until, **LEASE_RELEASED
    )
    log.info(
        "sync put off connection=%s reason=portal_host_busy seconds=%d", leased.connection.pk,
        (until - started).total_seconds(),
    )


def connection_record(*, leased: Leased, trigger: str, outcome: Outcome, started: datetime) -> SyncRun | None:
    """Write the run and the connection's new state in one transaction, and give the lease back,
    if the lease is still ours and the settings are still those the sync read; else raise
    LeaseLost, with the lease given back if it was still ours. A record the database refuses is
    replaced by a failed run, which counts towards the pause like any other failure; if the
    database cannot take even that, or is unavailable, the error is raised. A sync put off
    writes its next turn and no run (None)."""
    if outcome.put_off_seconds is not None:
        _put_off(leased, outcome.put_off_seconds, started)
        return None
    try:
        return _record(leased, trigger, outcome, started)
    except LeaseLost:
        Connection.objects.filter(pk=leased.connection.pk, lease_holder=leased.holder).update(**LEASE_RELEASED)
        raise
    except (Exception, SoftTimeLimitExceeded) as exc:
        # Rolled back already (the record's transaction ended with the exception).
        unavailable = database_unavailable(exc)
        database_replace_if_unusable()
        if unavailable:
            # Our database, not the portal: no failed run, no step towards a pause.
            log.warning(
                "sync not recorded connection=%s reason=database_unavailable error=%s, will retry",
                leased.connection.pk, type(exc.__cause__ or exc).__name__,
            )
            raise
        log.exception("sync failed connection=%s", leased.connection.pk)
        failure = Failure(DATABASE_ERROR if isinstance(exc, DatabaseError) else SYNC_FAILED, {})
        return _record(leased, trigger, Outcome(failure=failure), started)


def _record(leased: Leased, trigger: str, outcome: Outcome, started: datetime) -> SyncRun:
    connection, holder = leased.connection, leased.holder
    now = timezone.now()
    fetched = outcome.fetched
    ours = Connection.objects.filter(
        pk=connection.pk, lease_holder=holder, settings_version=connection.settings_version
    )
    run = SyncRun(
        connection_id=connection.pk, trigger=trigger, started_at=started, finished_at=now,
        http_status=fetched.status if fetched else outcome.failure.params.get("status") if outcome.failure else None,
        bytes_received=fetched.bytes_read if fetched else 0,
    )
    with transaction.atomic():
        if outcome.failure is None and outcome.feed is None and connection.paused_at is None:
            # Most polls: nothing new on a running connection. Its state after the poll depends
            # on nothing but what was read with the lease, so the record is one conditional
            # UPDATE and the run's INSERT, with no lock taken first. A sync stored as working
            # stays working after it (its stored moment of change can only come early, never
            # late: the sweep decides it again then); any other decides its state below.
            updates = {**success_updates(connection=connection, now=now), **_validators(fetched), **LEASE_RELEASED}
            if ours.filter(paused_at__isnull=True, state=SyncState.WORKING).update(**updates):
                run.outcome = OK_UNCHANGED
                run.save(force_insert=True)
                return run
        # Paused meanwhile, or anything else: read what the record depends on under the lock.
        locked = connection_lock_leased(
            connection_id=connection.pk, holder=holder, settings_version=connection.settings_version,
            held_accepted_answer=connection.held_accepted_answer if outcome.changes else None,
        )
        if outcome.failure:
            updates = _record_failure(locked, run, outcome, now)
        elif outcome.feed is None:
            updates = _record_unchanged(locked, run, fetched, now)
        else:
            updates = _record_feed(locked, run, outcome, now)
        Connection.objects.filter(pk=connection.pk).update(**updates, **LEASE_RELEASED)
        # In the same transaction: a pause is recorded as a change in the write that opens its episode.
        state_record([connection.pk], now=now)
    return run


def connection_lock_leased(
    *, connection_id: int, holder: str, settings_version: int, held_accepted_answer: str | None = None
) -> Connection:
    """Lock the connection's row for the caller's transaction and return it as it is now, if
    ``holder`` still has the lease and the settings are still ``settings_version`` (and, given
    ``held_accepted_answer``, the operator accepted no other held answer meanwhile: the sync
    judged its removals by that one); else raise LeaseLost. Only that row: locking its property or portal too would queue every sync of a
    portal behind the others."""
    rows = Connection.objects.select_for_update().filter(
        pk=connection_id, lease_holder=holder, settings_version=settings_version
    )
    if held_accepted_answer is not None:
        rows = rows.filter(held_accepted_answer=held_accepted_answer)
    locked = rows.order_by().first()
    if locked is None:
        raise LeaseLost
    return locked


def _record_failure(connection: Connection, run: SyncRun, outcome: Outcome, now: datetime) -> dict:
    failure = outcome.failure
    run.outcome = run.error_code = failure.code
    run.error_params = failure.params
    run.save(force_insert=True)
    updates = failure_updates(
        connection=connection, code=failure.code, params=failure.params, permanent=failure.permanent,
        retry_after=failure.retry_after, now=now,
    )
    if outcome.https_works is not None:
        updates["https_works"] = outcome.https_works
    return updates


def _fetch_succeeded(connection: Connection, fetched: FetchResult, now: datetime) -> dict:
    """The connection fields after any successful fetch: healthy again, and the validators to
    send back next time."""
    return {**success_updates(connection=connection, now=now), **_validators(fetched)}


def _validators(fetched: FetchResult) -> dict:
    """What to send back to the portal next time, kept exactly as it sent them."""
    return {"etag": fetched.etag or "", "last_modified": fetched.last_modified or ""}


def _record_unchanged(connection: Connection, run: SyncRun, fetched: FetchResult, now: datetime) -> dict:
    """304, or the same body as last time: a successful run that touches no block."""
    run.outcome = OK_UNCHANGED
    run.save(force_insert=True)
    return _fetch_succeeded(connection, fetched, now)


def _record_feed(connection: Connection, run: SyncRun, outcome: Outcome, now: datetime) -> dict:
    feed, diff, hold, answer = outcome.feed, outcome.changes.diff, outcome.changes.hold, outcome.changes.answer
    run.events_seen = len(feed.events)
    run.events_invalid = sum(1 for s in feed.skipped if s.reason in INVALID_REASONS)
    run.events_added, run.events_updated = len(diff.added), len(diff.updated)
    run.events_removed = 0 if hold else len(diff.removed)
    run.events_held = len(diff.removed) if hold else 0
    run.removals_held = hold
    # What the operator should know of a feed read all the same (shared UIDs, its encoding).
    run.notices = [notice.as_json() for notice in feed.notices]
    if not feed.events:
        run.outcome = OK_EMPTY
    else:
        run.outcome = OK_CHANGED if diff.changed else OK_UNCHANGED
    run.save(force_insert=True)
    apply_diff(connection=connection, run=run, diff=diff, hold_removals=hold, now=now)

    updates = _fetch_succeeded(connection, outcome.fetched, now)
    updates["body_fingerprint"] = outcome.fingerprint
    updates["held_accepted_answer"] = ""
    if hold:
        same_answer = connection.held_answer == answer and connection.held_since is not None
        updates.update(
            held_answer=answer, held_since=connection.held_since if same_answer else now, held_removals=len(diff.removed)
        )
    else:
        updates.update(held_answer="", held_since=None, held_removals=0)
    return updates


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


def connection_accept_held_answer(*, connection: Connection) -> bool:
    """The operator confirms that the feed's shrunken answer is right: the next sync that reads
    that same answer applies its removals. Only the answer the operator saw is accepted; if the
    feed says something else by then, the guard judges that new answer afresh. Returns whether
    an answer was held (and is now accepted)."""
    return bool(
        Connection.objects.filter(pk=connection.pk, held_answer=connection.held_answer, held_answer__gt="").update(
            held_accepted_answer=connection.held_answer
        )
    )
