"""Possible double bookings: found, their clashing nights decided, named, and marked handled.

A possible double booking is two sources (two portals, or a portal and a direct booking made
here) both taking a night with something that may be a guest's stay. This module is the one
place that finds them (``property_conflicts``, ``account_conflict_groups``) and the one place
that decides which nights clash (``clash_of``): the overview, the property's calendar, the
timeline, the checklist, the digest, the activity log and the webhooks all read them from here.
What it finds is stored (``double_bookings_record``: a current DoubleBooking row each) in the
transaction that changes a property's blocks, and for every property by the worker's minute
scan (``double_bookings_scan``); the overview and the properties list read the stored rows.

A double booking is named by its clashing stays (``key``: their block ids) and fingerprinted by
what those stays say (dates, kinds, sources). A "handled" mark holds while the fingerprint it
was made on is the current one: pages compare the two when they read, so the moment either stay
moves, is shortened or is cancelled and booked again, the double booking needs attention again,
without waiting for any background job; storing it records that in the activity log, and the
scan tells the webhooks.
"""

from __future__ import annotations

import hashlib
import logging
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import NamedTuple

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from syncs.activity import activity_record, activity_record_automatic
from syncs.models import (
    Account,
    Activity,
    Block,
    BlockKind,
    Connection,
    DoubleBooking,
    Portal,
    Property,
)
from syncs.moments import values_rows

log = logging.getLogger(__name__)

NOTE_MAX = 2000

# The overview and the digest list this many double bookings needing attention (and as many
# marked handled), the soonest, and count the rest (conflicts_listed).
CONFLICTS_SHOWN = 20

# Every property's double bookings (the worker's scan) are searched this many properties at a
# time, so that its memory holds their stays, not every account's.
PROPERTIES_PER_SEARCH = 500


# --------------------------------------------------------------------------- the clashing nights


class Stay(NamedTuple):
    """One stay of a double booking, imported or made here, with its own dates."""

    pk: int  # the block's
    source: int | None  # the connection it came from; None: made here
    first_night: date
    check_out: date  # the day after its last night
    kind: str


@dataclass(frozen=True)
class Clash:
    """The nights of a double booking that two sources both take: what the operator checks.

    ``runs`` are the stretches of consecutive clashing nights, each (first night, the day after
    its last night), in order. Usually one; several when a long stay of one source clashes with
    two stays of others that are apart.
    """

    runs: tuple[tuple[date, date], ...]

    @property
    def first_night(self) -> date:
        return self.runs[0][0]

    @property
    def last_night(self) -> date:
        return self.runs[-1][1] - timedelta(days=1)

    @property
    def nights(self) -> int:
        """How many nights clash (fewer than first to last when the runs are apart)."""
        return sum((end - start).days for start, end in self.runs)

    def __contains__(self, night: date) -> bool:
        return any(start <= night < end for start, end in self.runs)

    def as_dict(self) -> dict:
        """As the webhooks and the activity log store it (ISO dates)."""
        return {"first_night": self.first_night.isoformat(), "last_night": self.last_night.isoformat(), "nights": self.nights}


def clash_of(stays: Iterable[Stay]) -> Clash:
    """THE rule of which nights clash: a night clashes when stays of two different sources take
    it (every stay made here is one source: the operator's own doings never clash with each
    other). A stay takes the nights from its first night up to, not including, its check-out day.

    Between two consecutive dates where a stay starts or ends, the same stays take every night:
    each such stretch clashes or not as a whole.
    """
    stays = list(stays)
    edges = sorted({stay.first_night for stay in stays} | {stay.check_out for stay in stays})
    runs: list[list[date]] = []
    for start, end in pairwise(edges):
        sources = {stay.source for stay in stays if stay.first_night <= start and end <= stay.check_out}
        if len(sources) < 2:
            continue
        if runs and runs[-1][1] == start:
            runs[-1][1] = end
        else:
            runs.append([start, end])
    if not runs:
        raise ValueError("these stays do not clash")
    return Clash(runs=tuple((start, end) for start, end in runs))


@dataclass
class Conflict:
    """A possible double booking: its property, its clashing stays, the sources that took them
    (each portal's name once, and "made here"), and the nights that clash."""

    property: Property
    stays: list[Stay]
    sources: list[str] = field(default_factory=list)
    # Each source's name by connection id (None: made here), as read with the double booking.
    names: dict[int | None, str] = field(default_factory=dict, compare=False)
    clash: Clash = field(init=False)

    def __post_init__(self) -> None:
        self.clash = clash_of(self.stays)

    def source_of(self, stay: Stay) -> str:
        return self.names.get(stay.source, "")

    @property
    def stays_first_night(self) -> date:
        return min(stay.first_night for stay in self.stays)

    @property
    def stays_check_out(self) -> date:
        return max(stay.check_out for stay in self.stays)


# --------------------------------------------------------------------------- finding them


def may_be_a_stay(kind: str, portal_slug: str | None) -> bool:
    """Whether a block may be a guest's stay: reservations, and Booking.com's closures (its feeds
    do not tell bookings from closures). Two of these on one night from different sources may be
    a double booking. ``portal_slug``: its sync's portal (None: made here)."""
    return kind == BlockKind.RESERVED or portal_slug == "booking"


def _earliest_today(now: datetime) -> date:
    """The earliest date it is anywhere now (UTC-12): no property's today is before it."""
    return (now.astimezone(UTC) - timedelta(hours=12)).date()


def _clashing_rows(among: Q, *, today: date | None, now: datetime) -> list[tuple]:
    """The blocks that may be a stay and share a night with another source's, ``among`` some
    properties, by property and first night, as narrow rows (id, property, source, first night,
    check-out day, kind). Every such pair has an imported block (two made here never clash).

    Only stays not over yet count: their check-out day after ``today``, or, when None, after
    today in the property's own time zone (the nights of a property at the other end of the
    world are counted in its own days).

    One query reads the properties' blocks to come, in that order, and one their syncs (those
    not removed, with their portals: a removed sync's blocks take no night) and, for their own
    days, one their zones; read apart, as joins they made the planner read every sync of the
    database for a page's properties. One pass then compares each stay with those still running
    on its first night: two stays share a night exactly when the later one starts before the
    earlier one's check-out day (each lasts a night at least).
    """
    booked = Block.objects.filter(among, removed_at__isnull=True, end_date__gt=today or _earliest_today(now))
    rows = values_rows(
        booked.order_by("property_id", "start_date", "pk"), ("pk", "property_id", "source_id", "start_date", "end_date", "kind")
    )
    sources = {row[2] for row in rows if row[2] is not None}
    portal_of: dict[int | None, str | None] = {None: None}
    if sources:
        live = Portal.objects.filter(connections__pk__in=sources, connections__archived_at__isnull=True)
        portal_of |= dict(live.values_list("connections__pk", "slug"))
    rows = [row for row in rows if row[2] in portal_of and may_be_a_stay(row[5], portal_of[row[2]])]
    if today is None:
        zones = dict(Property.all_objects.filter(pk__in={row[1] for row in rows}).values_list("pk", "timezone")) if rows else {}
        todays = {zone: timezone.localdate(now, timezone=zoneinfo.ZoneInfo(zone)) for zone in set(zones.values())}
        rows = [row for row in rows if row[4] > todays[zones[row[1]]]]
    stays = rows
    clashing: set[int] = set()
    running: list[tuple] = []  # the property's stays not yet over on the current first night
    current_property = None
    for stay in stays:
        pk, property_id, source, start = stay[0], stay[1], stay[2], stay[3]
        if property_id != current_property:
            running, current_property = [], property_id
        elif running:
            running = [other for other in running if other[4] > start]
            for other in running:
                if other[2] != source:  # one source's own stays (or two made here) never clash
                    clashing.add(other[0])
                    clashing.add(pk)
        running.append(stay)
    return [stay for stay in stays if stay[0] in clashing]


@dataclass
class _Group:
    """One double booking as found, before its property and sources' names are read."""

    property_id: int
    check_out: date  # the latest check-out of its stays so far: a stay starting before it joins
    stays: list[Stay]
    sources: list[int | None]  # connection ids, None for made here, each once
    clash: Clash | None = None


def _groups(rows: list[tuple]) -> list[_Group]:
    """Overlapping clashing blocks (_clashing_rows: each property's in the order of their first
    nights) of one property are one double booking, by property; each with its clash."""
    groups: list[_Group] = []
    open_by_property: dict[int, _Group] = {}
    for pk, property_id, source_id, start, end, kind in rows:
        stay = Stay(pk, source_id, start, end, kind)
        current = open_by_property.get(property_id)
        if current and start < current.check_out:
            current.check_out = max(current.check_out, end)
            current.stays.append(stay)
            if source_id not in current.sources:
                current.sources.append(source_id)
            continue
        current = _Group(property_id=property_id, check_out=end, stays=[stay], sources=[source_id])
        open_by_property[property_id] = current
        groups.append(current)
    for group in groups:
        group.clash = clash_of(group.stays)
    return groups


def _soonest_first(group: _Group) -> tuple:
    return (group.clash.first_night, group.property_id)


def account_conflict_groups(*, account: Account, today: date | None = None, now: datetime | None = None) -> list[_Group]:
    """The account's possible double bookings as _groups, the soonest clashing night first (each
    is whole: all its stays). ``conflicts_of`` makes Conflicts of those to be shown.

    Two blocks made here never clash (the operator's own doing); one made here (a direct booking)
    clashes with an imported one as two portals' do, and is one of the double booking's stays.
    """
    groups = _groups(_clashing_rows(Q(property__account=account), today=today, now=now or timezone.now()))
    groups.sort(key=_soonest_first)
    return groups


def conflicts_of(groups: list[_Group]) -> list[Conflict]:
    """These double bookings (_groups) as Conflicts naming every source (each portal once, and
    "made here"), their properties and their sources' portals read in two queries."""
    # What pages and emails show of a double booking's property (any other field loads on use).
    properties = Property.objects.only("pk", "account_id", "name", "timezone").in_bulk({group.property_id for group in groups})
    sources = {source for group in groups for source in group.sources if source is not None}
    portal_names = dict(Connection.objects.filter(pk__in=sources).values_list("pk", "portal__name")) if sources else {}
    words = {None: _("made here")} | {pk: Portal.name_in_words(name) for pk, name in portal_names.items()}
    conflicts = []
    for group in groups:
        if group.property_id not in properties:  # deleted between the two reads
            continue
        names = [words[source] for source in group.sources if source in words]  # a sync deleted meanwhile is left out
        conflicts.append(Conflict(
            property=properties[group.property_id], stays=group.stays, sources=list(dict.fromkeys(names)),
            names={source: words[source] for source in group.sources if source in words},
        ))
    return conflicts


def property_conflicts(*, property_ids: list[int] | None, today: date | None = None, now: datetime | None = None) -> list[Conflict]:
    """Every possible double booking of these properties (of all properties for None), grouped
    as the overview groups them, by property and first clashing night: three queries (for None,
    three for each PROPERTIES_PER_SEARCH). Stays over before ``today`` (None: each property's
    own today) are left out."""
    now = now or timezone.now()

    def among(ids: list[int]) -> list[Conflict]:
        groups = _groups(_clashing_rows(Q(property_id__in=ids), today=today, now=now))
        return conflicts_of(sorted(groups, key=lambda group: (group.property_id, group.clash.first_night)))

    if property_ids is not None:
        return among(property_ids) if property_ids else []
    every = list(Property.objects.order_by("pk").values_list("pk", flat=True))
    return [
        conflict for first in range(0, len(every), PROPERTIES_PER_SEARCH)
        for conflict in among(every[first:first + PROPERTIES_PER_SEARCH])
    ]


def properties_with_conflicts(
    *, property_ids: list[int] | None = None, account: Account | None = None, now: datetime | None = None
) -> set[int]:
    """Which of these properties (or of the account's) have a possible double booking that
    nobody marked handled, as stored (double_bookings_record): one query."""
    among = Q(property_id__in=property_ids) if property_ids is not None else Q(property__account=account)
    return {row.property_id for row in _stored(among, now=now or timezone.now()) if not row.handled}


class _Stored(NamedTuple):
    """A current double booking as stored, narrow."""

    property_id: int
    key: str
    first_night: date
    handled: bool  # marked handled on the stays it has now


def _stored(among: Q, *, now: datetime) -> list[_Stored]:
    """The current double bookings ``among`` some properties, as stored, whose last clashing
    night is not over in their property's own day, soonest first. A double booking of stays
    over before a property's today clashes on none of its nights to come, and days passing only
    take stays away: the stored ones are never fewer than those the blocks have now."""
    rows = values_rows(
        DoubleBooking.objects.filter(among, current=True, end_date__gte=_earliest_today(now)).order_by("start_date", "property_id"),
        ("property_id", "key", "start_date", "end_date", "handled_at", "handled_fingerprint", "fingerprint", "property__timezone"),
    )
    todays = {zone: timezone.localdate(now, timezone=zoneinfo.ZoneInfo(zone)) for zone in {row[7] for row in rows}}
    return [
        _Stored(property_id, key, start, handled_at is not None and handled_fingerprint == fingerprint)
        for property_id, key, start, end, handled_at, handled_fingerprint, fingerprint, zone in rows
        if end >= todays[zone]
    ]


# --------------------------------------------------------------------------- naming and marking them


def conflict_key(conflict: Conflict) -> str:
    """Which stays clash: the same stays are the same double booking, whatever they say now."""
    return _stays_key(conflict.stays)


def conflict_fingerprint(conflict: Conflict) -> str:
    """What the clashing stays say: any change of dates, kind or source changes it."""
    return _stays_fingerprint(conflict.stays)


def _stays_key(stays: list[Stay]) -> str:
    ids = ",".join(str(stay.pk) for stay in sorted(stays))
    return hashlib.sha256(ids.encode()).hexdigest()


def _stays_fingerprint(stays: list[Stay]) -> str:
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


# Where a page of double bookings ends, in their listed order: those nobody marked handled
# first, then the handled ones; each kind soonest first (first clashing night, property, key).
DoubleBookingPlace = tuple[bool, date, int, str]


def double_bookings_page(
    *, account: Account, after: DoubleBookingPlace | None, size: int, now: datetime | None = None
) -> tuple[list[MarkedConflict], DoubleBookingPlace | None]:
    """One page of the account's double bookings, in their listed order from just after
    ``after`` (None: from the start), and where the next page starts (None: this is the last).
    The stored rows say which and in what order (one query); only the page's properties have
    their stays read."""
    now = now or timezone.now()
    places = sorted((row.handled, row.first_night, row.property_id, row.key) for row in _stored(Q(property__account=account), now=now))
    if after is not None:
        places = [place for place in places if place > after]
    page, more = places[:size], len(places) > size
    found = property_conflicts(property_ids=list({place[2] for place in page}), now=now)
    unhandled, handled = conflicts_marked(found)
    marked = {(m.conflict.property.pk, m.key): m for m in unhandled + handled}
    # A stored double booking whose stays are over by now is not listed (days only take stays away).
    listed = [marked[place[2], place[3]] for place in page if (place[2], place[3]) in marked]
    return listed, (page[-1] if more else None)


@dataclass(frozen=True)
class ConflictsListed:
    """The double bookings a page or an email lists, soonest first, at most CONFLICTS_SHOWN of
    each kind, and how many there are in all."""

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


def conflicts_listed(*, account: Account, now: datetime | None = None, property_ids: list[int] | None = None) -> ConflictsListed:
    """The account's (or these properties') double bookings to list: the soonest of those nobody
    marked handled, the soonest of those marked handled, and how many there are of each. Which
    are handled is decided for every one, so that a long run of handled ones never hides one
    that needs attention behind it."""
    shown = CONFLICTS_SHOWN
    if property_ids is not None:
        found = property_conflicts(property_ids=property_ids, now=now)
        unhandled, handled = conflicts_marked(sorted(found, key=lambda c: (c.clash.first_night, c.property.pk)))
        return ConflictsListed(unhandled[:shown], handled[:shown], len(unhandled), len(handled))
    now = now or timezone.now()
    stored = _stored(Q(property__account=account), now=now)
    unhandled_total = sum(1 for row in stored if not row.handled)
    # The properties of the soonest of each kind, whose double bookings are read from their
    # blocks: each one shown is put in its list by one read of its stays and its mark.
    properties = list(dict.fromkeys(
        [row.property_id for row in stored if not row.handled][:shown] + [row.property_id for row in stored if row.handled][:shown]
    ))
    found = property_conflicts(property_ids=properties, now=now)
    unhandled, handled = conflicts_marked(sorted(found, key=lambda c: (c.clash.first_night, c.property.pk)))
    return ConflictsListed(unhandled[:shown], handled[:shown], max(unhandled_total, len(unhandled)),
                           max(len(stored) - unhandled_total, len(handled)))


def double_booking_mark_handled(*, user, property: Property, key: str, fingerprint: str, note: str) -> DoubleBooking:
    """The operator checked the double booking on the portals and marks it handled, with a note.

    Only the double booking as the operator saw it: if a stay changed since the page was shown,
    nothing is marked (ValidationError) and the page shows it as it is now.
    """
    current = {conflict_key(c): c for c in property_conflicts(property_ids=[property.pk])}
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
        activity_record(user=user, action=Activity.Action.DOUBLE_BOOKING_HANDLED, property=property, params=_told(conflict))
    return row


def _told(conflict: Conflict) -> dict:
    """What the activity log keeps of a double booking: its clashing nights and sources."""
    return conflict.clash.as_dict() | {"sources": [str(name) for name in conflict.sources]}


def _seen(conflict: Conflict, fingerprint: str) -> dict:
    return {
        "fingerprint": fingerprint, "start_date": conflict.clash.first_night, "end_date": conflict.clash.last_night,
        "sources": [str(name) for name in conflict.sources],
    }


@dataclass(frozen=True)
class ScanResult:
    new: list[MarkedConflict]  # double bookings to tell the webhooks about (new, or back)
    came_back: int


def double_bookings_record(*, property_ids: list[int] | None, now: datetime | None = None) -> ScanResult:
    """Store what these properties' (None: every property's) blocks say now: a current row for
    each double booking (``current``), every other row of theirs no longer current; drop the
    marks of those whose stays changed (recorded in the activity log, with no user). Returns
    those the webhooks were not told about yet (``alerted_fingerprint`` is set by the caller's
    claim).

    Run in the transaction that changed a property's blocks, after the change, and every
    minute by the worker for every property, as days pass. Each holds the properties' rows while
    it reads and stores (as that transaction does from its change on), so two of them store in
    turn, the later one having read the other's blocks. Pages read the current rows (``conflicts_listed``, ``properties_with_conflicts``)."""
    now = now or timezone.now()
    if property_ids is not None:
        return _record_among(property_ids, now)
    every = list(Property.objects.order_by("pk").values_list("pk", flat=True))
    new, came_back = [], 0
    for first in range(0, len(every), PROPERTIES_PER_SEARCH):
        result = _record_among(every[first:first + PROPERTIES_PER_SEARCH], now)
        new += result.new
        came_back += result.came_back
    if came_back:
        log.info("double bookings back after a stay changed count=%d", came_back)
    return ScanResult(new=new, came_back=came_back)


@transaction.atomic
def _record_among(property_ids: list[int], now: datetime) -> ScanResult:
    if not property_ids:
        return ScanResult(new=[], came_back=0)
    # The properties' rows, as a change of their blocks holds them (syncs.blocks): a change
    # committed while these were read would otherwise be stored, then undone here.
    list(Property.all_objects.filter(pk__in=property_ids).order_by("pk").select_for_update().values_list("pk", flat=True))
    unhandled, handled = conflicts_marked(property_conflicts(property_ids=property_ids, now=now))
    new, came_back, kept = [], 0, []
    for marked in handled:
        conflict = marked.conflict
        seen = _seen(conflict, marked.fingerprint)
        if not marked.mark.current or any(getattr(marked.mark, name) != value for name, value in seen.items()):
            DoubleBooking.objects.filter(pk=marked.mark.pk).update(**seen, current=True)
        kept.append(marked.mark.pk)
    for marked in unhandled:
        conflict = marked.conflict
        if marked.mark is None:
            row, _created = DoubleBooking.objects.get_or_create(
                property=conflict.property, key=marked.key, defaults=_seen(conflict, marked.fingerprint)
            )
            if not _created:
                DoubleBooking.objects.filter(pk=row.pk).update(**_seen(conflict, marked.fingerprint), current=True)
        else:
            row = marked.mark
            seen = _seen(conflict, marked.fingerprint)
            if not row.current or any(getattr(row, name) != value for name, value in seen.items()):
                DoubleBooking.objects.filter(pk=row.pk).update(**seen, current=True)
        kept.append(row.pk)
        if marked.came_back:
            # The mark is dropped once, by one scan: the claim is the conditional UPDATE.
            dropped = DoubleBooking.objects.filter(pk=row.pk, handled_at__isnull=False).exclude(
                handled_fingerprint=marked.fingerprint
            ).update(handled_at=None, handled_fingerprint="")
            if dropped:
                came_back += 1
                activity_record_automatic(
                    action=Activity.Action.DOUBLE_BOOKING_BACK, connection_id=None, property_id=conflict.property.pk,
                    params=_told(conflict), when=now,
                )
        if row.alerted_fingerprint != marked.fingerprint:
            new.append(MarkedConflict(conflict=conflict, key=marked.key, fingerprint=marked.fingerprint, mark=row))
    DoubleBooking.objects.filter(property_id__in=property_ids, current=True).exclude(pk__in=kept).update(current=False)
    return ScanResult(new=new, came_back=came_back)


def double_bookings_scan(*, now: datetime | None = None) -> ScanResult:
    """Run by the worker every minute: ``double_bookings_record`` for every property."""
    return double_bookings_record(property_ids=None, now=now)
