"""Celery tasks: thin. They take ids, reload rows, and call the domain code."""

from __future__ import annotations

import logging
import socket
import uuid

from celery import shared_task

from syncs.models import Connection, SyncRun
from syncs.scheduling import (
    connection_acquire_lease,
    connection_release_lease,
    connections_claim_due,
)
from syncs.sync import connection_sync

log = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def dispatch_due_syncs() -> int:
    """Run by beat every minute: hand each due connection to a worker."""
    ids = connections_claim_due()
    for connection_id in ids:
        sync_connection.delay(connection_id)
    if ids:
        log.info("dispatched count=%d", len(ids))
    return len(ids)


@shared_task(ignore_result=True, acks_late=True)
def sync_connection(connection_id: int, trigger: str = SyncRun.Trigger.SCHEDULED) -> str | None:
    """Sync one connection, unless it is gone, switched off, or another worker has it."""
    holder = f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"
    if not connection_acquire_lease(connection_id=connection_id, holder=holder):
        log.info("sync skipped connection=%s reason=leased", connection_id)
        return None
    try:
        connection = Connection.objects.select_related("property", "portal").filter(pk=connection_id).first()
        if connection is None or not connection.imports:
            return None
        if not connection.enabled and trigger == SyncRun.Trigger.SCHEDULED:
            return None
        run = connection_sync(connection=connection, trigger=trigger)
        return run.outcome
    finally:
        connection_release_lease(connection_id=connection_id, holder=holder)
