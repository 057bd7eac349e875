"""One sync of one connection, stage after stage: lease -> fetch -> parse -> diff -> record.

Nothing is written until the end, and then everything is written in one transaction with the
run that did it, under the connection's lease: a failed fetch never deletes a block, and a
worker killed in the middle leaves nothing half-applied (the next run repairs).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, connections
from django.utils import timezone

from syncs.db_connections import database_idle, database_unavailable
from syncs.engine import fetch
from syncs.engine.diff import StoredBlock, known_readings
from syncs.engine.fetch import (
    FetchError,
    body_fingerprint,
    defer_seconds,
    fetch_feed,
    host_of,
    https_works_or_check,
    mask_url,
)
from syncs.engine.lease import (
    LeaseLost,
    connection_defer,
    connection_lease_and_read,
    connection_release_lease,
    new_lease_holder,
)
from syncs.engine.parse.ical import FeedParseError, parse_feed
from syncs.engine.record import Failure, Outcome, connection_record
from syncs.models import Block, Connection, SyncRun

log = logging.getLogger(__name__)

# Parse failures that mean the URL is wrong, not that the portal had a bad moment.
PERMANENT_PARSE_CODES = frozenset({"not_ical"})
# Whatever else stops a sync between its fetch and its commit, recorded as a transient failure:
# a statement our database refused, or something we did not foresee (a soft time limit included).
# Our database being unavailable is not among them: it is ours to bear, never the connection's
# (syncs.db_connections), and the task tries again.
DATABASE_ERROR, SYNC_FAILED = "database_error", "sync_failed"
# In StoredBlock's order.
STORED_BLOCK_FIELDS = ("id", "uid", "recurrence_id", "start_date", "end_date", "kind", "summary", "text_digest")


class HostBusy(Exception):
    """The portal host may not be asked now (syncs.engine.fetch): the sync was put off, unmade."""


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
    may not be asked now (syncs.engine.fetch). Anything that goes wrong after the fetch is recorded
    as a failed run, in a transaction of its own: nothing of the feed is half-applied. Except our
    database being unavailable (syncs.db_connections): that raises, with nothing recorded.
    """
    started = now or timezone.now()
    clock = time.monotonic()
    host = host_of(connection.import_url)
    wait = fetch.SLOTS.take(host)
    if wait is not None:
        until = timezone.now() + timedelta(seconds=defer_seconds(wait))
        connection_defer(connection_id=connection.pk, holder=holder, until=until)
        log.info("sync put off connection=%s reason=portal_host_busy seconds=%d", connection.pk, (until - started).total_seconds())
        raise HostBusy
    database_idle()  # waits on portals hold no database connection
    try:
        outcome = _parse(connection, _fetch(connection, host))
        run = connection_record(connection=connection, holder=holder, trigger=trigger, outcome=outcome, started=started)
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
        run = connection_record(connection=connection, holder=holder, trigger=trigger, outcome=Outcome(failure=failure), started=started)
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
        fetch.SLOTS.give_back(
            host, error_code=error.code if error else None, retry_after=error.retry_after if error else None
        )
    if error is not None:
        failure = Failure(error.code, dict(error.params), error.permanent, error.retry_after)
        return Outcome(failure=failure, https_works=https_works_or_check(connection))
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
