"""Possible double bookings marked as handled, and noticed when they change.

The double bookings themselves are found where the overview finds them
(``syncs.dashboard.account_conflict_groups``, ``property_conflicts``): this module only names each one
and remembers what operators said about it. A double booking is named by its clashing stays
(``key``: their block ids) and fingerprinted by what those stays say (dates, kinds, sources). A
"handled" mark holds while the fingerprint it was made on is the current one: pages compare the
two when they read, so the moment either stay moves, is shortened or is cancelled and booked
again, the double booking needs attention again, without waiting for any background job. The
periodic scan (``double_bookings_scan``) then records that in the activity log and tells the
webhooks.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from syncs.activity import activity_record, activity_record_automatic
from syncs.dashboard import Conflict, property_conflicts
from syncs.models import Account, Activity, DoubleBooking, Property

log = logging.getLogger(__name__)

NOTE_MAX = 2000


def conflict_key(conflict: Conflict) -> str:
    """Which stays clash: the same stays are the same double booking, whatever they say now."""
    return _stays_key(conflict.stays)


def conflict_fingerprint(conflict: Conflict) -> str:
    """What the clashing stays say: any change of dates, kind or source changes it."""
    return _stays_fingerprint(conflict.stays)


def _stays_key(stays: list[tuple]) -> str:
    ids = ",".join(str(stay[0]) for stay in sorted(stays))
    return hashlib.sha256(ids.encode()).hexdigest()


def _stays_fingerprint(stays: list[tuple]) -> str:
    text = ";".join(f"{pk}:{source}:{start.isoformat()}:{end.isoformat()}:{kind}" for pk, source, start, end, kind in sorted(stays))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class MarkedConflict:
    """A possible double booking with what operators said about it (``mark``: None if nothing)."""

    conflict: Conflict
    key: str
    fingerprint: str
    mark: DoubleBooking | None

    @property
    def handled(self) -> bool:
        return self.mark is not None and self.mark.handled_at is not None and self.mark.handled_fingerprint == self.fingerprint

    @property
    def came_back(self) -> bool:
        """Marked handled once, and a stay changed since."""
        return self.mark is not None and self.mark.handled_at is not None and not self.handled


def conflicts_marked(conflicts: Iterable[Conflict]) -> tuple[list[MarkedConflict], list[MarkedConflict]]:
    """(not handled, handled) of these double bookings, each list in the given order: one query."""
    conflicts = list(conflicts)
    keyed = [(conflict, conflict_key(conflict), conflict_fingerprint(conflict)) for conflict in conflicts]
    marks: dict[tuple[int, str], DoubleBooking] = {}
    if keyed:
        rows = DoubleBooking.objects.filter(
            property_id__in={c.property.pk for c in conflicts}, key__in={key for _c, key, _f in keyed}
        ).select_related("handled_by")
        marks = {(row.property_id, row.key): row for row in rows}
    unhandled, handled = [], []
    for conflict, key, fingerprint in keyed:
        marked = MarkedConflict(conflict=conflict, key=key, fingerprint=fingerprint, mark=marks.get((conflict.property.pk, key)))
        (handled if marked.handled else unhandled).append(marked)
    return unhandled, handled


@dataclass(frozen=True)
class ConflictsListed:
    """The double bookings a page or an email lists, soonest first, at most
    ``dashboard.CONFLICTS_SHOWN`` of each kind, and how many there are in all."""

    unhandled: list[MarkedConflict]  # nobody marked them handled
    handled: list[MarkedConflict]  # listed apart
    unhandled_total: int
    handled_total: int

    @property
    def unhandled_more(self) -> int:
        return max(self.unhandled_total - len(self.unhandled), 0)

    @property
    def handled_more(self) -> int:
        return max(self.handled_total - len(self.handled), 0)


def conflicts_listed(*, account: Account, today: date, property_ids: list[int] | None = None) -> ConflictsListed:
    """The account's (or these properties') double bookings to list: the soonest of those nobody
    marked handled, the soonest of those marked handled, and how many there are of each. Which
    are handled is decided for every one, so that a long run of handled ones never hides one
    that needs attention behind it."""
    from syncs import dashboard

    shown = dashboard.CONFLICTS_SHOWN
    if property_ids is not None:
        found = property_conflicts(property_ids=property_ids, today=today) if property_ids else []
        unhandled, handled = conflicts_marked(sorted(found, key=lambda c: (c.start, c.property.pk)))
        return ConflictsListed(unhandled[:shown], handled[:shown], len(unhandled), len(handled))
    groups = dashboard.account_conflict_groups(account=account, today=today)
    marks = {
        (property_id, key): fingerprint
        for property_id, key, fingerprint in DoubleBooking.objects.filter(
            property__account=account, handled_at__isnull=False
        ).values_list("property_id", "key", "handled_fingerprint")
    }
    marked_properties = {property_id for property_id, _key in marks}
    # By the rule of MarkedConflict.handled, worked out only where a property has a mark.
    handled_groups = {
        index for index, (property_id, _start, _end, stays, _sources) in enumerate(groups)
        if property_id in marked_properties and marks.get((property_id, _stays_key(stays))) == _stays_fingerprint(stays)
    }
    listed = [group for index, group in enumerate(groups) if index not in handled_groups][:shown]
    listed += [groups[index] for index in sorted(handled_groups)[:shown]]
    listed.sort(key=lambda group: (group[1], group[0]))
    # Read with their marks again: each one shown is put in its list by one read of its mark.
    unhandled, handled = conflicts_marked(dashboard.conflicts_of(listed))
    return ConflictsListed(unhandled[:shown], handled[:shown], len(groups) - len(handled_groups), len(handled_groups))


def double_booking_mark_handled(*, user, property: Property, key: str, fingerprint: str, note: str) -> DoubleBooking:
    """The operator checked the double booking on the portals and marks it handled, with a note.

    Only the double booking as the operator saw it: if a stay changed since the page was shown,
    nothing is marked (ValidationError) and the page shows it as it is now.
    """
    today = timezone.localdate()
    current = {conflict_key(c): c for c in property_conflicts(property_ids=[property.pk], today=today)}
    conflict = current.get(key)
    if conflict is None:
        raise ValidationError(_("This double booking is gone: one of the stays changed or was cancelled."))
    if conflict_fingerprint(conflict) != fingerprint:
        raise ValidationError(_("One of the stays changed since you opened the page: look at it again."))
    now = timezone.now()
    with transaction.atomic():
        row, _created = DoubleBooking.objects.update_or_create(
            property=property, key=key,
            defaults=_seen(conflict, fingerprint) | {
                "handled_fingerprint": fingerprint, "handled_at": now, "handled_by": user if user.is_authenticated else None,
                "note": note.strip()[:NOTE_MAX],
            },
        )
        activity_record(
            user=user, action=Activity.Action.DOUBLE_BOOKING_HANDLED, property=property,
            params={"start": conflict.start.isoformat(), "end": conflict.end.isoformat(), "sources": conflict.sources},
        )
    return row


def _seen(conflict: Conflict, fingerprint: str) -> dict:
    return {
        "fingerprint": fingerprint, "start_date": conflict.start, "end_date": conflict.end,
        "sources": [str(name) for name in conflict.sources],
    }


@dataclass(frozen=True)
class ScanResult:
    new: list[MarkedConflict]  # double bookings to tell the webhooks about (new, or back)
    came_back: int


def double_bookings_scan(*, today: date | None = None, now: datetime | None = None) -> ScanResult:
    """Run by the worker: remember every current double booking; drop the marks of those whose
    stays changed (recorded in the activity log, with no user); return those the webhooks were
    not told about yet, as they are now (``alerted_fingerprint`` is set by the caller's claim)."""
    today = today or timezone.localdate()
    now = now or timezone.now()
    unhandled, _handled = conflicts_marked(property_conflicts(property_ids=None, today=today))
    new, came_back = [], 0
    for marked in unhandled:
        conflict = marked.conflict
        if marked.mark is None:
            row, _created = DoubleBooking.objects.get_or_create(
                property=conflict.property, key=marked.key, defaults=_seen(conflict, marked.fingerprint)
            )
        else:
            row = marked.mark
            DoubleBooking.objects.filter(pk=row.pk).update(**_seen(conflict, marked.fingerprint))
        if marked.came_back:
            # The mark is dropped once, by one scan: the claim is the conditional UPDATE.
            dropped = DoubleBooking.objects.filter(pk=row.pk, handled_at__isnull=False).exclude(
                handled_fingerprint=marked.fingerprint
            ).update(handled_at=None, handled_fingerprint="")
            if dropped:
                came_back += 1
                activity_record_automatic(
                    action=Activity.Action.DOUBLE_BOOKING_BACK, connection_id=None, property_id=conflict.property.pk,
                    params={"start": conflict.start.isoformat(), "end": conflict.end.isoformat(),
                            "sources": [str(s) for s in conflict.sources]},
                    when=now,
                )
        if row.alerted_fingerprint != marked.fingerprint:
            new.append(MarkedConflict(conflict=conflict, key=marked.key, fingerprint=marked.fingerprint, mark=row))
    if came_back:
        log.info("double bookings back after a stay changed count=%d", came_back)
    return ScanResult(new=new, came_back=came_back)
