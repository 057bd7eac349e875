"""The properties list: the account's properties that a filter keeps, in the order chosen, a page
at a time, and the same rows as a spreadsheet.

The filter is the timeline's (``syncs.timeline.Filter``: name, portal, a sync's state); health
is ``syncs.sync_state``'s (each property's syncs' states, and its double bookings nobody marked
handled, as the overview finds them); names are ordered in the reader's language
(``syncs.collation``). Every order ends with the name, then the id: a page never shows a
property again, nor skips one, while nothing changes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from syncs.collation import in_name_order
from syncs.conflicts import PROPERTIES_PER_SEARCH, properties_with_conflicts
from syncs.dashboard import properties_health
from syncs.models import Account, Connection, Property
from syncs.sync_state import PropertyHealth, SyncState, health_of_states
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


def property_ids(*, account: Account, chosen: Filter, order: Order, language: str, now: datetime | None = None) -> list[int]:
    """The ids of every property the filter keeps, in the chosen order: a few queries whatever
    their number (health: the states of the account's syncs in one, and its double bookings)."""
    now = now or timezone.now()
    ids = in_name_order(properties_matching(account=account, chosen=chosen, now=now).values_list("pk", "name"), language)
    if order.by == "name":
        return ids[::-1] if order.descending else ids
    if order.by == "health":
        health = _health_of_many(account, ids, now)
        key = {pk: health[pk].rank for pk in ids}
        # Stable sorts: properties alike stay in the order of their names, in either direction.
        return sorted(ids, key=key.__getitem__, reverse=order.descending)
    last = dict(
        Connection.objects.for_account(account).order_by().values("property_id")
        .annotate(last=Max("last_success_at")).values_list("property_id", "last")
    )
    # Never synced is the oldest of all.
    return sorted(ids, key=lambda pk: (last.get(pk) is not None, last.get(pk) or now), reverse=order.descending)


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


def _health_of_many(account: Account, ids: list[int], now: datetime) -> dict[int, PropertyHealth]:
    """The health of each of these properties of the account: the states of all its syncs in one
    query (their stored states), its double bookings as the list shows them."""
    states: dict[int, list[SyncState]] = defaultdict(list)
    for property_id, state in Connection.objects.for_account(account).order_by().values_list("property_id", "state"):
        states[property_id].append(SyncState(state))
    doubles = properties_with_conflicts(account=account, now=now)
    return {pk: health_of_states(states[pk], double_booking=pk in doubles) for pk in ids}
