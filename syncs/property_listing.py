"""The properties list: the account's properties that a filter keeps, in the order chosen, a page
at a time, and the same rows as a spreadsheet.

The filter is the timeline's (``syncs.timeline.Filter``: name, portal, a sync's state); health
is ``syncs.sync_state``'s (each property's syncs' states, and its double bookings nobody marked
handled, as the overview finds them); names are ordered in the reader's language
(``syncs.collation``). Every order ends with the name, then the id: a page never shows a
property again, nor skips one, while nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.paginator import Page, Paginator
from django.db.models import Case, Count, F, Max, Min, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _

from syncs.collation import order_field
from syncs.conflicts import PROPERTIES_PER_SEARCH, properties_with_conflicts
from syncs.dashboard import properties_health
from syncs.models import Account, Property
from syncs.sync_state import SEVERITY, PropertyHealth, severity_rank
from syncs.timeline import Filter, properties_matching

# What the list sorts by, with the words of each direction: (ascending, descending).
SORTS = {
    "name": (_("Name, A to Z"), _("Name, Z to A")),
    "health": (_("Health, worst first"), _("Health, best first")),
    "last_sync": (_("Last successful sync, oldest first"), _("Last successful sync, latest first")),
}


@dataclass(frozen=True)
class Order:
    """How the list is sorted: ``by`` one of SORTS, ascending unless ``descending``. In the URL
    as ``sort=health`` or ``sort=-health``."""

    by: str = "name"
    descending: bool = False

    @classmethod
    def from_query(cls, data) -> Order:
        value = data.get("sort", "")
        by = value.removeprefix("-")
        return cls(by=by, descending=value.startswith("-")) if by in SORTS else cls()

    @property
    def value(self) -> str:
        return ("-" if self.descending else "") + self.by

    @property
    def label(self) -> str:
        return str(SORTS[self.by][self.descending])

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """(value, words) of every order, for a menu."""
        return [(order.value, order.label) for by in SORTS for order in (cls(by), cls(by, descending=True))]


@dataclass
class PropertyRow:
    """One property as the list shows it."""

    property: Property
    syncs: int
    health: PropertyHealth
    last_sync: datetime | None  # the latest successful sync of any of its syncs


def properties_ordered(*, account: Account, chosen: Filter, order: Order, language: str, now: datetime | None = None) -> QuerySet[Property]:
    """Every property the filter keeps, in the chosen order, ordered by the database: a page of
    them reads only its own rows. Every order ends with the name in the reader's language (its
    stored order key), then the id; health reads the account's double bookings (one query)."""
    now = now or timezone.now()
    name = order_field(language)
    properties = properties_matching(account=account, chosen=chosen)
    if order.by == "name":
        return properties.order_by(F(name).desc(), F("pk").desc()) if order.descending else properties.order_by(name, "pk")
    # A join, not the live-rows manager: removed syncs are left out here.
    live = Q(connections__archived_at__isnull=True)
    if order.by == "last_sync":
        # Never synced is the oldest of all; properties alike stay in the order of their names.
        last = Max("connections__last_success_at", filter=live)
        by_last = F("last").desc(nulls_last=True) if order.descending else F("last").asc(nulls_first=True)
        return properties.annotate(last=last).order_by(by_last, name, "pk")
    properties = properties.annotate(
        worst=Min(severity_rank("connections__state"), filter=live),
        # 0 for a double booking nobody marked handled: it comes first among properties alike.
        single=Case(When(pk__in=properties_with_conflicts(account=account, now=now), then=Value(0)), default=Value(1)),
    ).annotate(
        group=Case(  # as PropertyHealth.rank
            When(worst__lt=len(SEVERITY) - 2, then=Value(0)), When(single=0, then=Value(1)),
            When(worst__isnull=True, then=Value(2)), default=Value(3),
        ),
        rank=Coalesce("worst", Value(len(SEVERITY))),
    )
    keys = [F("group"), F("rank"), F("single")]
    # Properties alike stay in the order of their names, in either direction.
    return properties.order_by(*(key.desc() if order.descending else key.asc() for key in keys), name, "pk")


class _CountedApart(Paginator):
    """Pages of an ordered list whose rows are counted on another queryset of the same rows: the
    sorts by health and last sync group every sync of the account, the filter alone does not."""

    def __init__(self, object_list, per_page: int, *, counted: QuerySet):
        super().__init__(object_list, per_page)
        self._counted = counted

    @cached_property
    def count(self) -> int:
        return self._counted.count()


def properties_page(
    *, account: Account, chosen: Filter, order: Order, language: str, page: int | str | None, per_page: int
) -> Page:
    """A page of ``properties_ordered``: the ids of its properties, in order."""
    ordered = properties_ordered(account=account, chosen=chosen, order=order, language=language)
    counted = properties_matching(account=account, chosen=chosen)
    return _CountedApart(ordered.values_list("pk", flat=True), per_page, counted=counted).get_page(page)


def property_rows(ids: list[int], *, now: datetime | None = None) -> list[PropertyRow]:
    """These properties (a page, or all of them for a spreadsheet) as rows, in the given order,
    with their health and last successful sync: six queries for each PROPERTIES_PER_SEARCH."""
    now = now or timezone.now()
    rows = []
    for first in range(0, len(ids), PROPERTIES_PER_SEARCH):
        chunk = ids[first:first + PROPERTIES_PER_SEARCH]
        # A join, not the live-rows manager: removed syncs are left out here.
        live = Q(connections__archived_at__isnull=True)
        loaded = Property.objects.filter(pk__in=chunk).annotate(
            connection_count=Count("connections", filter=live), last_sync=Max("connections__last_success_at", filter=live)
        ).in_bulk()
        properties = [loaded[pk] for pk in chunk if pk in loaded]  # one deleted meanwhile is left out
        health = properties_health(properties, now=now)
        rows.extend(
            PropertyRow(property=prop, syncs=prop.connection_count, health=health[prop.pk], last_sync=prop.last_sync)
            for prop in properties
        )
    return rows
