"""The one source of truth for a sync's state.

Every sync is in exactly one state (``SyncState``), decided by ``classify`` and nowhere else.
``state_record`` runs it on every write to what it reads and stores the result on the sync's row
(``Connection.state``), with the moment it could change by time alone (``state_changes_at``),
and records each change once (``StateChange``); the sweep (``state_sweep``, run by beat) decides
again the rows whose moment has come, as healthchecks flips its checks. The overview's tiles and
attention list, the properties list's health, the timeline's filter, the property and connection
pages, the checklist's first step, the emails, the webhooks, the metrics and the admin all read
the stored state, and ``syncs.explain.describe_state`` words it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from django.db import transaction
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    F,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from syncs.models import Connection, ExportToken, Portal, StateChange, SyncState
from syncs.readers import TICK, ExportReaderFacts, export_facts, export_facts_change_at

# A sync that has not worked for this many of its intervals is stale.
STALE_INTERVALS = 2


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


def severity_rank(field: str) -> Case:
    """A database expression of ``_RANK`` of the state stored in ``field`` (a path to a
    Connection's state): for ordering rows by their syncs' states in SQL."""
    return Case(*(When(**{field: state.value}, then=Value(rank)) for state, rank in _RANK.items()), output_field=IntegerField())


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

# What the rules and the attention list's order read of a connection, and its stored state: the
# narrow rows of account-wide reads hold exactly these fields, by the names a Connection has them. Not
# created_at: it is set on every row, and turning thousands of them into date-times is most of
# the cost of such a read; waiting syncs are ordered by id, which follows it.
FIELDS = (
    "id", "property_id", "portal_id", "direction", "enabled", "paused_at", "checking_since",
    "consecutive_failures", "held_removals", "held_since", "last_success_at", "last_attempt_at",
    "sync_interval_minutes", "state",
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


def state_changes_at(connection: Any, *, tokens: list, pickup: int | None, now: datetime) -> datetime | None:
    """The earliest moment after ``now`` at which ``classify`` could give ``connection`` another
    state by time alone (no write to it or to its export tokens): its last success growing stale,
    or what its export's readers say changing. Never later than that moment, sometimes earlier
    (a moment a rule that applies first makes moot); None when only a write can change it."""
    if not connection.enabled:
        return None
    moments = []
    if connection.direction != Connection.Direction.EXPORT_ONLY:
        if (connection.paused_at is not None or connection.consecutive_failures or connection.held_removals
                or connection.last_success_at is None):
            return None
        stale_at = connection.last_success_at + timedelta(minutes=connection.sync_interval_minutes * STALE_INTERVALS) + TICK
        if stale_at <= now:
            return None  # stale until a write
        moments.append(stale_at)
    if connection.direction != Connection.Direction.IMPORT_ONLY:
        moments.append(export_facts_change_at(tokens=tokens, pickup_max_minutes=pickup, now=now))
    return min((moment for moment in moments if moment is not None), default=None)


# What deciding a state reads of a connection, beyond FIELDS: what was last stored, its
# account (for the record of a change) and its portal's pick-up delay (for its readers).
_RECORD_FIELDS = (*FIELDS, "state_since", "state_changes_at", "property__account_id", "portal__pickup_delay_max_minutes")


def _decided(row: Any, *, tokens: list, now: datetime) -> tuple[SyncState, datetime | None]:
    """The state of a row of _RECORD_FIELDS with its serving tokens, and when it could change."""
    pickup = row.portal__pickup_delay_max_minutes
    readers = None
    if row.direction != Connection.Direction.IMPORT_ONLY:
        readers = export_facts(tokens=tokens, pickup_max_minutes=pickup, now=now)
    return classify(row, readers=readers, now=now), state_changes_at(row, tokens=tokens, pickup=pickup, now=now)


def state_decided(connections: QuerySet[Connection], *, now: datetime) -> list[tuple[int, str, SyncState]]:
    """(sync, its stored state, the state the rules give it at ``now``) of each of ``connections``,
    written nowhere: what checks of the stored states compare."""
    rows = [SimpleNamespace(**row) for row in connections.order_by("pk").values(*_RECORD_FIELDS)]
    tokens = _tokens_by_connection(ExportToken.objects.filter(connection_id__in=[row.id for row in rows]), now)
    return [(row.id, row.state, _decided(row, tokens=tokens.get(row.id, []), now=now)[0]) for row in rows]


def state_record(
    connection_ids: Iterable[int], *, now: datetime | None = None, skip_locked: bool = False
) -> list[StateChange]:
    """Decide again the state of these syncs, store it on their rows with the moment it could
    change by time alone, and record each change of state once: the one writer of
    Connection.state, called by every write to what ``classify`` reads, and by the sweep.

    The rows are locked while deciding: a writer that changes them after this read calls this
    again once its own write is in, so that the last decision is always taken on the last write.
    ``skip_locked`` (the sweep): rows a writer holds are left to that writer. Returns the changes
    recorded."""
    ids = sorted(set(connection_ids))
    if not ids:
        return []
    now = now or timezone.now()
    changes = []
    with transaction.atomic():
        rows = [
            SimpleNamespace(**row) for row in Connection.all_objects.filter(pk__in=ids).order_by("pk")
            .select_for_update(of=("self",), skip_locked=skip_locked).values(*_RECORD_FIELDS)
        ]
        tokens = _tokens_by_connection(ExportToken.objects.filter(connection_id__in=ids), now)
        for row in rows:
            state, changes_at = _decided(row, tokens=tokens.get(row.id, []), now=now)
            moved = state != row.state or row.state_since is None
            if not moved and changes_at == row.state_changes_at:
                continue
            since = now if moved else row.state_since
            Connection.all_objects.filter(pk=row.id).update(state=state, state_since=since, state_changes_at=changes_at)
            if state != row.state and row.state_since is not None:  # a new row's first decision is no change
                changes.append(StateChange(
                    connection_id=row.id, account_id=row.property__account_id, from_state=row.state, to_state=state, at=now
                ))
        StateChange.objects.bulk_create(changes)
    return changes


# How many syncs one transaction of the sweep decides again.
SWEEP_BATCH = 500


def state_sweep(*, now: datetime | None = None) -> int:
    """Decide again every sync whose state could have changed by time alone by ``now``, in
    batches; each is then due again at its next moment, or never. A row a writer holds is left to
    it (it decides the state once its write is in), or to the next sweep. Returns how many rows
    were due."""
    now = now or timezone.now()
    due = Connection.all_objects.filter(state_changes_at__lte=now).order_by("pk")
    done, after = 0, 0
    while batch := list(due.filter(pk__gt=after).values_list("pk", flat=True)[:SWEEP_BATCH]):
        state_record(batch, now=now, skip_locked=True)
        done, after = done + len(batch), batch[-1]
    return done


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


# -- Reading the stored states: many syncs (narrow rows) or a few loaded ones. --


def _tokens_by_connection(tokens: QuerySet[ExportToken], now: datetime) -> dict[int, list[Any]]:
    """The serving export tokens of connections among ``tokens``, as narrow rows (their
    connection_id, created_at, expires_at, last_read_at, last_reader), in one query."""
    by_connection: dict[int, list[Any]] = defaultdict(list)
    rows = tokens.serving(now).filter(connection__isnull=False).order_by().values(
        "connection_id", "created_at", "expires_at", "last_read_at", "last_reader"
    )
    for token in rows:
        by_connection[token["connection_id"]].append(SimpleNamespace(**token))
    return by_connection


def _status(connection: Any, *, tokens: list, pickup: int | None, now: datetime) -> SyncStatus:
    """The stored state of a sync, with what its export's readers say now (for the words)."""
    readers = None
    if connection.direction != Connection.Direction.IMPORT_ONLY:
        readers = export_facts(tokens=tokens, pickup_max_minutes=pickup, now=now)
    return SyncStatus(connection=connection, state=SyncState(connection.state), readers=readers)


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
    rows = [SimpleNamespace(**row) for row in connections.order_by().values(*FIELDS)]
    tokens = _tokens_by_connection(tokens, now)
    pickups = dict(Portal.objects.values_list("pk", "pickup_delay_max_minutes"))
    return [_status(row, tokens=tokens.get(row.id, []), pickup=pickups.get(row.portal_id), now=now) for row in rows]


def states_counted(connections: QuerySet[Connection]) -> dict[str, int]:
    """Syncs per state among ``connections`` (every state present, 0 when none: they add up to the
    number of syncs): one query, read from the stored states (COUNT(*): the live syncs' index of
    property and state holds all it reads)."""
    counts = dict.fromkeys((state.value for state in TILES), 0)
    for state, count in connections.order_by().values_list("state").annotate(count=Count("*")):
        counts[state] += count
    return counts


def _since_in_sql() -> Case:
    """``SyncStatus.since`` of a narrow row, as a database expression: the field that says when
    the state began, the current export URL's last read for a portal not reading it (the newest
    URL that does not expire, as ``syncs.readers`` finds it), nothing for waiting syncs (a narrow
    row has no created_at) and switched-off ones."""
    current_read = (
        ExportToken.objects.filter(connection=OuterRef("pk"), expires_at__isnull=True)
        .order_by("-created_at", "pk").values("last_read_at")[:1]
    )
    whens = [When(state=state.value, then=F(field)) for state, field in _SINCE.items() if state != SyncState.WAITING]
    whens.append(When(state=SyncState.NOT_READING.value, direction__in=_EXPORTING, then=Subquery(current_read)))
    return Case(*whens, output_field=DateTimeField())


_EXPORTING = [direction for direction in Connection.Direction.values if direction != Connection.Direction.IMPORT_ONLY]


def states_with_attention(
    connections: QuerySet[Connection], *, now: datetime, limit: int | None = None
) -> tuple[dict[str, int], list[SyncStatus]]:
    """Syncs per state among ``connections``, and those that need attention, worst first (the
    first ``limit`` of them: ordered and cut by the database), with what their readers say: five
    queries, whatever the number of syncs."""
    counts = states_counted(connections)
    if not any(counts[state.value] for state in NEEDS_ATTENTION):
        return counts, []
    troubled = connections.filter(state__in=[state.value for state in NEEDS_ATTENTION])
    # worst_first's order: the state's rank, then since (none last), then the id.
    ordered = troubled.annotate(rank=severity_rank("state"), since=_since_in_sql()).order_by(
        "rank", F("since").asc(nulls_last=True), "pk"
    )
    ids = list(ordered.values_list("pk", flat=True)[:limit])
    position = {pk: index for index, pk in enumerate(ids)}
    # All of them (no limit) are read as a subquery: a list of ids has a bound on its length.
    chosen = troubled if limit is None else Connection.objects.filter(pk__in=ids)
    statuses = statuses_of(chosen, tokens=ExportToken.objects.filter(connection__in=chosen.order_by().values("pk")), now=now)
    return counts, sorted(statuses, key=lambda status: position.get(status.connection.id, len(position)))


def connection_statuses(connections: Iterable[Connection], *, now: datetime | None = None) -> dict[int, SyncStatus]:
    """The stored state of each of these loaded connections (with their portal), with what their
    readers say, by id: one query."""
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

    @property
    def rank(self) -> tuple[int, int, bool]:
        """Worst first, as the properties list sorts by health: a sync that needs attention (the
        worst state first, a double booking before none), then a double booking alone, then no
        sync at all, then syncs switched off, then all working."""
        worst = self.worst
        if worst in NEEDS_ATTENTION:
            group = 0
        elif self.double_booking:
            group = 1
        elif worst is None:
            group = 2
        else:
            group = 3
        return group, _RANK[worst] if worst is not None else len(SEVERITY), not self.double_booking

    @property
    def badges(self) -> list[tuple[str, str, str]]:
        """The health as the properties list and its spreadsheet say it: (kind, state, words) for
        each badge, the kind naming its colour, the state (a SyncState value, "" for the property's
        own marks) telling which syncs it counts; a lone state is not counted ("Working")."""
        badges = [("no-sync", "", str(_("No sync yet")))] if self.no_sync else []
        if self.double_booking:
            badges.append(("double-booking", "", str(_("Possible double booking"))))
        alone = len(self.by_state) == 1
        return badges + [
            (state.value, state.value, str(state.label) if alone else f"{state.label}: {n}") for state, n in self.by_state
        ]


def property_health(statuses: Iterable[SyncStatus], *, double_booking: bool) -> PropertyHealth:
    return health_of_states((status.state for status in statuses), double_booking=double_booking)


def health_of_states(states: Iterable[SyncState], *, double_booking: bool) -> PropertyHealth:
    """A property's health from the states of its syncs (each decided by these rules)."""
    counts: dict[SyncState, int] = defaultdict(int)
    for state in states:
        counts[state] += 1
    by_state = sorted(counts.items(), key=lambda item: _RANK[item[0]])
    return PropertyHealth(syncs=sum(counts.values()), by_state=by_state, double_booking=double_booking)
