"""One operator action on many syncs at once: switch off, switch on, sync now, accept held removals.

The same rules as for one sync, through the same services: the switch is
``syncs.connection_state.connection_switch`` (a paused sync switched on is checked by a fetch,
queued, as ``syncs.operator_actions.connection_set_enabled`` does), "Sync now" is
``syncs.sync_requests.connection_request_sync`` (written to the database, handed to the broker
without waiting: 500 syncs are queued, never run in the request), and accepting held removals is
``syncs.sync.connection_accept_held_removals``, run by the worker for each sync, only on the
answer the operator saw. The whole action is one transaction and ONE activity entry with its
count; a ``BulkAction`` row keeps which syncs it concerned, for the progress page.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from celery import shared_task
from django.db import transaction
from django.db.models import QuerySet

from syncs.activity import activity_record
from syncs.connection_state import connection_switch
from syncs.models import Activity, BulkAction, Connection
from syncs.removal import connections_remove
from syncs.sync import connection_accept_held_removals
from syncs.sync_requests import connection_request_sync
from syncs.sync_state import SyncState, SyncStatus, connection_statuses

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


@dataclass(frozen=True)
class BulkResult:
    action: BulkAction
    done: int  # syncs the action changed or queued
    skipped: int  # selected syncs it did not apply to (already off, export only, nothing held...)


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
                    connection_request_sync(connection=connection, user=user, pressed=False)
                    awaited.append(connection.pk)
            elif kind == Kind.SYNC_NOW:
                # Switched off: not synced (syncs.sync_requests), so left as it was.
                if not connection.imports or not connection_request_sync(connection=connection, user=user, pressed=False):
                    continue
                awaited.append(connection.pk)
            elif kind == Kind.ACCEPT_HELD:
                if not (connection.held_removals and connection.held_answer):
                    continue
                held_answers[str(connection.pk)] = connection.held_answer
                awaited.append(connection.pk)
            acted.append(connection.pk)
        if kind == Kind.REMOVE:  # after the confirmation page (syncs.views.removal): one write for the lot
            acted = connections_remove(user=user, connections=selected, each_recorded=False)
        action = BulkAction.objects.create(
            account=account, user=user if user.is_authenticated else None, kind=kind, connection_ids=acted,
            awaited_ids=awaited, held_answers=held_answers,
        )
        activity_record(
            user=user, action=ACTIVITY[kind],
            params={"count": len(acted), "selected": len(selected), "bulk": action.pk},
        )
        if held_answers:
            transaction.on_commit(lambda: _in_background(action.pk))
    return BulkResult(action=action, done=len(acted), skipped=len(selected) - len(acted))


def _in_background(bulk_id: int) -> None:
    """Publish from a thread: a hung broker costs the thread seconds, not the page."""
    threading.Thread(target=_publish, args=(bulk_id,), name=f"bulk-{bulk_id}", daemon=True).start()


def _publish(bulk_id: int) -> None:
    try:
        accept_held_fan_out.apply_async((bulk_id,))
    except Exception:  # the broker is down: the operator sees the removals still held, and can retry
        log.warning("bulk accept held not queued bulk=%s: broker unavailable", bulk_id)


@shared_task(ignore_result=True)
def accept_held_fan_out(bulk_id: int) -> int:
    """One task per sync: each accepting is a fetch, and must not wait for the others."""
    action = BulkAction.objects.filter(pk=bulk_id).first()
    if action is None:
        return 0
    for connection_id in action.held_answers:
        accept_held_one.delay(bulk_id, int(connection_id))
    return len(action.held_answers)


@shared_task(ignore_result=True, acks_late=True)
def accept_held_one(bulk_id: int, connection_id: int) -> str | None:
    """Apply one sync's held removals, if it still holds the answer the operator accepted: an
    answer that changed since is judged afresh by the shrink guard, as for one sync."""
    action = BulkAction.objects.filter(pk=bulk_id).first()
    connection = Connection.objects.filter(pk=connection_id).select_related("property", "portal").first()
    if action is None or connection is None:
        return None
    if connection.held_answer != action.held_answers.get(str(connection_id)):
        log.info("bulk accept held skipped connection=%s reason=answer_changed", connection_id)
        return None
    run = connection_accept_held_removals(connection=connection)
    return run.outcome if run else None


@dataclass(frozen=True)
class BulkProgress:
    action: BulkAction
    statuses: list[SyncStatus]  # of the awaited syncs, as they are now (sync_state's)
    finished: int

    @property
    def total(self) -> int:
        return len(self.action.awaited_ids)

    @property
    def done(self) -> bool:
        return self.finished >= self.total

    @property
    def by_state(self) -> list[tuple[SyncState, int]]:
        counts: dict[SyncState, int] = {}
        for status in self.statuses:
            counts[status.state] = counts.get(status.state, 0) + 1
        return sorted(counts.items(), key=lambda item: item[0] != SyncState.WORKING)

    @property
    def percent(self) -> int:
        return 100 if not self.total else round(100 * self.finished / self.total)


def bulk_progress(*, action: BulkAction) -> BulkProgress:
    """How far the syncs the action asked for have come: two queries."""
    connections = list(
        Connection.objects.filter(pk__in=action.awaited_ids).select_related("property", "portal").order_by("property__name", "pk")
    )
    statuses = connection_statuses(connections)
    finished = sum(1 for connection in connections if _finished(action, connection))
    # A sync deleted meanwhile has nothing left to wait for.
    finished += len(action.awaited_ids) - len(connections)
    return BulkProgress(action=action, statuses=[statuses[c.pk] for c in connections], finished=finished)


def _finished(action: BulkAction, connection: Connection) -> bool:
    if action.kind == Kind.ACCEPT_HELD:
        answer = action.held_answers.get(str(connection.pk))
        tried = connection.last_attempt_at is not None and connection.last_attempt_at >= action.created_at
        return tried or connection.held_answer != answer
    # "Sync now" and the check after switching on: the worker clears the request when it has run.
    return connection.sync_requested_at is None
