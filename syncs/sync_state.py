"""The one source of truth for a sync's state.

Every sync is in exactly one state (``SyncState``), decided by ``classify`` and nowhere else:
the overview's tiles and attention list, the properties list's health, the property and
connection pages, the checklist's first step, the emails and the admin all read it from here,
and ``syncs.explain.describe_state`` words it. The rules take the few fields they need from any
object that has them: a loaded Connection, or a narrow row of an account-wide read, so that
counting five thousand syncs and showing one apply the very same rules, from a constant number
of queries whatever the number of syncs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import models
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from syncs.models import Connection, ExportToken, Portal
from syncs.moments import values_rows
from syncs.readers import ExportReaderFacts, export_facts

# A sync that has not worked for this many of its intervals is stale.
STALE_INTERVALS = 2


class SyncState(models.TextChoices):
    WORKING = "working", _("Working")
    FAILING = "failing", _("Failing, retrying")
    PAUSED = "paused", _("Paused by errors")
    CHECKING = "checking", _("Switched on, checking…")
    HELD = "held", _("Removals held")
    NOT_READING = "not_reading", _("Portal not reading our calendar")
    STALE = "stale", _("Stale")
    WAITING = "waiting", _("Waiting for its first sync")
    SWITCHED_OFF = "switched_off", _("Switched off")


# Worst first: the order of the attention list and of a property's health. A sync that stopped
# (paused) or keeps failing comes before one that is only waiting for its first turn.
SEVERITY: tuple[SyncState, ...] = (
    SyncState.PAUSED,
    SyncState.FAILING,
    SyncState.CHECKING,
    SyncState.HELD,
    SyncState.NOT_READING,
    SyncState.STALE,
    SyncState.WAITING,
    SyncState.SWITCHED_OFF,
    SyncState.WORKING,
)
# States that need the operator's attention: all but working and switched off (their choice).
NEEDS_ATTENTION = frozenset(SEVERITY[:-2])
# The overview's tiles, in the order shown; together they count every sync once.
TILES: tuple[SyncState, ...] = (
    SyncState.WORKING,
    SyncState.FAILING,
    SyncState.PAUSED,
    SyncState.CHECKING,
    SyncState.HELD,
    SyncState.NOT_READING,
    SyncState.STALE,
    SyncState.WAITING,
    SyncState.SWITCHED_OFF,
)
_RANK = {state: index for index, state in enumerate(SEVERITY)}
# How loud a state is shown: "bad" (red), "warn" (amber), "ok" (green), "" (neutral).
TONE = {
    SyncState.WORKING: "ok",
    SyncState.FAILING: "bad",
    SyncState.PAUSED: "bad",
    SyncState.CHECKING: "warn",
    SyncState.HELD: "warn",
    SyncState.NOT_READING: "warn",
    SyncState.STALE: "warn",
    SyncState.WAITING: "warn",
    SyncState.SWITCHED_OFF: "",
}

# What the rules and the attention list's order read of a connection: the narrow rows of
# account-wide reads hold exactly these fields, by the names a Connection has them. Not
# created_at: it is set on every row, and turning thousands of them into date-times is most of
# the cost of such a read; waiting syncs are ordered by id, which follows it.
FIELDS = (
    "id", "property_id", "portal_id", "direction", "enabled", "paused_at", "checking_since",
    "consecutive_failures", "held_removals", "held_since", "last_success_at", "last_attempt_at",
    "sync_interval_minutes",
)


def classify(connection: Any, *, readers: ExportReaderFacts | None, now: datetime) -> SyncState:
    """The state of one sync, from its FIELDS and what its export's readers say (None when it
    does not export). Exactly one state, the first rule that applies."""
    if not connection.enabled:
        return SyncState.SWITCHED_OFF
    if connection.direction != Connection.Direction.EXPORT_ONLY:
        if connection.paused_at is not None:
            # Switched back on after a pause: the episode stays open until a fetch has worked.
            return SyncState.CHECKING if connection.checking_since is not None else SyncState.PAUSED
        if connection.consecutive_failures:
            # Transient failures before the pause, a first sync that failed included.
            return SyncState.FAILING
        if connection.held_removals:
            return SyncState.HELD
        if connection.last_success_at is None:
            return SyncState.WAITING
        if now - connection.last_success_at > timedelta(minutes=connection.sync_interval_minutes * STALE_INTERVALS):
            return SyncState.STALE
    if readers is not None and readers.needs_attention:
        return SyncState.NOT_READING
    return SyncState.WORKING


# For some states, a condition in SQL that every sync in the state meets, read off classify's
# rule for it: a filter by state reads these candidates only, and classify still decides, so the
# rules are stated once. A condition may let through syncs of other states, never leave one of
# its own out (a test classifies every combination of the fields). A state without an entry has
# candidates in every switched-on sync.
_CANDIDATES: dict[SyncState, Q] = {
    SyncState.SWITCHED_OFF: Q(enabled=False),
    SyncState.PAUSED: Q(paused_at__isnull=False, checking_since__isnull=True),
    SyncState.CHECKING: Q(paused_at__isnull=False, checking_since__isnull=False),
    SyncState.FAILING: Q(consecutive_failures__gt=0),
    SyncState.HELD: Q(held_removals__gt=0),
    SyncState.WAITING: Q(last_success_at__isnull=True),
}


def candidates_in(states: Iterable[SyncState]) -> Q:
    """Connections that may be in one of these states (a superset: see _CANDIDATES)."""
    found = Q(pk__in=[])
    for state in states:
        rule = _CANDIDATES.get(state, Q())
        found |= rule if state == SyncState.SWITCHED_OFF else Q(enabled=True) & rule
    return found


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """One sync's state, with what was read to decide it."""

    connection: Any  # a Connection, or a narrow row of FIELDS
    state: SyncState
    readers: ExportReaderFacts | None

    @property
    def label(self) -> str:
        return str(self.state.label)

    @property
    def tone(self) -> str:
        return TONE[self.state]

    @property
    def needs_attention(self) -> bool:
        return self.state in NEEDS_ATTENTION

    @property
    def rank(self) -> int:
        return _RANK[self.state]

    @property
    def since(self) -> datetime | None:
        """When the state began, as far as the row knows."""
        if self.state == SyncState.NOT_READING:
            return self.readers.last_read_at if self.readers else None
        field = _SINCE.get(self.state)
        # created_at: a loaded connection has it, a narrow row does not (waiting syncs are
        # ordered by id, which follows it).
        return getattr(self.connection, field, None) if field else None


# The field that says when each state began (not-reading: its readers' last read; switched off:
# nothing).
_SINCE = {
    SyncState.PAUSED: "paused_at",
    SyncState.CHECKING: "checking_since",
    SyncState.FAILING: "last_attempt_at",
    SyncState.HELD: "held_since",
    SyncState.STALE: "last_success_at",
    SyncState.WAITING: "created_at",
    SyncState.WORKING: "last_success_at",
}


# -- Reading the states: many syncs (narrow rows) or a few loaded ones, the same rules. --


def _tokens_by_connection(tokens: QuerySet[ExportToken], now: datetime) -> dict[int, list[Any]]:
    """The serving export tokens of connections among ``tokens``, as narrow rows (their
    connection_id, created_at, expires_at, last_read_at, last_reader), in one query."""
    by_connection: dict[int, list[Any]] = defaultdict(list)
    rows = values_rows(
        tokens.serving(now).filter(connection__isnull=False).order_by(),
        ("connection_id", "created_at", "expires_at", "last_read_at", "last_reader"),
        named=True,
    )
    for token in rows:
        by_connection[token.connection_id].append(token)
    return by_connection


def _status(connection: Any, *, tokens: list, pickup: int | None, now: datetime) -> SyncStatus:
    readers = None
    if connection.direction != Connection.Direction.IMPORT_ONLY:
        readers = export_facts(tokens=tokens, pickup_max_minutes=pickup, now=now)
    return SyncStatus(connection=connection, state=classify(connection, readers=readers, now=now), readers=readers)


def status_from_tokens(connection: Connection, *, tokens: list, now: datetime) -> SyncStatus:
    """The state of a loaded connection (with its portal) whose serving export tokens were read."""
    return _status(connection, tokens=tokens, pickup=connection.portal.pickup_delay_max_minutes, now=now)


def statuses_of(
    connections: QuerySet[Connection], *, tokens: QuerySet[ExportToken], now: datetime | None = None
) -> list[SyncStatus]:
    """The state of every sync of ``connections`` (a queryset, e.g. an account's), read as narrow
    rows: three queries whatever their number. ``tokens``: export tokens that include those of
    these connections, narrowed the way the index serves best (an account's, some properties')."""
    now = now or timezone.now()
    rows = values_rows(connections.order_by(), FIELDS, named=True)
    tokens = _tokens_by_connection(tokens, now)
    pickups = dict(Portal.objects.values_list("pk", "pickup_delay_max_minutes"))
    return [_status(row, tokens=tokens.get(row.id, []), pickup=pickups.get(row.portal_id), now=now) for row in rows]


def connection_statuses(connections: Iterable[Connection], *, now: datetime | None = None) -> dict[int, SyncStatus]:
    """The state of each of these loaded connections (with their portal), by id: one query."""
    now = now or timezone.now()
    connections = list(connections)
    tokens = _tokens_by_connection(ExportToken.objects.filter(connection__in=[c.pk for c in connections]), now) if connections else {}
    return {
        c.pk: _status(c, tokens=tokens.get(c.pk, []), pickup=c.portal.pickup_delay_max_minutes, now=now)
        for c in connections
    }


def connection_status(connection: Connection, *, now: datetime | None = None) -> SyncStatus:
    """The state of one loaded connection (with its portal)."""
    return connection_statuses([connection], now=now)[connection.pk]


def state_counts(statuses: Iterable[SyncStatus]) -> dict[str, int]:
    """Syncs per state, every state present (0 when none): the tiles, which add up to the number
    of syncs because each sync has exactly one state."""
    counts = dict.fromkeys((state.value for state in TILES), 0)
    for status in statuses:
        counts[status.state.value] += 1
    return counts


def worst_first(statuses: Iterable[SyncStatus]) -> list[SyncStatus]:
    """Worst state first; within a state, the oldest first."""
    return sorted(statuses, key=_worst_first_key)


def _worst_first_key(status: SyncStatus) -> tuple:
    since = status.since
    return (status.rank, since is None, since or 0, status.connection.id)


@dataclass(frozen=True)
class PropertyHealth:
    """A property's health: its syncs per state (worst first), and what the property itself shows."""

    syncs: int
    by_state: list[tuple[SyncState, int]]
    double_booking: bool

    @property
    def worst(self) -> SyncState | None:
        return self.by_state[0][0] if self.by_state else None

    @property
    def no_sync(self) -> bool:
        return self.syncs == 0

    @property
    def all_working(self) -> bool:
        return self.worst == SyncState.WORKING and len(self.by_state) == 1 and not self.double_booking


def property_health(statuses: Iterable[SyncStatus], *, double_booking: bool) -> PropertyHealth:
    counts: dict[SyncState, int] = defaultdict(int)
    for status in statuses:
        counts[status.state] += 1
    by_state = sorted(counts.items(), key=lambda item: _RANK[item[0]])
    return PropertyHealth(syncs=sum(counts.values()), by_state=by_state, double_booking=double_booking)
