"""A quiet background check of paused feeds: while a connection is paused by errors, read its
feed now and then (backing off), write nothing but the check's own fields, and say when it works
again ("ready to resume"). Resuming stays the operator's call unless the account asks otherwise;
then the sync is switched back on as the operator would do it: "checking" until a real sync has
read the feed (syncs/engine/record.py), and only that sync ends the pause.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from syncs.activity import activity_record_automatic
from syncs.connection_state import connection_switch
from syncs.engine.fetch import FetchError, fetch_feed
from syncs.engine.parse.ical import FeedParseError, parse_feed
from syncs.models import Activity, Connection

log = logging.getLogger(__name__)

FIRST_PROBE_DELAY = timedelta(minutes=5)
LONGEST_PROBE_DELAY = timedelta(hours=6)
# A feed that works again is checked less often: the operator has been told.
READY_RECHECK = timedelta(minutes=30)


def probe_delay(failures: int) -> timedelta:
    return min(FIRST_PROBE_DELAY * 2 ** max(failures - 1, 0), LONGEST_PROBE_DELAY)


def connections_to_probe(*, now: datetime) -> list[Connection]:
    return list(
        # A sync switched back on is being checked by a real sync already.
        Connection.objects.filter(enabled=True, paused_at__isnull=False, checking_since__isnull=True)
        .exclude(direction=Connection.Direction.EXPORT_ONLY)
        .filter(Q(probe_next_at__isnull=True) | Q(probe_next_at__lte=now))
        .select_related("property__account", "portal")[:200]
    )


def feed_works(connection: Connection) -> bool:
    try:
        fetched = fetch_feed(connection.import_url, allow_loopback=settings.FETCH_ALLOW_LOOPBACK, user_agent=settings.FETCH_USER_AGENT)
        parse_feed(fetched.body, timezone=connection.property.timezone, labels=connection.portal.labels or None)
    except (FetchError, FeedParseError):
        return False
    return True


def connection_probe(*, connection: Connection, now: datetime | None = None) -> bool:
    """Check one paused connection's feed; returns whether it works again."""
    now = now or timezone.now()
    works = feed_works(connection)
    if works:
        updates = {"probe_failures": 0, "probe_next_at": now + READY_RECHECK,
                   "ready_to_resume_at": connection.ready_to_resume_at or now}
    else:
        failures = connection.probe_failures + 1
        updates = {"probe_failures": failures, "probe_next_at": now + probe_delay(failures), "ready_to_resume_at": None}
    Connection.objects.filter(pk=connection.pk, paused_at__isnull=False).update(**updates)
    return works


def connection_resume_automatically(*, connection: Connection, now: datetime) -> bool:
    """Switch a paused sync back on for an account that asks for it, and ask for its sync at
    once (the caller hands it to a worker; the dispatcher would, were the broker down).
    Returns whether it was switched back on."""
    with transaction.atomic():
        if not connection_switch(connection=connection, enabled=True, now=now, by="probe"):
            return False
        activity_record_automatic(
            action=Activity.Action.SWITCHED_ON, connection_id=connection.pk, property_id=connection.property_id,
            params={"automatic": True}, when=now,
        )
        Connection.objects.filter(pk=connection.pk).update(sync_requested_at=now)
    return True


@dataclass
class ProbePass:
    probed: int = 0
    resumed: list[int] = field(default_factory=list)  # switched back on: their sync is asked for


def probe_paused_connections(*, now: datetime | None = None) -> ProbePass:
    now = now or timezone.now()
    done = ProbePass()
    for connection in connections_to_probe(now=now):
        done.probed += 1
        works = connection_probe(connection=connection, now=now)
        if works and connection.property.account.auto_resume:
            log.info("auto-resume connection=%s", connection.pk)
            if connection_resume_automatically(connection=connection, now=now):
                done.resumed.append(connection.pk)
    return done
