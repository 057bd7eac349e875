""""Sync now", and every other sync an operator's action asks for (the check of a sync switched
back on, accepting held removals, a new link read at once): written to the database first, as the
request on the connection and a job (syncs.jobs) that hands it to a worker after the commit. If
the broker is down or hung, the job is sent again once it is back, so the operator's click is
never lost and never hangs the page; sent twice, it is served once.

A switched-off sync imports nothing, whoever asks: the pages do not offer "Sync now" for it, a
request for it is refused here, and one made before it was switched off is dropped by the
worker (``syncs.engine.task``). Switching it on is what makes it sync (within a minute).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from syncs.activity import activity_record
from syncs.engine.task import connection_sync_leased
from syncs.jobs import JobPutOff, jobs_enqueue
from syncs.models import Activity, Connection, SyncRun

log = logging.getLogger(__name__)

# The task a request's job runs: the sync itself (syncs.tasks), named so as not to import it.
SYNC_TASK = "syncs.tasks.sync_connection"
# A request that could not be served yet (its portal host is busy, another sync holds the
# connection) is tried again after this long.
PUT_OFF = timedelta(seconds=30)


def sync_request_key(connection_id: int) -> str:
    """The key of a connection's request jobs: one waits at a time (syncs.jobs)."""
    return f"sync:{connection_id}"


def connection_request_sync(
    *, connection: Connection, user, now: datetime | None = None, pressed: bool = True, origin: str = ""
) -> bool:
    """Ask a worker to sync ``connection`` now; returns False, asking nothing, when it is
    switched off (as the database has it now).

    ``pressed``: the operator pressed "Sync now" (recorded in the activity, with the page it
    was pressed on as ``origin``, e.g. "checklist"); False when the request follows another
    action already recorded, such as saving a new link."""
    with transaction.atomic(savepoint=False):
        if not connections_request_sync(connections=[connection], now=now):
            return False
        if pressed:
            activity_record(user=user, action=Activity.Action.SYNC_REQUESTED, connection=connection,
                            params={"from": origin} if origin else None)
    return True


def connections_request_sync(*, connections: list[Connection], now: datetime | None = None) -> set[int]:
    """Ask for a sync of each connection that is switched on (as the database has it now),
    following an action already recorded (a bulk action): the requests and their jobs in a few
    statements, whatever their number. Returns the ids asked for."""
    now = now or timezone.now()
    ids = [connection.pk for connection in connections]
    with transaction.atomic(savepoint=False):
        asked = set(Connection.objects.filter(pk__in=ids, enabled=True).values_list("pk", flat=True))
        Connection.objects.filter(pk__in=asked).update(sync_requested_at=now)
        jobs_enqueue(task=SYNC_TASK, work=[([pk, SyncRun.Trigger.MANUAL], sync_request_key(pk)) for pk in sorted(asked)], now=now)
    for connection in connections:
        if connection.pk in asked:
            connection.sync_requested_at = now
    return asked


def sync_request_serve(*, connection_id: int) -> SyncRun | None:
    """Serve the connection's request with a sync (a request's job: run once however often it is
    sent, syncs.jobs). Raises JobPutOff if the sync cannot run now while the request waits (its
    portal host is busy, another sync holds the connection), so that the job comes back."""
    run = connection_sync_leased(connection_id=connection_id, trigger=SyncRun.Trigger.MANUAL)
    if run is None and Connection.objects.filter(pk=connection_id, sync_requested_at__isnull=False).exists():
        log.info("sync now put off connection=%s", connection_id)
        raise JobPutOff(PUT_OFF.total_seconds())
    return run
