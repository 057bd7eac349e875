"""One sync of one connection, the stages in order, each once: lease -> fetch -> parse -> diff ->
record. What a stage found flows into the next; a stage is handed the values it needs.

Nothing is written until the record, and then everything is written in one transaction with
the run that did it, under the connection's lease (syncs.engine.record).
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError
from django.utils import timezone

from syncs.db_connections import database_idle
from syncs.engine.diff import HeldAnswer, StoredBlock, feed_changes
from syncs.engine.fetch import feed_fetch_politely, mask_url
from syncs.engine.lease import LEASE_RELEASED, LeaseLost, connection_lease_for_sync
from syncs.engine.parse.ical import FeedParseError, known_readings, parse_feed
from syncs.engine.record import Failure, Outcome, connection_record
from syncs.jobs import JobPutOff
from syncs.models import Block, Connection, SyncRun

log = logging.getLogger(__name__)

# Parse failures that mean the URL is wrong, not that the portal had a bad moment.
PERMANENT_PARSE_CODES = frozenset({"not_ical"})
# In StoredBlock's order.
STORED_BLOCK_FIELDS = ("id", "uid", "recurrence_id", "start_date", "end_date", "kind", "summary", "text_digest")
# A request that could not be served yet (its portal host is busy, another sync holds the
# connection) is tried again after this long.
PUT_OFF = timedelta(seconds=30)


def sync_connection_run(*, connection_id: int, trigger: str, holder: str | None = None) -> SyncRun | None:
    """The body of the task ``syncs.tasks.sync_connection``: a sync as claimed by the dispatcher
    (``holder``: the claim's lease holder), or an operator's request served (a request's job: run
    once however often it is sent, syncs.jobs). Raises JobPutOff if a request's sync cannot run
    now while the request waits (its portal host is busy, another sync holds the connection), so
    that the job comes back."""
    run = connection_sync_leased(connection_id=connection_id, trigger=trigger, holder=holder)
    if (
        run is None
        and trigger == SyncRun.Trigger.MANUAL
        and Connection.objects.filter(pk=connection_id, sync_requested_at__isnull=False).exists()
    ):
        log.info("sync now put off connection=%s", connection_id)
        raise JobPutOff(PUT_OFF.total_seconds())
    return run


def connection_sync_leased(
    *, connection_id: int, trigger: str = SyncRun.Trigger.SCHEDULED, holder: str | None = None,
    switched_off_too: bool = False,
) -> SyncRun | None:
    """Take the connection's lease and sync it, unless it is gone, not to sync, or someone else
    holds it (syncs.engine.lease); None when no run was recorded.

    Put off, having written nothing but the connection's next turn, when its portal host may
    not be asked now: a "Sync now" then stays requested. Anything that goes wrong after the
    lease is recorded as a failed run: nothing of the feed is half-applied. Except our database
    being unavailable (syncs.db_connections): that raises, with nothing recorded, and the task
    tries again; a claim keeps its lease for that retry, and a "Sync now" stays requested.
    """
    leased = connection_lease_for_sync(
        connection_id=connection_id, trigger=trigger, holder=holder, switched_off_too=switched_off_too
    )
    if leased is None:
        return None
    connection = leased.connection
    started, clock = timezone.now(), time.monotonic()
    served = True  # a "Sync now" put off by a busy host, or by our database, stays requested
    masked_url = mask_url(connection.import_url) if log.isEnabledFor(logging.INFO) else ""  # work of its own
    try:
        try:
            database_idle()  # waits on portals hold no database connection
            fetched = feed_fetch_politely(
                url=connection.import_url, etag=connection.etag, last_modified=connection.last_modified,
                holding=bool(connection.held_answer), https_works=connection.https_works,
                fingerprint=connection.body_fingerprint,
            )
            if fetched.put_off_seconds is not None:
                served = False
                outcome = Outcome(put_off_seconds=fetched.put_off_seconds)
            elif fetched.error is not None:
                error = fetched.error
                failure = Failure(error.code, dict(error.params), error.permanent, error.retry_after)
                outcome = Outcome(failure=failure, https_works=fetched.https_works)
            else:
                outcome = Outcome(fetched=fetched.result, fingerprint=fetched.fingerprint)
            if fetched.changed:
                # The blocks we hold, read once for the parser's memo and then for the diff.
                # Under our lease no one else writes this connection's blocks.
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
                        fetched.result.body,
                        timezone=connection.property.timezone,
                        labels=connection.portal.labels or None,
                        today=today,
                        horizon_back_days=settings.SYNC_HORIZON_BACK_DAYS,
                        horizon_ahead_days=settings.SYNC_HORIZON_AHEAD_DAYS,
                        own_uid_domain=settings.EXPORT_UID_DOMAIN,
                        known=known_readings(stored),
                    )
                except FeedParseError as exc:
                    outcome = Outcome(fetched=fetched.result, failure=Failure(exc.code, {}, exc.code in PERMANENT_PARSE_CODES))
                else:
                    held = HeldAnswer(connection.held_answer, connection.held_since, connection.held_accepted_answer)
                    changes = feed_changes(events=feed.events, stored=stored, today=today, held=held, now=timezone.now())
                    outcome.feed, outcome.changes = feed, changes
        except (Exception, SoftTimeLimitExceeded) as exc:
            outcome = Outcome(error=exc)  # recorded as a failed run, unless our database is unavailable
        run = connection_record(leased=leased, trigger=trigger, outcome=outcome, started=started)
        if run is None:  # put off
            return None
    except LeaseLost:
        log.warning("sync dropped connection=%s reason=lease_lost_or_settings_changed", connection.pk)
        return None
    except (DatabaseError, InterfaceError):
        # Our database failed us and nothing was recorded: the task tries again, and a "Sync
        # now" stays requested in case it gives up. A claim keeps its lease: its retry takes it
        # again, and if none comes, the next dispatcher after it expired.
        served = False
        if not leased.claimed:
            Connection.objects.filter(pk=connection.pk, lease_holder=leased.holder).update(**LEASE_RELEASED)
        raise
    finally:
        if trigger != SyncRun.Trigger.SCHEDULED and served:
            # The operator's "Sync now" has been served; one put off stays requested, and its
            # job comes back (sync_connection_run).
            Connection.objects.filter(pk=connection.pk, sync_requested_at__isnull=False).update(sync_requested_at=None)
    if masked_url:
        log.info(
            "sync connection=%s url=%s outcome=%s duration_ms=%d bytes=%d added=%d updated=%d removed=%d held=%d",
            connection.pk, masked_url, run.outcome, (time.monotonic() - clock) * 1000,
            run.bytes_received, run.events_added, run.events_updated, run.events_removed, run.events_held,
        )
    return run

