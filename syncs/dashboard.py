"""Reads for the overview and the property pages: what needs the operator's attention first.

Built for accounts with thousands of connections: a fixed number of queries whatever the
number of rows (a few narrow ones, the states decided by syncs.sync_state), and full objects
fetched only for the handful of rows the page shows.
"""

from __future__ import annotations

import calendar as calendar_module
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from syncs.explain import describe_state
from syncs.models import Account, Block, BlockKind, Connection, ExportToken, Portal, Property
from syncs.moments import values_rows
from syncs.portals import HERE_LOOK
from syncs.sync_labels import SyncLabel, label_syncs, labels_for
from syncs.sync_state import (
    TILES,
    TONE,
    PropertyHealth,
    SyncState,
    SyncStatus,
    classify,
    property_health,
    state_counts,
    states_with_attention,
    statuses_of,
)


@dataclass
class Conflict:
    property: Property
    start: date
    end: date
    sources: list[str] = field(default_factory=list)  # each portal's name once, and "made here"
    # The clashing stays, imported or made here: (block id, source id or None, first night,
    # check-out day, kind). What names the double booking and tells when a stay changed
    # (syncs.conflicts).
    stays: list[tuple] = field(default_factory=list)


@dataclass(frozen=True)
class AttentionItem:
    """A sync that needs the operator, with its state's reason in words."""

    status: SyncStatus  # of the loaded connection (with its property and portal)
    words: str
    label: SyncLabel | None = None  # "Airbnb 2", with its portal's colour

    @property
    def connection(self) -> Connection:
        return self.status.connection

    @property
    def kind(self) -> str:
        return self.status.state.value

    @property
    def since(self) -> datetime | None:
        return self.status.since

    @property
    def code(self) -> str:
        """The error code, in small print for support: the pause's, or the last failure's."""
        connection = self.connection
        if self.status.state in (SyncState.PAUSED, SyncState.CHECKING):
            code, params = connection.pause_reason, connection.pause_params
        elif self.status.state == SyncState.FAILING:
            code, params = connection.last_error_code, connection.last_error_params
        else:
            return ""
        status = (params or {}).get("status")
        return f"{code} {status}" if status else code


@dataclass
class DashboardSummary:
    total: int
    counts: dict[str, int]  # syncs per state: they add up to ``total``
    attention: list[AttentionItem]
    attention_more: int
    conflicts: list[Conflict]  # the possible double bookings nobody marked handled
    handled_conflicts: list = field(default_factory=list)  # syncs.conflicts.MarkedConflict, listed apart
    conflicts_more: int = 0  # those not listed (later ones)
    handled_more: int = 0

    @property
    def conflicts_total(self) -> int:
        return len(self.conflicts) + self.conflicts_more

    @property
    def handled_total(self) -> int:
        return len(self.handled_conflicts) + self.handled_more

    @property
    def tiles(self) -> list[tuple[SyncState, int, str]]:
        """(state, number of syncs, tone when there are any): every state, in the tiles' order."""
        return [(state, self.counts[state.value], TONE[state] if self.counts[state.value] else "") for state in TILES]

    @property
    def nothing_needs_attention(self) -> bool:
        """True only when every sync that is switched on has worked and is fine, and no night is
        double booked: the one time the overview may say that all is well."""
        return self.total > 0 and not self.attention and not self.attention_more and not self.conflicts

    @property
    def all_working(self) -> bool:
        return self.nothing_needs_attention and self.counts[SyncState.WORKING.value] == self.total


# The overview and the digest list this many double bookings needing attention (and as many
# marked handled), the soonest, and count the rest (syncs.conflicts.conflicts_listed).
CONFLICTS_SHOWN = 20


def dashboard_summary(*, user, now: datetime | None = None, limit: int = 50) -> DashboardSummary:
    """The overview: every sync counted once by its state, and those that need attention, worst
    first. A constant number of queries, whatever the number of syncs (double bookings read
    twice only when the soonest ones were nearly all marked handled)."""
    now = now or timezone.now()
    account = Account.of_user(user)
    if account is None:
        return DashboardSummary(total=0, counts=state_counts([]), attention=[], attention_more=0, conflicts=[])
    counts, troubled = states_with_attention(Connection.objects.for_account(account), now=now)
    attention = _attention(troubled[:limit], now)
    from syncs.conflicts import conflicts_listed

    listed = conflicts_listed(account=account, today=timezone.localdate())
    return DashboardSummary(
        total=sum(counts.values()),
        counts=counts,
        attention=attention,
        attention_more=len(troubled) - len(attention),
        conflicts=[marked.conflict for marked in listed.unhandled],
        handled_conflicts=listed.handled,
        conflicts_more=listed.unhandled_more,
        handled_more=listed.handled_more,
    )


def _attention(statuses: list[SyncStatus], now: datetime) -> list[AttentionItem]:
    """The rows shown: their connections loaded in one query, and worded. Each row's state is
    decided again on the loaded connection by the same rules, so that its words and its state
    come from one read even if the sync changed since it was counted."""
    loaded = Connection.objects.select_related("property", "portal").in_bulk([s.connection.id for s in statuses])
    labels = labels_for(loaded.values())
    items = []
    for counted in statuses:
        connection = loaded.get(counted.connection.id)
        if connection is None:  # deleted meanwhile
            continue
        status = SyncStatus(
            connection=connection, state=classify(connection, readers=counted.readers, now=now), readers=counted.readers
        )
        items.append(AttentionItem(status=status, words=describe_state(status, now), label=labels.get(connection.pk)))
    return items


def booking_like() -> Q:
    """Blocks that may be a guest's stay: reservations, and Booking.com's closures (its feeds do
    not tell bookings from closures). Two of these on one night from different sources may be a
    double booking."""
    booking = Portal.objects.filter(slug="booking").values_list("pk", flat=True).first()
    return Q(kind=BlockKind.RESERVED) | Q(source__portal_id=booking)


def account_conflict_groups(*, account: Account, today: date) -> list[list]:
    """Nights that two sources both say are booked: the account's possible double bookings as
    _groups, soonest first (each is whole: all its stays). ``conflicts_of`` makes Conflicts of
    those to be shown.

    Two blocks made here never clash (the operator's own doing); one made here (a direct booking)
    clashes with an imported one as two portals' do, and is one of the double booking's stays.
    """
    groups = _groups(_clashing_rows(today, Q(property__account=account)))
    groups.sort(key=lambda group: (group[1], group[0]))
    return groups


def _clashing_rows(today: date, among: Q) -> list[tuple]:
    """The blocks that may be a stay and share a night with another source's, ``among`` some
    properties, by property and first night, as narrow rows (id, property, source, first night,
    check-out day, kind). Every such pair has an imported block (two made here never clash).

    One query reads the properties' current stays to come, in that order, and one pass compares
    each with those still running on its first night: two stays share a night exactly when the
    later one starts before the earlier one's check-out day (each lasts a night at least).
    """
    booked = Block.objects.current().filter(booking_like(), among, end_date__gt=today)
    stays = values_rows(
        booked.order_by("property_id", "start_date", "pk"), ("pk", "property_id", "source_id", "start_date", "end_date", "kind")
    )
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


def properties_with_conflicts(*, property_ids: list[int], today: date) -> set[int]:
    """Which of these properties have a possible double booking (the overview's rule) that nobody
    marked handled (syncs.conflicts): four queries."""
    from syncs.conflicts import conflicts_marked

    unhandled, _handled = conflicts_marked(property_conflicts(property_ids=property_ids, today=today))
    return {marked.conflict.property.pk for marked in unhandled}


# Every property's double bookings (the worker's scan) are searched this many properties at a
# time, so that its memory holds their stays, not every account's.
PROPERTIES_PER_SEARCH = 500


def property_conflicts(*, property_ids: list[int] | None, today: date) -> list[Conflict]:
    """Every possible double booking of these properties (of all properties for None), grouped
    as the overview groups them: three queries (for None, three for each PROPERTIES_PER_SEARCH)."""
    def among(ids: list[int]) -> list[Conflict]:
        return conflicts_of(_groups(_clashing_rows(today, Q(property_id__in=ids))))

    if property_ids is not None:
        return among(property_ids)
    every = list(Property.objects.order_by("pk").values_list("pk", flat=True))
    return [
        conflict for first in range(0, len(every), PROPERTIES_PER_SEARCH)
        for conflict in among(every[first:first + PROPERTIES_PER_SEARCH])
    ]


def _groups(rows: list[tuple]) -> list[list]:
    """Overlapping clashing blocks (_clashing_rows: each property's in the order of their first
    nights) of one property are one double booking: [property id, first night, check-out day,
    stays, sources (connection ids, None for made here, each once)], by property."""
    groups: list[list] = []
    open_by_property: dict[int, list] = {}
    for pk, property_id, source_id, start, end, kind in rows:
        stay = (pk, source_id, start, end, kind)
        current = open_by_property.get(property_id)
        if current and start < current[2]:
            current[2] = max(current[2], end)
            current[3].append(stay)
            if source_id not in current[4]:
                current[4].append(source_id)
            continue
        current = [property_id, start, end, [stay], [source_id]]
        open_by_property[property_id] = current
        groups.append(current)
    return groups


def conflicts_of(groups: list[list]) -> list[Conflict]:
    """These double bookings (_groups) as Conflicts naming every source (each portal once, and
    "made here"), their properties and their sources' portals read in two queries."""
    # What pages and emails show of a double booking's property (any other field loads on use).
    properties = Property.objects.only("pk", "account_id", "name", "timezone").in_bulk({group[0] for group in groups})
    sources = {source for group in groups for source in group[4] if source is not None}
    portal_names = dict(Connection.objects.filter(pk__in=sources).values_list("pk", "portal__name")) if sources else {}
    words = {None: _("made here")} | {pk: Portal.name_in_words(name) for pk, name in portal_names.items()}
    conflicts = []
    for property_id, start, end, stays, source_ids in groups:
        if property_id not in properties:  # deleted between the two reads
            continue
        names = [words[source] for source in source_ids if source in words]  # a sync deleted meanwhile is left out
        conflicts.append(
            Conflict(property=properties[property_id], start=start, end=end, sources=list(dict.fromkeys(names)), stays=stays)
        )
    return conflicts


def properties_health(properties: list[Property], *, now: datetime | None = None) -> dict[int, PropertyHealth]:
    """The health of each of these properties (a page of the list): the states of their syncs,
    worst first, and whether a night is double booked. Four queries whatever their number."""
    now = now or timezone.now()
    ids = [p.pk for p in properties]
    by_property: dict[int, list[SyncStatus]] = defaultdict(list)
    connections = Connection.objects.filter(property_id__in=ids)
    for status in statuses_of(connections, tokens=ExportToken.objects.filter(property_id__in=ids), now=now):
        by_property[status.connection.property_id].append(status)
    doubles = properties_with_conflicts(property_ids=ids, today=timezone.localdate()) if ids else set()
    return {pk: property_health(by_property[pk], double_booking=pk in doubles) for pk in ids}


@dataclass(frozen=True)
class NightSource:
    """One source taking a night of the calendar: a sync, or the blocks made here, with the stay
    (or block) that takes it."""

    label: str  # "Airbnb 2", or "Closed here"
    css: str  # "portal-airbnb", or "here": the classes of every element drawing its nights
    short: str  # the mark in a cell: "AB2", "★"
    kind: str  # in words: Reserved, Blocked, Tentative
    start: date  # first night of the stay
    end: date  # its check-out day
    conflict: bool = False  # a possible double booking on this night, this source one of its sides


@dataclass
class CalendarDay:
    day: date
    in_month: bool
    sources: list[NightSource] = field(default_factory=list)
    conflict: bool = False
    today: bool = False


@dataclass(frozen=True)
class LegendEntry:
    css: str
    name: str  # the portal's, or "Closed here"
    short: str
    syncs: list[str]  # the labels of the property's syncs of this portal, when it has several


@dataclass
class PropertyMonth:
    weeks: list[list[CalendarDay]]
    legend: list[LegendEntry]


def property_month(*, property: Property, month: date, today: date | None = None) -> PropertyMonth:
    """A month of the property's taken nights, by source, with possible double bookings marked.

    Colours and marks come from the portal (syncs.portals.LOOKS): one per portal, the same in
    every month and on every page, whatever the number of syncs; two syncs of one portal differ
    by their labels. Weeks start on Monday. Two queries.
    """
    first = month.replace(day=1)
    last = first.replace(day=calendar_module.monthrange(first.year, first.month)[1])
    connections = list(property.connections.select_related("portal").order_by("portal__position", "pk"))
    labels = label_syncs(connections)
    here = _("Closed here")
    legend: dict[str, LegendEntry] = {}
    for c in connections:
        label = labels[c.pk]
        entry = legend.setdefault(label.css, LegendEntry(label.css, c.portal.display_name, label.look.short, []))
        if label.number:
            entry.syncs.append(label.label)
    legend["here"] = LegendEntry("here", here, HERE_LOOK.short, [])
    kinds = dict(BlockKind.choices)
    blocks = (
        Block.objects.current()
        .filter(property=property, start_date__lte=last, end_date__gt=first)
        .order_by("start_date", "pk")
        .values_list("source_id", "start_date", "end_date", "kind", "source__portal__slug")
    )
    by_day: dict[date, list[tuple[NightSource, bool, int]]] = defaultdict(list)
    for source_id, start, end, kind, portal_slug in blocks:
        label = labels.get(source_id)
        night = NightSource(
            label=label.label if label else here, css=label.css if label else "here",
            short=label.short if label else HERE_LOOK.short, kind=str(kinds.get(kind, kind)), start=start, end=end,
        )
        booking = kind == BlockKind.RESERVED or portal_slug == "booking"
        day = max(start, first)
        while day < end and day <= last:
            by_day[day].append((night, booking, source_id or 0))
            day += timedelta(days=1)
    weeks = []
    for week in calendar_module.Calendar(firstweekday=0).monthdatescalendar(first.year, first.month):
        row = []
        for day in week:
            taken = by_day.get(day, []) if day.month == first.month else []
            # Two sources that may both be a stay on one night: a possible double booking (the
            # overview's rule; the blocks made here count as one source).
            conflict = len({source for _night, booking, source in taken if booking}) > 1
            sources = [replace(night, conflict=conflict and booking) for night, booking, _source in taken]
            row.append(CalendarDay(day=day, in_month=day.month == first.month, sources=sources, conflict=conflict,
                                   today=day == today))
        weeks.append(row)
    return PropertyMonth(weeks=weeks, legend=list(legend.values()))
