"""Reads for pages: every query is scoped to the user's account."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from syncs.models import Connection, Property, SyncRun


def property_list_with_connections(*, user) -> QuerySet[Property]:
    """The account's properties, each with its connections and their portals, in 2 queries."""
    connections = Connection.objects.select_related("portal").order_by("portal__position", "pk")
    return Property.objects.for_user(user).prefetch_related(Prefetch("connections", queryset=connections))


def property_get(*, user, property_id: int) -> Property:
    """One of the account's properties, or 404."""
    return get_object_or_404(Property.objects.for_user(user), pk=property_id)


def connection_get(*, user, connection_id: int) -> Connection:
    """One of the account's connections with its property and portal, or 404."""
    return get_object_or_404(Connection.objects.for_user(user).select_related("property", "portal"), pk=connection_id)


def connection_recent_runs(*, connection: Connection, limit: int = 50) -> list[SyncRun]:
    return list(connection.runs.select_related("connection__portal").order_by("-started_at", "-pk")[:limit])
