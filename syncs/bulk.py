"""One operator action on many syncs at once: switch off, switch on, sync now, accept held removals.

The same rules as for one sync, through the same services: the switch is
``syncs.connection_state.connection_switch`` (a paused sync switched on is checked by a fetch,
queued, as ``syncs.operator_actions.connection_set_enabled`` does), "Sync now" is
``syncs.sync_requests.connections_request_sync``, and accepting held removals accepts the answer
the operator saw (``syncs.engine.record.connection_accept_held_answer``) and asks for a sync to apply it,
as for one sync. Every sync asked for is a durable job (syncs.jobs): written with the action,
handed to the broker after the commit, sent again until a worker ran it, run once; 500 syncs are
queued, never run in the request. The whole action is one transaction and ONE activity entry
with its count; a ``BulkAction`` row keeps which syncs it concerned, for the progress page.
Switching off keeps an undo (syncs.undo) that puts the syncs back as they were.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from syncs.activity import activity_record
from syncs.connection_state import connection_switch
from syncs.engine.record import connection_accept_held_answer
from syncs.models import Activity, BulkAction, Connection, Job, Undo
from syncs.removal import connections_remove
from syncs.sync_requests import connections_request_sync, sync_request_key
from syncs.sync_state import SyncState, SyncStatus, connection_statuses
from syncs.undo import undo_offer_switch_off

log = logging.getLogger(__name__)

Kind = BulkAction.Kind
ACTIVITY = {
    Kind.SWITCH_OFF: Activity.Action.BULK_SWITCHED_OFF,
    Kind.SWITCH_ON: Activity.Action.BULK_SWITCHED_ON,
    Kind.SYNC_NOW: Activity.Action.BULK_SYNC_REQUESTED,
    Kind.ACCEPT_HELD: Activity.Action.BULK_HELD_ACCEPTED,
    Kind.REMOVE: Activity.Action.BULK_REMOVED,
}
# At most this many syncs in one action: "all matching" of the biggest account.
MAX_SYNCS = 5000
# The progress page stops waiting when none of the action's syncs has moved for this long: no
# worker is taking them (it says so; they stay asked for, and run when a worker is back).
STALLED_AFTER = timedelta(minutes=5)


@dataclass(frozen=True)
class BulkResult:
    action: BulkAction
    done: int  # syncs the action changed or queued
    skipped: int  # selected syncs it did not apply to (already off, export only, nothing held...)
    undo: Undo | None = None  # what puts the syncs back as they were (switching off)


def bulk_selected(*, account, connections: QuerySet[Connection]) -> list[Connection]:
    """The syncs an action on ``connections`` concerns: the account's, at most MAX_SYNCS."""
    return list(
        connections.filter(property__account=account).select_related("property", "portal").order_by("pk")[:MAX_SYNCS]
    )


def bulk_run(*, user, account, kind: str, connections: QuerySet[Connection]) -> BulkResult:
    """Do ``kind`` to each of ``connections`` (already scoped to the operator's account)."""
    selected = bulk_selected(account=account, connections=connections)
    acted: list[int] = []
    awaited: list[int] = []
    held_answers: dict[str, str] = {}
    with transaction.atomic():
        for connection in selected:
            if kind == Kind.SWITCH_OFF:
                if not connection.enabled:
                    continue
                connection_switch(connection=connection, enabled=False)
            elif kind == Kind.SWITCH_ON:
                if connection.enabled and connection.paused_at is None:
                    continue
                if connection_switch(connection=connection, enabled=True):
                    # A paused sync is being checked: its fetch is asked for at once, as one switch does.
                    awaited.append(connection.pk)
            elif kind == Kind.SYNC_NOW:
                # Switched off: not synced (syncs.sync_requests), so left as it was.
                if not connection.imports or not connection.enabled:
                    continue
                awaited.append(connection.pk)
            elif kind == Kind.ACCEPT_HELD:
                # Only the answer the operator saw: one that changed since is judged afresh.
                if not (connection.held_removals and connection_accept_held_answer(connection=connection)):
                    continue
                held_answers[str(connection.pk)] = connection.held_answer
                awaited.append(connection.pk)
            acted.append(connection.pk)
        if kind == Kind.REMOVE:  # after the confirmation page (syncs.views.removal): one write for the lot
            acted = connections_remove(user=user, connections=selected, each_recorded=False)
        # The syncs the action asks for: requested together (each one a durable job).
        asked = set(awaited)
        connections_request_sync(connections=[c for c in selected if c.pk in asked])
        action = BulkAction.objects.create(
            account=account, user=user if user.is_authenticated else None, kind=kind, connection_ids=acted,
            awaited_ids=awaited, held_answers=held_answers,
        )
        activity_record(
            user=user, action=ACTIVITY[kind],
            params={"count": len(acted), "selected": len(selected), "bulk": action.pk},
        )
        undo = None
        if kind == Kind.SWITCH_OFF:
            switched = set(acted)
            undo = undo_offer_switch_off(user=user, account=account, connections=[c for c in selected if c.pk in switched])
    return BulkResult(action=action, done=len(acted), skipped=len(selected) - len(acted), undo=undo)


@dataclass(frozen=True)
class BulkProgress:
    action: BulkAction
    statuses: list[SyncStatus]  # of the awaited syncs, as they are now (sync_state's)
    finished: int
    # When one of the syncs last moved (a worker took it, or it ran); None before any did.
    last_moved: datetime | None = None
    now: datetime | None = None

    @property
    def total(self) -> int:
        return len(self.action.awaited_ids)

    @property
    def done(self) -> bool:
        return self.finished >= self.total

    @property
    def stalled(self) -> bool:
        """Nothing moved for STALLED_AFTER: the page stops waiting and says so."""
        since = max(self.last_moved or self.action.created_at, self.action.created_at)
        return not self.done and (self.now or timezone.now()) - since >= STALLED_AFTER

    @property
    def stalled_minutes(self) -> int:
        return int(STALLED_AFTER.total_seconds() // 60)

    @property
    def by_state(self) -> list[tuple[SyncState, int]]:
        counts: dict[SyncState, int] = {}
        for status in self.statuses:
            counts[status.state] = counts.get(status.state, 0) + 1
        return sorted(counts.items(), key=lambda item: item[0] != SyncState.WORKING)

    @property
    def percent(self) -> int:
        return 100 if not self.total else round(100 * self.finished / self.total)


def bulk_progress(*, action: BulkAction, now: datetime | None = None) -> BulkProgress:
    """How far the syncs the action asked for have come: three queries."""
    connections = list(
        Connection.objects.filter(pk__in=action.awaited_ids).select_related("property", "portal").order_by("property__name", "pk")
    )
    statuses = connection_statuses(connections)
    # The worker clears a sync's request when it has served it (its run recorded, or nothing to
    # run); a sync deleted meanwhile has nothing left to wait for.
    finished = sum(1 for connection in connections if connection.sync_requested_at is None)
    finished += len(action.awaited_ids) - len(connections)
    ran = [c.last_attempt_at for c in connections if c.last_attempt_at and c.last_attempt_at >= action.created_at]
    taken = Job.objects.filter(
        key__in=[sync_request_key(pk) for pk in action.awaited_ids], started_at__gte=action.created_at
    ).aggregate(last=Max("started_at"))["last"]
    moments = [moment for moment in (*ran, taken) if moment is not None]
    return BulkProgress(
        action=action, statuses=[statuses[c.pk] for c in connections], finished=finished,
        last_moved=max(moments) if moments else None, now=now or timezone.now(),
    )
