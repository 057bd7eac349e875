"""Undo: put back, once, what an operator's action took out of service.

Offered where it truly restores: switching syncs off (one, or many at once) changes nothing but
the switch, so switching them back on as they were (paused by errors, being checked, with the
turn they had) is the same as never having switched them off. Actions whose effect leaves the
product (nights opened again are read by the portals; a webhook's secret cannot be shown again)
ask first instead (syncs.views).

Each offer keeps, per sync, the settings version the action left on it (syncs.sync_settings
moves it on with every change of what a sync reads, the switch included): a sync whose version
moved on since was changed again by someone, and the undo leaves it as it is and says so. An
offer is undone once, within ``WINDOW``, by a manager or owner of its account, and recorded in
the activity log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from syncs.activity import activity_record
from syncs.models import Account, Activity, Connection, Undo
from syncs.sync_settings import connection_settings_update

# How long an offer can be taken up: far more than the message shows it, so that a click at its
# last moment (or a slow network, or someone reading it with a screen reader) still works.
WINDOW = timedelta(minutes=10)


def undo_offer_switch_off(*, user, account: Account, connections: list[Connection]) -> Undo | None:
    """Keep what switching ``connections`` off changed (call it in the switch-off's transaction,
    with the connections as the switch left them). None when nothing was switched off."""
    if not connections:
        return None
    return Undo.objects.create(
        account=account, user=user if user and user.is_authenticated else None, kind=Undo.Kind.SWITCH_OFF,
        versions={str(connection.pk): connection.settings_version for connection in connections},
    )


@dataclass(frozen=True)
class UndoResult:
    done: bool  # False: undone already, or too late
    restored: list[Connection] = field(default_factory=list)
    left: list[Connection] = field(default_factory=list)  # changed by someone since: left as they are
    too_late: bool = False


def undo_apply(*, undo: Undo, user, now: datetime | None = None) -> UndoResult:
    """Put back every sync the offer's action changed and nobody changed since; once."""
    now = now or timezone.now()
    with transaction.atomic():
        if not Undo.objects.filter(pk=undo.pk, undone_at__isnull=True, created_at__gte=now - WINDOW).update(
            undone_at=now, undone_by=user
        ):
            return UndoResult(done=False, too_late=undo.undone_at is None and undo.created_at < now - WINDOW)
        restored_ids = [
            connection_id for connection_id, version in sorted(undo.versions.items(), key=lambda item: int(item[0]))
            if _switch_back_on(connection_id=int(connection_id), version=version, now=now)
        ]
        # Removed ones too (all_objects): removing moved their version on, so they are left as
        # they are and named, never put back on nor forgotten.
        connections = list(
            Connection.all_objects.filter(pk__in=[int(pk) for pk in undo.versions], property__account=undo.account)
            .select_related("property", "portal").order_by("property__name", "portal__position", "pk")
        )
        restored = [c for c in connections if str(c.pk) in restored_ids]
        left = [c for c in connections if str(c.pk) not in restored_ids]
        single = connections[0] if len(undo.versions) == 1 and connections else None
        activity_record(
            user=user, action=Activity.Action.SWITCH_OFF_UNDONE, connection=single,
            params={"count": len(restored), "left": len(left)},
        )
    return UndoResult(done=True, restored=restored, left=left)


def _switch_back_on(*, connection_id: int, version: int, now: datetime) -> bool:
    """The switch back on, exactly as it was before: its turn kept (switching off did not move
    it), its pause and check as they are. Only if nobody changed the sync since."""
    return bool(
        connection_settings_update(
            connection_id=connection_id, values={"enabled": True, "next_sync_at": F("next_sync_at")}, now=now,
            expected_version=version,
        )
    )
