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
from django.db.models import Subquery
from django.utils import timezone

from syncs.activity import activity_record_automatic
from syncs.blocks import property_calendar_changed
from syncs.connection_state import PROBE_CLEARED
from syncs.db_connections import database_replace_if_unusable, database_unavailable
from syncs.engine.diff import BlockDiff, Changes
from syncs.engine.fetch import FetchResult
from syncs.engine.lease import LEASE_RELEASED, Leased, LeaseLost, jittered
from syncs.engine.parse.ical import INVALID_REASONS, ParsedEvent, ParsedFeed
from syncs.models import Activity, Block, BlockChange, Connection, PauseEpisode, SyncRun, SyncState
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
    # What went wrong between the lease and the record (recorded as a failed run, syncs.engine.record.failure_of).
    error: BaseException | None = None


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
    LeaseLost, with the lease given back if it was still ours. An error met on the way
    (``outcome.error``), or a record the database refuses, is recorded as a failed run, which
    counts towards the pause like any other failure; if the database cannot take even that, or
    is unavailable, the error is raised. A sync put off writes its next turn and no run (None)."""
    if outcome.put_off_seconds is not None:
        _put_off(leased, outcome.put_off_seconds, started)
        return None
    refused = False  # the record itself was refused once: its failure is being recorded
    while True:
        if outcome.error is not None:
            outcome = Outcome(failure=failure_of(outcome.error, connection_id=leased.connection.pk))
        try:
            return _record(leased, trigger, outcome, started)
        except LeaseLost:
            Connection.objects.filter(pk=leased.connection.pk, lease_holder=leased.holder).update(**LEASE_RELEASED)
            raise
        except (Exception, SoftTimeLimitExceeded) as exc:
            if refused:
                raise
            # Rolled back already (the record's transaction ended with the exception): the
            # failure is recorded instead.
            refused, outcome = True, Outcome(error=exc)


def failure_of(exc: BaseException, *, connection_id: int) -> Failure:
    """The failed run to record for an error met between the lease and the commit (a statement
    our database refused, a parser that gave up, a time limit): it counts towards the pause like
    any other failure. Our database being unavailable is not the connection's failure
    (syncs.db_connections): that error is raised again, with nothing recorded, and the task
    tries again."""
    unavailable = database_unavailable(exc)
    database_replace_if_unusable()
    if unavailable:
        log.warning(
            "sync not recorded connection=%s reason=database_unavailable error=%s, will retry",
            connection_id, type(exc.__cause__ or exc).__name__,
        )
        raise exc
    log.error("sync failed connection=%s", connection_id, exc_info=exc)
    return Failure(DATABASE_ERROR if isinstance(exc, DatabaseError) else SYNC_FAILED, {})


def _record(leased: Leased, trigger: str, outcome: Outcome, started: datetime) -> SyncRun:
    connection, holder = leased.connection, leased.holder
    now = timezone.now()
    fetched = outcome.fetched
    run = SyncRun(
        connection_id=connection.pk, trigger=trigger, started_at=started, finished_at=now,
        http_status=fetched.status if fetched else outcome.failure.params.get("status") if outcome.failure else None,
        bytes_received=fetched.bytes_read if fetched else 0,
    )
    told: list[dict] = []  # what the system did by itself, for the activity log
    with transaction.atomic():
        # Most polls: a feed read (unchanged or not) on a running connection, no removals held.
        # Its fields after the poll depend on nothing but what was read with the lease, so the
        # record takes no lock first: one conditional UPDATE, which locks the row, if it is still
        # as read. A sync stored as working stays working after it (its stored moment of change
        # can only come early, never late: the sweep decides it again then); any other sync,
        # or one changed since, is locked, read again and decided.
        running = (
            outcome.failure is None and connection.paused_at is None and connection.state == SyncState.WORKING
            and not (outcome.changes and outcome.changes.hold)
        )
        if running:
            rows = Connection.objects.filter(
                pk=connection.pk, lease_holder=holder, settings_version=connection.settings_version,
                paused_at__isnull=True, state=SyncState.WORKING,
            )
            if outcome.changes:  # the removals were judged by the held answer accepted as read with the lease
                rows = rows.filter(held_accepted_answer=connection.held_accepted_answer)
            running = bool(rows.update(**_succeeded(connection, outcome, now, told), **LEASE_RELEASED))
        if not running:
            locked = connection_lock_leased(
                connection_id=connection.pk, holder=holder, settings_version=connection.settings_version,
                held_accepted_answer=connection.held_accepted_answer if outcome.changes else None,
            )
            updates = _failed(locked, outcome, now, told) if outcome.failure else _succeeded(locked, outcome, now, told)
        _run_outcome(run, outcome)
        run.save(force_insert=True)
        if outcome.feed is not None:
            apply_diff(connection=connection, run=run, diff=outcome.changes.diff, hold_removals=outcome.changes.hold, now=now)
        if not running:
            Connection.objects.filter(pk=connection.pk).update(**updates, **LEASE_RELEASED)
            for entry in told:
                activity_record_automatic(connection_id=connection.pk, property_id=connection.property_id, when=now, **entry)
            # In the same transaction: a pause is recorded as a change in the write that opens its episode.
            state_record([connection.pk], now=now)
    return run


# What the record reads of the locked row (its health, what removals are held, its property).
RECORD_FIELDS = ("property_id", "consecutive_failures", "paused_at", "sync_interval_minutes", "held_answer", "held_since")


def connection_lock_leased(
    *, connection_id: int, holder: str, settings_version: int, held_accepted_answer: str | None = None
) -> Connection:
    """Lock the connection's row for the caller's transaction and return it as it is now, if
    ``holder`` still has the lease and the settings are still ``settings_version`` (and, given
    ``held_accepted_answer``, the operator accepted no other held answer meanwhile: the sync
    judged its removals by that one); else raise LeaseLost. Only that row: locking its property or portal too would queue every sync of a
    portal behind the others."""
    rows = Connection.objects.select_for_update().only(*RECORD_FIELDS).filter(
        pk=connection_id, lease_holder=holder, settings_version=settings_version
    )
    if held_accepted_answer is not None:
        rows = rows.filter(held_accepted_answer=held_accepted_answer)
    locked = rows.order_by().first()
    if locked is None:
        raise LeaseLost
    return locked


def _failed(connection: Connection, outcome: Outcome, now: datetime, told: list[dict]) -> dict:
    """The connection's fields after a failed sync."""
    updates = failure_updates(connection=connection, failure=outcome.failure, now=now, told=told)
    if outcome.https_works is not None:
        updates["https_works"] = outcome.https_works
    return updates


def _succeeded(connection: Connection, outcome: Outcome, now: datetime, told: list[dict]) -> dict:
    """The connection's fields after a fetch that worked: healthy again, the validators to send
    back next time (exactly as the portal sent them) and, for a feed read, what it read."""
    fetched = outcome.fetched
    updates = {
        **success_updates(connection=connection, now=now, told=told),
        "etag": fetched.etag or "", "last_modified": fetched.last_modified or "",
    }
    if outcome.feed is None:
        return updates
    diff, hold, answer = outcome.changes.diff, outcome.changes.hold, outcome.changes.answer
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


def _run_outcome(run: SyncRun, outcome: Outcome) -> None:
    """What the run says: the failure, an unchanged answer (304, or the same body as last time:
    no block touched), or what the feed read holds and changed."""
    if outcome.failure:
        run.outcome = run.error_code = outcome.failure.code
        run.error_params = outcome.failure.params
        return
    if outcome.feed is None:
        run.outcome = OK_UNCHANGED
        return
    feed, diff, hold = outcome.feed, outcome.changes.diff, outcome.changes.hold
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


# --------------------------------------------------------------------------- the connection's health
# Failures count up and back off, then pause the connection; a sync that works resumes it. Each
# automatic pause is an episode, so that the operator is told once per episode; switching a
# paused sync back on starts a check (syncs.connection_state), and only a fetch that works ends
# the episode. What the system did by itself (a pause, a resume) is gathered in ``told`` and
# written to the activity log, with no user, in the record's transaction.

# Transient failures in a row before the connection is paused.
PAUSE_AFTER_FAILURES = 3
# The first retry after a transient failure; each further failure doubles it, up to the interval.
FIRST_RETRY = timedelta(minutes=5)
# A portal's Retry-After is honoured up to this long.
MAX_RETRY_AFTER = timedelta(hours=24)
def retry_delay(*, failures: int, interval: timedelta, retry_after: int | None = None) -> timedelta:
    """5, 10, 20... minutes after the 1st, 2nd, 3rd... failure, capped at the sync interval,
    and never sooner than the portal asked for."""
    delay = min(FIRST_RETRY * 2 ** max(failures - 1, 0), interval)
    if retry_after:
        delay = max(delay, min(timedelta(seconds=retry_after), MAX_RETRY_AFTER))
    return delay


def failure_updates(*, connection: Connection, failure: Failure, now: datetime, told: list[dict]) -> dict:
    """The connection fields to write after a failed sync (inside the run's transaction).

    Pausing here also opens the pause episode, or continues the one the operator was told of.
    """
    code, params = failure.code, failure.params
    failures = connection.consecutive_failures + 1
    updates = {
        "last_attempt_at": now,
        "consecutive_failures": failures,
        "last_error_code": code,
        "last_error_params": params,
    }
    if connection.paused_at is not None:
        # Already paused: a failed "Sync now", or the check after switching it back on. The same
        # episode goes on (no new email), saying the newest reason; a check that failed pauses
        # the sync again.
        updates.update(pause_reason=code, pause_params=params, checking_since=None)
        _episode_goes_on(connection=connection, code=code, params=params, now=now, told=told)
        return updates
    if failure.permanent or failures >= PAUSE_AFTER_FAILURES:
        updates.update(paused_at=now, pause_reason=code, pause_params=params, checking_since=None)
        _episode_open(connection=connection, code=code, params=params, now=now, told=told)
    else:
        updates["next_sync_at"] = now + retry_delay(
            failures=failures, interval=connection.sync_interval, retry_after=failure.retry_after
        )
    return updates


def _episode_open(*, connection: Connection, code: str, params: dict, now: datetime, told: list[dict]) -> None:
    """Start a pause episode, or reopen the last one if the operator was told of its pause and
    not yet of its end: to them it never ended, and a "Restored" email now would be untrue."""
    last = PauseEpisode.objects.filter(connection_id=connection.pk).order_by("-started_at", "-pk").values("pk")[:1]
    reopened = PauseEpisode.objects.filter(
        pk=Subquery(last), ended_at__isnull=False, notified_at__isnull=False, restored_notified_at__isnull=True
    ).update(ended_at=None, ended_by="", reason=code, params=params, resume_requested_by="", resume_failed_at=None)
    if not reopened:
        PauseEpisode.objects.create(connection_id=connection.pk, started_at=now, reason=code, params=params)
    told.append({"action": Activity.Action.PAUSED, "params": {"code": code, "params": params}})


def _episode_goes_on(*, connection: Connection, code: str, params: dict, now: datetime, told: list[dict]) -> None:
    episode = PauseEpisode.objects.open().filter(connection_id=connection.pk)
    check_failed = episode.filter(resume_requested_by__gt="").update(
        reason=code, params=params, resume_requested_by="", resume_failed_at=now
    )
    if check_failed:
        told.append({"action": Activity.Action.PAUSED, "params": {"code": code, "params": params, "again": True}})
    else:
        episode.update(reason=code, params=params)


def success_updates(*, connection: Connection, now: datetime, told: list[dict]) -> dict:
    """The connection fields to write after a sync that worked; it ends any pause."""
    if connection.paused_at is not None:
        _episode_end(connection=connection, now=now, told=told)
    # Healthy, whatever it found: no failures, no pause, no probe (new dicts each time: never
    # shared with whoever changes what it gets).
    return {
        "last_attempt_at": now, "last_success_at": now, "next_sync_at": now + jittered(connection.sync_interval),
        "consecutive_failures": 0, "last_error_code": "", "last_error_params": {}, "paused_at": None,
        "pause_reason": "", "pause_params": {}, "checking_since": None, **PROBE_CLEARED,
    }


def _episode_end(*, connection: Connection, now: datetime, told: list[dict]) -> None:
    """End the open episode: a fetch worked. Whoever switched the sync back on (the operator, the
    background check) is who ended it; otherwise the sync that worked did."""
    episode = PauseEpisode.objects.open().filter(connection_id=connection.pk).values("pk", "resume_requested_by").first()
    if episode is None:
        return
    ended_by = episode["resume_requested_by"] or "sync"
    PauseEpisode.objects.filter(pk=episode["pk"]).update(ended_at=now, ended_by=ended_by)
    told.append({"action": Activity.Action.RESUMED, "params": {"by": ended_by}})


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
