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

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, connections, transaction
from django.utils import timezone

from syncs import politeness
from syncs.apply import apply_diff
from syncs.connection_state import failure_updates, success_updates
from syncs.db_connections import database_idle, database_unavailable
from syncs.diff import (
    BlockDiff,
    StoredBlock,
    answer_fingerprint,
    diff_blocks,
    known_readings,
    shrink_guard_trips,
)
from syncs.fetch import FetchError, FetchResult, fetch_feed, https_variant_works, mask_url
from syncs.ical import INVALID_REASONS, FeedParseError, ParsedFeed, body_fingerprint, parse_feed
from syncs.models import Block, Connection, SyncRun, SyncState
from syncs.politeness import defer_seconds, host_of
from syncs.scheduling import (
    LEASE_RELEASED,
    connection_acquire_lease,
    connection_defer,
    connection_keep_claim,
    connection_release_lease,
    new_lease_holder,
)
from syncs.sync_state import state_record

log = logging.getLogger(__name__)

OK_CHANGED, OK_UNCHANGED, OK_EMPTY = "ok_changed", "ok_unchanged", "ok_empty"
# Parse failures that mean the URL is wrong, not that the portal had a bad moment.
PERMANENT_PARSE_CODES = frozenset({"not_ical"})
# Whatever else stops a sync between its fetch and its commit, recorded as a transient failure:
# a statement our database refused, or something we did not foresee (a soft time limit included).
# Our database being unavailable is not among them: it is ours to bear, never the connection's
# (syncs.db_connections), and the task tries again.
DATABASE_ERROR, SYNC_FAILED = "database_error", "sync_failed"
# What a sync reads of its connection, property and portal (other fields would load on first use,
# one query each: tests count a poll's queries).
POLL_FIELDS = (
    "property__timezone", "portal__labels", "direction", "enabled", "paused_at", "import_url", "etag", "last_modified",
    "body_fingerprint", "held_answer", "https_works", "sync_interval_minutes", "consecutive_failures",
    "settings_version",
)
# In StoredBlock's order.
STORED_BLOCK_FIELDS = ("id", "uid", "recurrence_id", "start_date", "end_date", "kind", "summary", "text_digest")


class LeaseLost(Exception):
    """Someone else holds the connection now, or its settings changed since we read them (see
    syncs.sync_settings): our result is dropped."""


class HostBusy(Exception):
    """The portal host may not be asked now (syncs.politeness): the sync was put off, unmade."""


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
    changed: bool = False  # a body we have not read before: to be parsed
    https_works: bool | None = None
    stored: list[StoredBlock] | None = None  # the connection's blocks, read before parsing
    today: date | None = None  # the property's day when the feed was read


def connection_lease_and_read(*, connection_id: int, holder: str, claimed: bool = False) -> Connection | None:
    """Take the connection's lease for ``holder`` and read it, with its property and portal, as
    it is now; None if it is gone or someone else holds it.

    ``claimed``: ``holder`` is a dispatcher's claim, which leased the row when it claimed it. The
    claim's task keeps that lease, and only that: a lease given back means the claim's turn was
    served (a task delivered again, or a lost worker's late one), a lease someone else holds
    means it was taken over (syncs.scheduling). A task that finds the lease still its own with
    at least half its length to run needs no write to keep it: it reads the row in one
    statement; otherwise (it waited in the queue, or it is a retry) it renews the lease first.
    Anyone else (a "Sync now") takes the lease if it is free.
    """
    rows = Connection.objects.select_related("property", "portal").only(*POLL_FIELDS).filter(
        pk=connection_id, lease_holder=holder
    ).order_by()
    if claimed:
        spare = timezone.now() + timedelta(seconds=settings.SYNC_LEASE_SECONDS / 2)
        held = next(iter(rows.filter(lease_until__gte=spare)[:1]), None)
        if held is not None:
            return held
        if not connection_keep_claim(connection_id=connection_id, holder=holder):
            return None
    elif not connection_acquire_lease(connection_id=connection_id, holder=holder):
        return None
    return next(iter(rows[:1]), None)


def connection_sync_leased(
    *, connection_id: int, trigger: str = SyncRun.Trigger.SCHEDULED, holder: str | None = None,
    switched_off_too: bool = False,
) -> SyncRun | None:
    """Take the connection's lease and sync it, unless it is gone, switched off, paused (for
    scheduled runs), or someone else holds it. ``holder``: the dispatcher's claim, for a
    scheduled poll (its task, retried or not, takes the lease again); a new one otherwise.
    ``switched_off_too``: an administrator's explicit sync from the command line, which reads a
    switched-off sync all the same (the pages never do: syncs.sync_requests)."""
    claimed = holder is not None
    holder = holder or new_lease_holder()
    connection = connection_lease_and_read(connection_id=connection_id, holder=holder, claimed=claimed)
    if connection is None:
        log.info("sync skipped connection=%s reason=gone_or_leased", connection_id)
        return None
    return _sync_holding(connection, trigger=trigger, holder=holder, switched_off_too=switched_off_too, claimed=claimed)


def _sync_holding(
    connection: Connection, *, trigger: str, holder: str, switched_off_too: bool = False, claimed: bool = False
) -> SyncRun | None:
    run = None
    served = True  # a "Sync now" put off by a busy host stays requested
    keep_lease = False  # a claim's retry needs its lease (and the next dispatcher its expiry)
    try:
        if not connection.imports:
            return None
        if not connection.enabled and not switched_off_too:
            # Switched off since the request was made: nothing is imported until it is switched on.
            log.info("sync skipped connection=%s reason=switched_off", connection.pk)
            return None
        if trigger == SyncRun.Trigger.SCHEDULED and connection.paused_at:
            return None
        run = connection_sync(connection=connection, trigger=trigger, holder=holder)
        return run
    except HostBusy:
        served = False
        return None
    except (DatabaseError, InterfaceError):
        # Our database failed us and nothing was recorded (connection_sync): the task tries
        # again, and a "Sync now" stays requested in case it gives up. A claim keeps its lease:
        # its retry takes it again, and if none comes, the next dispatcher after it expired.
        served = False
        keep_lease = claimed
        raise
    except LeaseLost:
        log.warning("sync dropped connection=%s reason=lease_lost_or_settings_changed", connection.pk)
        return None
    finally:
        if trigger != SyncRun.Trigger.SCHEDULED and served:
            # The operator's "Sync now" has been served (or the connection is gone); one put off
            # stays requested, and its job comes back (syncs.sync_requests).
            Connection.objects.filter(pk=connection.pk, sync_requested_at__isnull=False).update(sync_requested_at=None)
        if run is None and not keep_lease:
            # A recorded run gave the lease back in its own write.
            connection_release_lease(connection_id=connection.pk, holder=holder)


def _after_error() -> None:
    """A connection an error left unusable is replaced before the failure is recorded (never
    inside a caller's transaction: that would end it)."""
    db = connections[DEFAULT_DB_ALIAS]
    if not db.in_atomic_block:
        db.close_if_unusable_or_obsolete()


def connection_sync(*, connection: Connection, trigger: str, holder: str, now: datetime | None = None) -> SyncRun:
    """Run one sync of ``connection`` as read when its lease was taken by ``holder``.

    Raises HostBusy, having written nothing but the connection's next turn, when its portal host
    may not be asked now (syncs.politeness). Anything that goes wrong after the fetch is recorded
    as a failed run, in a transaction of its own: nothing of the feed is half-applied. Except our
    database being unavailable (syncs.db_connections): that raises, with nothing recorded.
    """
    started = now or timezone.now()
    clock = time.monotonic()
    host = host_of(connection.import_url)
    wait = politeness.SLOTS.take(host)
    if wait is not None:
        until = timezone.now() + timedelta(seconds=defer_seconds(wait))
        connection_defer(connection_id=connection.pk, holder=holder, until=until)
        log.info("sync put off connection=%s reason=portal_host_busy seconds=%d", connection.pk, (until - started).total_seconds())
        raise HostBusy
    database_idle()  # waits on portals hold no database connection
    try:
        outcome = _parse(connection, _fetch(connection, host))
        run = _record(connection=connection, holder=holder, trigger=trigger, outcome=outcome, started=started)
    except LeaseLost:
        raise
    except (Exception, SoftTimeLimitExceeded) as exc:
        # Rolled back already (the record's transaction ended with the exception).
        unavailable = database_unavailable(exc)
        _after_error()
        if unavailable:
            # Our database, not the portal: no failed run, no step towards a pause; the task
            # tries again.
            log.warning(
                "sync not recorded connection=%s reason=database_unavailable error=%s, will retry",
                connection.pk, type(exc.__cause__ or exc).__name__,
            )
            raise
        # Recorded on its own, so that it counts towards the pause like any other failure; if
        # the database cannot take even that, the error reaches the task, which is retried.
        log.exception("sync failed connection=%s", connection.pk)
        failure = Failure(DATABASE_ERROR if isinstance(exc, DatabaseError) else SYNC_FAILED, {})
        run = _record(connection=connection, holder=holder, trigger=trigger, outcome=Outcome(failure=failure), started=started)
    if log.isEnabledFor(logging.INFO):  # masking the URL is work of its own
        log.info(
            "sync connection=%s url=%s outcome=%s duration_ms=%d bytes=%d added=%d updated=%d removed=%d held=%d",
            connection.pk, mask_url(connection.import_url), run.outcome, (time.monotonic() - clock) * 1000,
            run.bytes_received, run.events_added, run.events_updated, run.events_removed, run.events_held,
        )
    return run


def _fetch(connection: Connection, host: str) -> Outcome:
    """Fetch, holding one of the host's slots; no database connection held, no transaction
    open. Fetch failures become an Outcome, not exceptions."""
    # While removals are held we need the whole answer again, so validators are not sent.
    holding = bool(connection.held_answer)
    error: FetchError | None = None
    try:
        fetched = fetch_feed(
            connection.import_url,
            etag=None if holding else connection.etag or None,
            last_modified=None if holding else connection.last_modified or None,
            allow_loopback=settings.FETCH_ALLOW_LOOPBACK,
            user_agent=settings.FETCH_USER_AGENT,
        )
    except FetchError as exc:
        error = exc
    finally:
        politeness.SLOTS.give_back(
            host, error_code=error.code if error else None, retry_after=error.retry_after if error else None
        )
    if error is not None:
        failure = Failure(error.code, dict(error.params), error.permanent, error.retry_after)
        return Outcome(failure=failure, https_works=_https_variant_works(connection))
    if fetched.outcome == "not_modified":
        return Outcome(fetched=fetched)
    fingerprint = body_fingerprint(fetched.body)
    if fingerprint == connection.body_fingerprint and not holding:
        return Outcome(fetched=fetched, fingerprint=fingerprint)
    return Outcome(fetched=fetched, fingerprint=fingerprint, changed=True)


def _parse(connection: Connection, outcome: Outcome) -> Outcome:
    """Parse a changed body against the blocks we hold (read once, here, for the parser's memo
    and then for the diff). Under our lease no one else writes this connection's blocks."""
    if not outcome.changed:  # a failure, or nothing new: nothing to parse
        return outcome
    fetched = outcome.fetched
    stored = [
        StoredBlock(*row)
        for row in Block.objects.filter(source_id=connection.pk, removed_at__isnull=True)
        .order_by("start_date", "pk")
        .values_list(*STORED_BLOCK_FIELDS)
    ]
    # How the text becomes nights, as read with the lease: a change since voids this poll.
    today = connection.property.local_today()
    try:
        feed = parse_feed(
            fetched.body,
            timezone=connection.property.timezone,
            labels=connection.portal.labels or None,
            today=today,
            horizon_back_days=settings.SYNC_HORIZON_BACK_DAYS,
            horizon_ahead_days=settings.SYNC_HORIZON_AHEAD_DAYS,
            own_uid_domain=settings.EXPORT_UID_DOMAIN,
            known=known_readings(stored),
        )
    except FeedParseError as exc:
        failure = Failure(exc.code, {}, exc.code in PERMANENT_PARSE_CODES)
        return Outcome(fetched=fetched, failure=failure)
    return Outcome(fetched=fetched, feed=feed, fingerprint=outcome.fingerprint, stored=stored, today=today)


def _https_variant_works(connection: Connection) -> bool | None:
    """After an http:// URL failed, try https:// once and remember whether it answers a calendar."""
    if not connection.import_url.lower().startswith("http://") or connection.https_works is not None:
        return connection.https_works
    return https_variant_works(
        connection.import_url, allow_loopback=settings.FETCH_ALLOW_LOOPBACK, user_agent=settings.FETCH_USER_AGENT
    )



def _record(*, connection: Connection, holder: str, trigger: str, outcome: Outcome, started: datetime) -> SyncRun:
    """Write the run and the connection's new state in one transaction, and give the lease back,
    if ``holder`` still holds the lease and the settings are still those the sync read."""
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
            connection_id=connection.pk, holder=holder, settings_version=connection.settings_version
        )
        if outcome.failure:
            updates = _record_failure(locked, run, outcome, now)
        elif outcome.feed is None:
            updates = _record_unchanged(locked, run, fetched, now)
        else:
            updates = _record_feed(locked, run, outcome, now)
        Connection.objects.filter(pk=connection.pk).update(**updates, **LEASE_RELEASED)
        state_record([connection.pk], now=now)
    return run


def connection_lock_leased(*, connection_id: int, holder: str, settings_version: int) -> Connection:
    """Lock the connection's row for the caller's transaction and return it as it is now, if
    ``holder`` still has the lease and the settings are still ``settings_version``; else raise
    LeaseLost. Only that row: locking its property or portal too would queue every sync of a
    portal behind the others."""
    locked = (
        Connection.objects.select_for_update()
        .filter(pk=connection_id, lease_holder=holder, settings_version=settings_version)
        .order_by()
        .first()
    )
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
