"""One sync of one connection: fetch -> parse -> diff -> apply -> record -> pause or resume.

Nothing is written until the end, and then everything is written in one transaction with the
run that did it, under the connection's lease: a failed fetch never deletes a block, and a
worker killed in the middle leaves nothing half-applied (the next run repairs).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from syncs import direct_sql
from syncs.apply import apply_diff
from syncs.connection_state import failure_updates, success_times, success_updates
from syncs.diff import (
    BlockDiff,
    StoredBlock,
    answer_fingerprint,
    diff_blocks,
    known_readings,
    shrink_guard_trips,
)
from syncs.fetch import FetchError, FetchResult, fetch_feed, https_variant_works, mask_url
from syncs.ical import FeedParseError, ParsedFeed, body_fingerprint, parse_feed
from syncs.models import Connection, SyncRun
from syncs.poll_reads import feed_settings, stored_blocks
from syncs.scheduling import (
    LEASE_RELEASED,
    Claim,
    connection_from_claim,
    connection_lock_if_leased,
    connection_release_lease,
    connection_take_lease,
    new_lease_holder,
)
from syncs.unchanged_runs import unchanged_run_record

log = logging.getLogger(__name__)

OK_CHANGED, OK_UNCHANGED, OK_EMPTY = "ok_changed", "ok_unchanged", "ok_empty"
# Skip reasons that mean the portal sent a broken event (counted as invalid on the run).
INVALID_REASONS = frozenset({"end_before_start", "invalid_component", "missing_start"})
# Parse failures that mean the URL is wrong, not that the portal had a bad moment.
PERMANENT_PARSE_CODES = frozenset({"not_ical"})


class LeaseLost(Exception):
    """Another worker took the connection over (our lease expired): our result is dropped."""


@dataclass
class Failure:
    code: str
    params: dict = field(default_factory=dict)
    permanent: bool = False
    retry_after: int | None = None


@dataclass
class Outcome:
    """What the run found, gathered before anything is written."""

    fetched: FetchResult | None = None
    feed: ParsedFeed | None = None
    failure: Failure | None = None
    fingerprint: str = ""
    https_works: bool | None = None
    stored: list[StoredBlock] | None = None  # the connection's blocks, read before parsing
    today: date | None = None  # the property's day when the feed was read


def connection_sync_leased(*, connection_id: int, trigger: str = SyncRun.Trigger.SCHEDULED) -> SyncRun | None:
    """Take the connection's lease and sync it, unless it is gone, switched off (for scheduled
    runs), or leased: for "Sync now", the management command, and tasks from before claims
    carried their lease."""
    holder = new_lease_holder()
    connection = connection_take_lease(connection_id=connection_id, holder=holder)
    if connection is None:
        log.info("sync skipped connection=%s reason=gone_or_leased", connection_id)
        return None
    return _sync_holding(connection, trigger=trigger, holder=holder)


def connection_sync_claimed(claim: Claim) -> SyncRun | None:
    """Sync a connection the dispatcher claimed, leased and read for this poll (the Celery task
    of every scheduled sync). If the operator changed how it imports or switched it off since,
    the lease was taken back with the change, and the result is dropped (LeaseLost)."""
    return _sync_holding(connection_from_claim(claim), trigger=SyncRun.Trigger.SCHEDULED, holder=claim.holder)


def _sync_holding(connection: Connection, *, trigger: str, holder: str) -> SyncRun | None:
    run = None
    try:
        if not connection.imports:
            return None
        if trigger == SyncRun.Trigger.SCHEDULED and (not connection.enabled or connection.paused_at):
            return None
        run = connection_sync(connection=connection, trigger=trigger, holder=holder)
        return run
    except LeaseLost:
        log.warning("sync dropped connection=%s reason=lease_lost", connection.pk)
        return None
    finally:
        if trigger != SyncRun.Trigger.SCHEDULED:
            # The operator's "Sync now" has been served (or the connection is gone).
            Connection.objects.filter(pk=connection.pk, sync_requested_at__isnull=False).update(sync_requested_at=None)
        if run is None:
            # A recorded run gave the lease back in its own write.
            connection_release_lease(connection_id=connection.pk, holder=holder)


def connection_sync(*, connection: Connection, trigger: str, holder: str, now: datetime | None = None) -> SyncRun:
    """Run one sync. The caller holds the lease as ``holder``."""
    started = now or timezone.now()
    clock = time.monotonic()
    outcome = _read_feed(connection)
    run = _record(connection=connection, holder=holder, trigger=trigger, outcome=outcome, started=started)
    if log.isEnabledFor(logging.INFO):  # masking the URL is work of its own
        log.info(
            "sync connection=%s url=%s outcome=%s duration_ms=%d bytes=%d added=%d updated=%d removed=%d held=%d",
            connection.pk, mask_url(connection.import_url), run.outcome, (time.monotonic() - clock) * 1000,
            run.bytes_received, run.events_added, run.events_updated, run.events_removed, run.events_held,
        )
    return run


def _read_feed(connection: Connection) -> Outcome:
    """Fetch and parse, with no database writes. Failures become an Outcome, not exceptions."""
    # While removals are held we need the whole answer again, so validators are not sent.
    holding = bool(connection.held_answer)
    try:
        fetched = fetch_feed(
            connection.import_url,
            etag=None if holding else connection.etag or None,
            last_modified=None if holding else connection.last_modified or None,
            allow_loopback=settings.FETCH_ALLOW_LOOPBACK,
            user_agent=settings.FETCH_USER_AGENT,
        )
    except FetchError as exc:
        failure = Failure(exc.code, dict(exc.params), exc.permanent, exc.retry_after)
        return Outcome(failure=failure, https_works=_https_variant_works(connection))
    if fetched.outcome == "not_modified":
        return Outcome(fetched=fetched)
    fingerprint = body_fingerprint(fetched.body)
    if fingerprint == connection.body_fingerprint and not holding:
        return Outcome(fetched=fetched, fingerprint=fingerprint)
    # Read once, here, for the parser's memo and then for the diff. Under our lease no one else
    # writes this connection's blocks (the record checks the lease before using them), and a
    # memo entry stays right even if its block went: it is the reading of a text, not a state.
    stored = stored_blocks(connection_id=connection.pk)
    reading = feed_settings(property_id=connection.property_id, portal_id=connection.portal_id)
    if reading is None:
        raise LeaseLost  # the property went while we fetched, and the connection with it
    today = reading.today()
    try:
        feed = parse_feed(
            fetched.body,
            timezone=reading.timezone,
            labels=reading.labels or None,
            today=today,
            horizon_back_days=settings.SYNC_HORIZON_BACK_DAYS,
            horizon_ahead_days=settings.SYNC_HORIZON_AHEAD_DAYS,
            own_uid_domain=settings.EXPORT_UID_DOMAIN,
            known=known_readings(stored),
        )
    except FeedParseError as exc:
        failure = Failure(exc.code, {}, exc.code in PERMANENT_PARSE_CODES)
        return Outcome(fetched=fetched, failure=failure)
    return Outcome(fetched=fetched, feed=feed, fingerprint=fingerprint, stored=stored, today=today)


def _https_variant_works(connection: Connection) -> bool | None:
    """After an http:// URL failed, try https:// once and remember whether it answers a calendar."""
    if not connection.import_url.lower().startswith("http://") or connection.https_works is not None:
        return connection.https_works
    return https_variant_works(
        connection.import_url, allow_loopback=settings.FETCH_ALLOW_LOOPBACK, user_agent=settings.FETCH_USER_AGENT
    )



def _record(*, connection: Connection, holder: str, trigger: str, outcome: Outcome, started: datetime) -> SyncRun:
    """Write the run and the connection's new state in one transaction, and give the lease back."""
    now = timezone.now()
    fetched = outcome.fetched
    if outcome.failure is None and outcome.feed is None and connection.paused_at is None:
        # Most polls: nothing new on a running connection. The connection's state after it
        # depends on nothing that can change under our lease, so no lock and no re-read.
        run = unchanged_run_record(
            connection_id=connection.pk,
            holder=holder,
            run_values={
                "connection_id": connection.pk, "trigger": trigger, "started_at": started, "finished_at": now,
                "outcome": OK_UNCHANGED, "http_status": fetched.status, "bytes_received": fetched.bytes_read,
            },
            changing={**success_times(connection=connection, now=now), **_validators(fetched)},
            durable=connection.consecutive_failures > 0,  # it ends a run of failures
        )
        if run is not None:
            return run
        # Paused by someone else meanwhile, or the lease is gone: the general path sorts it out.
    run = SyncRun(
        connection=connection, trigger=trigger, started_at=started, finished_at=now,
        http_status=fetched.status if fetched else outcome.failure.params.get("status") if outcome.failure else None,
        bytes_received=fetched.bytes_read if fetched else 0,
    )
    with transaction.atomic():
        locked = connection_lock_leased(connection_id=connection.pk, holder=holder)
        if outcome.failure:
            updates = _record_failure(locked, run, outcome, now)
        elif outcome.feed is None:
            updates = _record_unchanged(locked, run, fetched, now)
        else:
            updates = _record_feed(locked, run, outcome, now)
        direct_sql.update_row(Connection, connection.pk, {**updates, **LEASE_RELEASED})
    return run


def connection_lock_leased(*, connection_id: int, holder: str) -> Connection:
    """Lock the connection's row for the run's transaction, if ``holder`` still has the lease."""
    locked = connection_lock_if_leased(connection_id=connection_id, holder=holder)
    if locked is None:
        raise LeaseLost
    return locked


def _record_failure(connection: Connection, run: SyncRun, outcome: Outcome, now: datetime) -> dict:
    failure = outcome.failure
    run.outcome = run.error_code = failure.code
    run.error_params = failure.params
    direct_sql.insert([run])
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
    direct_sql.insert([run])
    return _fetch_succeeded(connection, fetched, now)


def _record_feed(connection: Connection, run: SyncRun, outcome: Outcome, now: datetime) -> dict:
    feed = outcome.feed
    today = outcome.today  # the day the parser read the feed on, in the property's zone
    # Stays that ended long ago are history, not availability.
    oldest_end = today - timedelta(days=settings.SYNC_HORIZON_BACK_DAYS)
    events = [e for e in feed.events if e.end > oldest_end]
    stored = outcome.stored
    diff = diff_blocks(stored=stored, events=events, today=today)
    answer = answer_fingerprint(events)
    hold = _must_hold(connection, diff, stored, today, answer, now)

    run.events_seen = len(feed.events)
    run.events_invalid = sum(1 for s in feed.skipped if s.reason in INVALID_REASONS)
    run.events_added, run.events_updated = len(diff.added), len(diff.updated)
    run.events_removed = 0 if hold else len(diff.removed)
    run.events_held = len(diff.removed) if hold else 0
    run.removals_held = hold
    if not feed.events:
        run.outcome = OK_EMPTY
    else:
        run.outcome = OK_CHANGED if diff.changed else OK_UNCHANGED
    direct_sql.insert([run])
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


def _must_hold(
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


def connection_accept_held_removals(*, connection: Connection) -> SyncRun | None:
    """The operator confirms that the feed's shrunken answer is right: apply it now.

    Only the answer the operator saw is accepted; if the feed says something else by now, the
    guard judges that new answer afresh.
    """
    Connection.objects.filter(pk=connection.pk, held_answer__gt="").update(
        held_accepted_answer=connection.held_answer
    )
    return connection_sync_leased(connection_id=connection.pk, trigger=SyncRun.Trigger.MANUAL)
