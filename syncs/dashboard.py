"""Reads for the overview and the property pages: what needs the operator's attention first.

Built for accounts with thousands of connections: a fixed number of queries whatever the
number of rows (a few narrow ones, the states decided by syncs.sync_state), and full objects
fetched only for the handful of rows the page shows.
"""

from __future__ import annotations

import calendar as calendar_module
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.utils import timezone
from django.utils.translation import gettext as _

from syncs.conflicts import (
    Conflict,
    MarkedConflict,
    conflicts_listed,
    properties_with_conflicts,
    property_conflicts,
)
from syncs.explain import describe_state
from syncs.models import Account, Block, BlockKind, Connection, ExportToken, Property
from syncs.portals import HERE_LOOK
from syncs.sync_labels import SyncLabel, label_syncs, labels_for
from syncs.sync_state import (
    NEEDS_ATTENTION,
    TILES,
    TONE,
    PropertyHealth,
    SyncState,
    SyncStatus,
    property_health,
    state_counts,
    states_with_attention,
    statuses_of,
)


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
    handled_conflicts: list[MarkedConflict] = field(default_factory=list)  # listed apart
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


def dashboard_summary(*, user, now: datetime | None = None, limit: int = 50) -> DashboardSummary:
    """The overview: every sync counted once by its state, and those that need attention, worst
    first. A constant number of queries, whatever the number of syncs (double bookings read
    twice only when the soonest ones were nearly all marked handled)."""
    now = now or timezone.now()
    account = Account.of_user(user)
    if account is None:
        return DashboardSummary(total=0, counts=state_counts([]), attention=[], attention_more=0, conflicts=[])
    counts, troubled = states_with_attention(Connection.objects.for_account(account), now=now, limit=limit)
    attention = _attention(troubled, now)
    listed = conflicts_listed(account=account, now=now)
    return DashboardSummary(
        total=sum(counts.values()),
        counts=counts,
        attention=attention,
        attention_more=max(sum(counts[state.value] for state in NEEDS_ATTENTION) - len(attention), 0),
        conflicts=[marked.conflict for marked in listed.unhandled],
        handled_conflicts=listed.handled,
        conflicts_more=listed.unhandled_more,
        handled_more=listed.handled_more,
    )


def _attention(statuses: list[SyncStatus], now: datetime) -> list[AttentionItem]:
    """The rows shown: their connections loaded in one query, and worded. Each row's state is
    the loaded connection's stored one, so that its words and its state come from one read even
    if the sync changed since it was counted."""
    loaded = Connection.objects.select_related("property", "portal").in_bulk([s.connection.id for s in statuses])
    labels = labels_for(loaded.values())
    items = []
    for counted in statuses:
        connection = loaded.get(counted.connection.id)
        if connection is None:  # deleted meanwhile
            continue
        status = SyncStatus(
            connection=connection, state=SyncState(connection.state), readers=counted.readers
        )
        items.append(AttentionItem(status=status, words=describe_state(status, now), label=labels.get(connection.pk)))
    return items


def properties_health(properties: list[Property], *, now: datetime | None = None) -> dict[int, PropertyHealth]:
    """The health of each of these properties (a page of the list): the states of their syncs,
    worst first, and whether a night is double booked. Four queries whatever their number."""
    now = now or timezone.now()
    ids = [p.pk for p in properties]
    by_property: dict[int, list[SyncStatus]] = defaultdict(list)
    connections = Connection.objects.filter(property_id__in=ids)
    for status in statuses_of(connections, tokens=ExportToken.objects.filter(property_id__in=ids), now=now):
        by_property[status.connection.property_id].append(status)
    doubles = properties_with_conflicts(property_ids=ids, now=now) if ids else set()
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
    by their labels. Weeks start on Monday. The nights of a possible double booking are those
    syncs.conflicts says clash, with the stays that take them. Five queries.
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
    # The nights each double booking's stays clash on (syncs.conflicts decides), by block.
    clashing: dict[date, set[int]] = defaultdict(set)
    for conflict in property_conflicts(property_ids=[property.pk], today=first):
        for stay in conflict.stays:
            day = max(stay.first_night, first)
            while day < stay.check_out and day <= last:
                if day in conflict.clash:
                    clashing[day].add(stay.pk)
                day += timedelta(days=1)
    blocks = (
        Block.objects.current()
        .filter(property=property, start_date__lte=last, end_date__gt=first)
        .order_by("start_date", "pk")
        .values_list("pk", "source_id", "start_date", "end_date", "kind")
    )
    by_day: dict[date, list[NightSource]] = defaultdict(list)
    for pk, source_id, start, end, kind in blocks:
        label = labels.get(source_id)
        day = max(start, first)
        while day < end and day <= last:
            by_day[day].append(NightSource(
                label=label.label if label else here, css=label.css if label else "here",
                short=label.short if label else HERE_LOOK.short, kind=str(kinds.get(kind, kind)), start=start, end=end,
                conflict=pk in clashing.get(day, ()),
            ))
            day += timedelta(days=1)
    weeks = []
    for week in calendar_module.Calendar(firstweekday=0).monthdatescalendar(first.year, first.month):
        row = []
        for day in week:
            in_month = day.month == first.month
            row.append(CalendarDay(day=day, in_month=in_month, sources=by_day.get(day, []) if in_month else [],
                                   conflict=in_month and day in clashing, today=day == today))
        weeks.append(row)
    return PropertyMonth(weeks=weeks, legend=list(legend.values()))
