"""Reads for the timeline of all properties, and the filter that bulk actions share with it.

One row per property, one column per night. Every state shown, counted or filtered on is
``syncs.sync_state``'s, every double booking and its clashing nights ``syncs.conflicts``'s (with
their marks). A page costs a constant number of queries whatever the number of
properties, syncs and blocks: the filter compares each sync's stored state; the properties are
ordered by name (the reader's language's stored order key) and paged in the database; their
syncs, blocks and double bookings are read for the page only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.core.paginator import Page, Paginator
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from syncs.collation import name_matches, order_field
from syncs.conflicts import conflicts_marked, property_conflicts
from syncs.explain import describe_state
from syncs.models import Account, Block, Connection, Portal, Property
from syncs.sync_labels import SyncLabel, label_syncs
from syncs.sync_state import (
    NEEDS_ATTENTION,
    SyncState,
    SyncStatus,
    connection_statuses,
    worst_first,
)

# The state filter's extra choice: any state that needs the operator.
ATTENTION = "attention"
NIGHT_CHOICES = (30, 60, 90)
DEFAULT_NIGHTS = 60
PROPERTIES_PER_PAGE = 25


@dataclass(frozen=True)
class Filter:
    """What the operator filtered on: the timeline's, the properties list's and the bulk action's."""

    q: str = ""
    portal: str = ""  # a portal slug
    state: str = ""  # a SyncState value, or ATTENTION

    @classmethod
    def from_query(cls, data) -> Filter:
        state = data.get("state", "")
        if state not in SyncState.values and state != ATTENTION:
            state = ""
        return cls(q=data.get("q", "").strip()[:200], portal=data.get("portal", "").strip()[:50], state=state)

    @property
    def active(self) -> bool:
        return bool(self.q or self.portal or self.state)

    def as_query(self) -> dict[str, str]:
        return {key: value for key, value in (("q", self.q), ("portal", self.portal), ("state", self.state)) if value}

    def in_words(self) -> list[str]:
        """The filter in force, in the reader's words: the search, the state, the portal."""
        words = [f"“{self.q}”"] if self.q else []
        if self.state:
            words.append(_("Needs attention") if self.state == ATTENTION else str(SyncState(self.state).label))
        portal = Portal.objects.filter(slug=self.portal).first() if self.portal else None
        if portal is not None:
            words.append(portal.display_name)
        return words

    def state_matches(self, state: SyncState) -> bool:
        if self.state == ATTENTION:
            return state in NEEDS_ATTENTION
        return state.value == self.state


def _chosen_states(chosen: Filter) -> list[str]:
    """The stored states the state filter keeps."""
    states = NEEDS_ATTENTION if chosen.state == ATTENTION else {SyncState(chosen.state)}
    return [state.value for state in states]


def properties_matching(*, account: Account, chosen: Filter) -> QuerySet[Property]:
    """The account's properties the filter keeps: by name (ignoring case and accents), having a
    sync of the portal, having a sync in the state (that sync being of the portal, when both are
    chosen). In no particular order: the reader's language orders names (syncs.collation.order_field)."""
    properties = Property.objects.for_account(account)
    if chosen.q:
        properties = properties.filter(name_matches(chosen.q))
    syncs = Connection.objects.filter(property_id=OuterRef("pk"))
    if chosen.portal:
        syncs = syncs.filter(portal__slug=chosen.portal)
    if chosen.state:
        syncs = syncs.filter(state__in=_chosen_states(chosen))
    if chosen.portal or chosen.state:
        properties = properties.filter(Exists(syncs))
    return properties.order_by()


def connections_matching(*, account: Account, chosen: Filter) -> QuerySet[Connection]:
    """The syncs "all matching this filter" means: of the matching properties, those of the
    portal and in the state chosen (all of their syncs when neither is)."""
    connections = Connection.objects.for_account(account)
    if chosen.q:
        connections = connections.filter(name_matches(chosen.q, path="property__"))
    if chosen.portal:
        connections = connections.filter(portal__slug=chosen.portal)
    if chosen.state:
        connections = connections.filter(state__in=_chosen_states(chosen))
    return connections


@dataclass
class Night:
    day: date
    portals: list[tuple[str, str]] = field(default_factory=list)  # (slug, name); slug "here": made here
    conflict: bool = False  # a possible double booking nobody marked handled
    handled: bool = False  # a double booking marked handled

    @property
    def weekend(self) -> bool:
        return self.day.weekday() >= 5


@dataclass
class SyncChip:
    """One sync of a row: its state (sync_state's) and, when it needs attention, why in words."""

    status: SyncStatus
    words: str
    label: SyncLabel  # "Airbnb 2": what tells two syncs of one portal apart

    @property
    def connection(self) -> Connection:
        return self.status.connection

    @property
    def flagged(self) -> bool:
        return self.status.needs_attention


@dataclass
class TimelineRow:
    property: Property
    syncs: list[SyncChip]
    nights: list[Night]

    @property
    def flags(self) -> list[SyncChip]:
        return [chip for chip in self.syncs if chip.flagged]


@dataclass
class Timeline:
    start: date
    days: list[date]
    page: Page
    rows: list[TimelineRow]
    matching_syncs: int  # how many syncs "all matching this filter" would act on


def timeline_read(
    *, account: Account, chosen: Filter, start: date, nights: int = DEFAULT_NIGHTS, page: int | str | None = 1,
    per_page: int = PROPERTIES_PER_PAGE, now: datetime | None = None, language: str | None = None,
) -> Timeline:
    """A page of the timeline, its properties in the order of their names in the reader's
    ``language`` (the active one by default): about a dozen queries, whatever the number of rows,
    syncs and blocks."""
    now = now or timezone.now()
    end = start + timedelta(days=nights)
    days = [start + timedelta(days=n) for n in range(nights)]
    matching = properties_matching(account=account, chosen=chosen)
    order = order_field(language or translation.get_language())
    paged = Paginator(matching.order_by(order, "pk"), per_page).get_page(page)
    properties = list(paged.object_list)
    ids = [p.pk for p in properties]
    by_id = {p.pk: p for p in properties}
    connections = list(Connection.objects.filter(property_id__in=ids).select_related("portal").order_by("portal__position", "pk"))
    for c in connections:  # the page's properties, loaded above: not joined again
        c.property = by_id[c.property_id]
    statuses = connection_statuses(connections, now=now)
    labels = label_syncs(connections)  # every sync of the page's properties: the numbers count them all
    chips: dict[int, list[SyncChip]] = defaultdict(list)
    for status in worst_first(statuses.values()):
        words = describe_state(status, now) if status.needs_attention else ""
        chips[status.connection.property_id].append(SyncChip(status=status, words=words, label=labels[status.connection.pk]))
    taken: dict[int, dict[date, set[tuple[str, str]]]] = defaultdict(lambda: defaultdict(set))
    # Two syncs of one portal take a night each under their own label, so that a double booking
    # between them shows as two sources, as it does on the property's calendar.
    sources = {c.pk: (c.portal.slug, labels[c.pk].label) for c in connections}
    here = ("here", _("made here"))
    blocks = (
        Block.objects.current().filter(property_id__in=ids, start_date__lt=end, end_date__gt=start)
        .values_list("property_id", "source_id", "start_date", "end_date")
    )
    for property_id, source_id, first, checkout in blocks:
        label = sources.get(source_id, ("other", "?")) if source_id else here
        day = max(first, start)
        while day < checkout and day < end:
            taken[property_id][day].add(label)
            day += timedelta(days=1)
    conflict_nights: dict[int, dict[date, bool]] = defaultdict(dict)  # night -> handled
    unhandled, handled = conflicts_marked(property_conflicts(property_ids=ids, today=start) if ids else [])
    for marked in [*handled, *unhandled]:  # an unhandled one wins a night both cover
        for first, checkout in marked.conflict.clash.runs:
            day = max(first, start)
            while day < checkout and day < end:
                conflict_nights[marked.conflict.property.pk][day] = marked.handled
                day += timedelta(days=1)
    rows = []
    for prop in properties:
        nights_of = taken.get(prop.pk, {})
        conflicts_of = conflict_nights.get(prop.pk, {})
        row_nights = []
        for day in days:
            portals = sorted(nights_of.get(day, ()))
            in_conflict = day in conflicts_of
            row_nights.append(
                Night(day=day, portals=portals, conflict=in_conflict and not conflicts_of[day],
                      handled=in_conflict and conflicts_of[day])
            )
        rows.append(TimelineRow(property=prop, syncs=chips.get(prop.pk, []), nights=row_nights))
    matching = connections_matching(account=account, chosen=chosen).count()
    return Timeline(start=start, days=days, page=paged, rows=rows, matching_syncs=matching)

