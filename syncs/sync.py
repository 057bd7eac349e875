"""Running one sync of one connection.

Placeholder until the import engine lands: it records that a run happened, so the scheduling,
the lease and the worker can be seen working end to end.
"""

from __future__ import annotations

from django.utils import timezone

from syncs.models import Connection, SyncRun

NOT_IMPLEMENTED = "not_implemented"


def connection_sync(*, connection: Connection, trigger: str = SyncRun.Trigger.SCHEDULED) -> SyncRun:
    now = timezone.now()
    run = SyncRun.objects.create(
        connection=connection, trigger=trigger, started_at=now, finished_at=now, outcome=NOT_IMPLEMENTED
    )
    Connection.objects.filter(pk=connection.pk).update(last_attempt_at=now)
    return run
