""""Sync now": written to the database first, then handed to a worker without waiting for the
broker. If the broker is down or hung, the request stays in the database and the dispatcher
hands it out on its next pass, so the operator's click is never lost and never hangs the page.

A switched-off sync imports nothing, whoever asks: the pages do not offer "Sync now" for it, a
request for it is refused here, and one made before it was switched off is dropped by the
worker (``syncs.sync``). Switching it on is what makes it sync (within a minute).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from syncs.activity import activity_record
from syncs.models import Activity, Connection, SyncRun
from syncs.scheduling import UNSERVED_AFTER, unserved_requests  # noqa: F401 - where callers found them
from syncs.tasks import sync_connection

log = logging.getLogger(__name__)


def connection_request_sync(
    *, connection: Connection, user, now: datetime | None = None, pressed: bool = True, origin: str = ""
) -> bool:
    """Ask a worker to sync ``connection`` now; returns False, asking nothing, when it is
    switched off (as the database has it now).

    ``pressed``: the operator pressed "Sync now" (recorded in the activity, with the page it
    was pressed on as ``origin``, e.g. "checklist"); False when the request follows another
    action already recorded, such as saving a new link."""
    now = now or timezone.now()
    with transaction.atomic():
        if not Connection.objects.filter(pk=connection.pk, enabled=True).update(sync_requested_at=now):
            return False
        if pressed:
            activity_record(user=user, action=Activity.Action.SYNC_REQUESTED, connection=connection,
                            params={"from": origin} if origin else None)
        transaction.on_commit(lambda: enqueue_in_background(connection.pk))
    connection.sync_requested_at = now
    return True


def enqueue_in_background(connection_id: int) -> None:
    """Publish the task from a thread: a hung broker costs the thread seconds, not the page."""
    threading.Thread(target=_enqueue, args=(connection_id,), name=f"sync-now-{connection_id}", daemon=True).start()


def _enqueue(connection_id: int) -> None:
    try:
        sync_connection.apply_async((connection_id, SyncRun.Trigger.MANUAL))
    except Exception:  # the broker is down: the dispatcher will pick the request up
        log.warning("sync now not queued connection=%s: broker unavailable, the dispatcher will retry", connection_id)
