"""Reads for pages: every query is scoped to the user's account."""

from __future__ import annotations

from dataclasses import dataclass

from django.shortcuts import get_object_or_404
from django.utils import timezone

from syncs.explain import describe_readers, describe_state
from syncs.export_tokens import export_url
from syncs.models import Block, Connection, ExportToken, Property, SyncRun
from syncs.sync_labels import SyncLabel, label_syncs, labels_for
from syncs.sync_state import SyncState, SyncStatus, connection_status, status_from_tokens


def property_get(*, user, property_id: int, removed: bool = False) -> Property:
    """One of the account's properties, or 404; ``removed``: a removed one too (its page, its
    restore), else live ones only (everything that acts on it)."""
    properties = Property.all_objects if removed else Property.objects
    return get_object_or_404(properties.for_user(user), pk=property_id)


def connection_get(*, user, connection_id: int, removed: bool = False) -> Connection:
    """One of the account's connections with its property and portal, or 404; ``removed``: a
    removed one too (its page, its restore), else live ones only."""
    connections = Connection.all_objects if removed else Connection.objects
    return get_object_or_404(connections.for_user(user).select_related("property", "portal"), pk=connection_id)


def connection_recent_runs(*, connection: Connection, limit: int = 50) -> list[SyncRun]:
    return list(connection.runs.select_related("connection__portal").order_by("-started_at", "-pk")[:limit])


def connection_blocks(*, connection: Connection, limit: int = 200) -> list[Block]:
    """The blocks this connection brought and its portal still has, from yesterday on (a removed
    sync's too: the nights its restore brings back)."""
    today = timezone.localdate()
    return list(connection.blocks.filter(removed_at__isnull=True, end_date__gte=today).order_by("start_date")[:limit])


def property_manual_blocks(*, property: Property) -> list[Block]:
    today = timezone.localdate()
    return list(property.blocks.current().filter(source__isnull=True, end_date__gte=today).order_by("start_date"))


@dataclass(frozen=True)
class ConnectionRow:
    """What a connection's row on the property page shows."""

    connection: Connection
    status: SyncStatus  # its state: the one every page shows
    problem: str  # the state's reason in words ("" for a sync that works)
    readers: str  # whether the portal reads our calendar, in words
    export_url: str
    label: SyncLabel  # "Airbnb 2", with its portal's colour


def connection_rows(*, property: Property, only: Connection | None = None) -> list[ConnectionRow]:
    """The rows of a property's connections, in 2 queries whatever their number (3 for one row)."""
    connections = property.connections.select_related("portal", "property").order_by("portal__position", "pk")
    if only is not None:
        connections = connections.filter(pk=only.pk)
    connections = list(connections)
    labels = label_syncs(connections) if only is None else labels_for(connections)
    tokens: dict[int, list[ExportToken]] = {}
    for token in ExportToken.objects.serving().filter(connection__in=connections):
        tokens.setdefault(token.connection_id, []).append(token)
    now = timezone.now()
    rows = []
    for connection in connections:
        own = tokens.get(connection.pk, [])
        current = next((t for t in own if t.expires_at is None), None)
        status = status_from_tokens(connection, tokens=own, now=now)
        rows.append(
            ConnectionRow(
                connection=connection,
                status=status,
                problem=describe_state(status, now),
                readers=describe_readers(status.readers, portal=connection.portal.name_in_sentence) if connection.exports else "",
                export_url=export_url(current) if current else "",
                label=labels[connection.pk],
            )
        )
    return rows


@dataclass(frozen=True)
class ConnectionState:
    """A connection's state with its reason in words, from one read: what its page, its
    checklist and the messages after an action say."""

    connection: Connection
    status: SyncStatus
    words: str

    @property
    def state(self) -> SyncState:
        return self.status.state


def connection_state_get(*, user, connection_id: int) -> ConnectionState:
    """One of the account's connections read now, with its state and the words for it (or 404)."""
    return connection_state_of(connection_get(user=user, connection_id=connection_id))


def connection_state_of(connection: Connection) -> ConnectionState:
    now = timezone.now()
    status = connection_status(connection, now=now)
    return ConnectionState(connection=connection, status=status, words=describe_state(status, now))
