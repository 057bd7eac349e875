"""What each sync is called on the pages: its portal's name, and a number when a property has
several syncs of one portal ("Airbnb 1", "Airbnb 2"), in the order they were added. Colours
belong to portals (syncs.portals.LOOKS), so labels are what tell two syncs of one portal apart;
a new sync takes the next number and never renames the others."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from syncs.models import Connection, Portal
from syncs.portals import Look, look_for


@dataclass(frozen=True)
class SyncLabel:
    label: str  # "Airbnb", or "Airbnb 2"
    slug: str  # the portal's
    number: int | None  # among the property's syncs of this portal; None when it is the only one

    @property
    def look(self) -> Look:
        return look_for(self.slug)

    @property
    def css(self) -> str:
        return f"portal-{self.slug}"

    @property
    def short(self) -> str:
        """The mark written in a calendar cell: the portal's, and the number if any ("AB2")."""
        return f"{self.look.short}{self.number or ''}"


def label_syncs(connections: Iterable[Connection]) -> dict[int, SyncLabel]:
    """Labels of a property's syncs (loaded with their portals), by id. Give every sync of the
    property: the numbers count them all."""
    return _labels((c.pk, c.property_id, c.portal_id, c.portal.display_name, c.portal.slug) for c in connections)


def _labels(syncs: Iterable[tuple[int, int, int, str, str]]) -> dict[int, SyncLabel]:
    """Labels from (id, property id, portal id, portal's name in words, portal's slug) of syncs."""
    syncs = sorted(syncs)
    per_portal = Counter((property_id, portal_id) for _pk, property_id, portal_id, _name, _slug in syncs)
    seen: dict[tuple[int, int], int] = defaultdict(int)
    labels = {}
    for pk, property_id, portal_id, name, slug in syncs:
        key = (property_id, portal_id)
        seen[key] += 1
        number = seen[key] if per_portal[key] > 1 else None
        labels[pk] = SyncLabel(label=f"{name} {number}" if number else name, slug=slug, number=number)
    return labels


def labels_for(connections: Iterable[Connection]) -> dict[int, SyncLabel]:
    """Labels of some loaded connections of any properties (e.g. the overview's attention list),
    numbered among all the syncs of their properties: one query, of narrow rows."""
    connections = list(connections)
    if not connections:
        return {}
    siblings = list(Connection.objects.filter(property_id__in={c.property_id for c in connections}).values_list(
        "id", "property_id", "portal_id", "portal__name", "portal__slug"
    ))
    words = {name: Portal.name_in_words(name) for name in {row[3] for row in siblings}}
    labels = _labels((pk, prop, portal, words[name], slug) for pk, prop, portal, name, slug in siblings)
    return {c.pk: labels[c.pk] for c in connections if c.pk in labels}
