"""The one source of truth for a sync's state.

Every sync is in exactly one state (``SyncState``), decided by ``classify`` and nowhere else:
the overview's tiles and attention list, the properties list's health, the property and
connection pages, the checklist's first step, the emails and the admin all read it from here,
and ``syncs.explain.describe_state`` words it. The rules take the few fields they need from any
object that has them: a loaded Connection, or a narrow row of a read of many syncs. Counting an
account's five thousand syncs or filtering them by state asks the database for their states
(``with_states``: the same rules, in SQL, which a test holds equal to ``classify``), and the
syncs then shown are decided again by ``classify``: a constant number of queries whatever the
number of syncs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import models
from django.db.models import (
    Case,
    CharField,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    FilteredRelation,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from syncs.models import Connection, ExportToken, Portal
from syncs.moments import values_rows
from syncs.readers import ExportReaderFacts, expected_within, export_facts

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


def _rules_in_sql(connections: QuerySet[Connection], now: datetime) -> tuple[QuerySet[Connection], list[tuple[SyncState, Q]]]:
    """``classify``'s rules said in SQL, in its order: ``connections`` with the values the rules
    compare, and (state, condition) for each rule; a sync is in the state of the first condition
    that holds, working when none does.

    The one place the rules are said twice. A test puts every combination of the fields the rules
    read, and every situation of the export readers', through both, at each rule's boundary to
    the microsecond, on every database the suite runs: the two may never disagree."""
    direction = Connection.Direction
    importing = ~Q(direction=direction.EXPORT_ONLY)
    # A success before this moment is stale: worked out here for each interval the syncs have,
    # and by the database (exact too, but a function call a row on SQLite) for one set meanwhile.
    intervals = connections.order_by().values_list("sync_interval_minutes", flat=True).distinct()
    stale_before = Case(
        *(When(sync_interval_minutes=minutes, then=Value(now - timedelta(minutes=minutes * STALE_INTERVALS)))
          for minutes in intervals),
        default=Value(now) - ExpressionWrapper(
            ExpressionWrapper(F("sync_interval_minutes"), output_field=IntegerField())
            * Value(timedelta(minutes=STALE_INTERVALS), output_field=DurationField()),
            output_field=DurationField(),
        ),
        output_field=DateTimeField(),
    )
    # The moment before which a portal should have read our calendar again (readers.expected_within).
    read_since = Case(
        *(When(portal_id=pk, then=Value(now - expected_within(pickup)))
          for pk, pickup in Portal.objects.values_list("pk", "pickup_delay_max_minutes")),
        default=Value(now - expected_within(None)), output_field=DateTimeField(),
    )
    old_url_read = Exists(ExportToken.objects.filter(
        connection=OuterRef("pk"), expires_at__gt=now, last_read_at__gt=OuterRef("current_created_at")
    ))
    readers_need_attention = (
        ~Q(direction=direction.IMPORT_ONLY) & Q(current_created_at__isnull=False) & (
            Q(current_read_at__isnull=True, current_created_at__lt=F("read_since"))
            | Q(current_read_at__isnull=False, current_read_at__lt=F("read_since"))
            | Q(old_url_read=True)
        )
    )
    compared = connections.alias(
        current_token=FilteredRelation("export_tokens", condition=Q(export_tokens__expires_at__isnull=True)),
        current_created_at=F("current_token__created_at"),
        current_read_at=F("current_token__last_read_at"),
        read_since=read_since,
        stale_before=stale_before,
    ).alias(old_url_read=old_url_read)
    # Each condition is true or false, never unknown (null): in_states negates them.
    return compared, [
        (SyncState.SWITCHED_OFF, Q(enabled=False)),
        (SyncState.CHECKING, importing & Q(paused_at__isnull=False, checking_since__isnull=False)),
        (SyncState.PAUSED, importing & Q(paused_at__isnull=False)),
        (SyncState.FAILING, importing & ~Q(consecutive_failures=0)),
        (SyncState.HELD, importing & ~Q(held_removals=0)),
        (SyncState.WAITING, importing & Q(last_success_at__isnull=True)),
        (SyncState.STALE, importing & Q(last_success_at__isnull=False, last_success_at__lt=F("stale_before"))),
        (SyncState.NOT_READING, readers_need_attention),
    ]


def with_states(connections: QuerySet[Connection], *, now: datetime) -> QuerySet[Connection]:
    """``connections``, each with its state as ``sync_state`` (a SyncState value), for reads of
    many syncs that need the state of rows they do not load (an account's counts)."""
    compared, rules = _rules_in_sql(connections, now)
    return compared.annotate(sync_state=Case(
        *(When(condition, then=Value(state.value)) for state, condition in rules),
        default=Value(SyncState.WORKING.value), output_field=CharField(),
    ))


def in_states(connections: QuerySet[Connection], states: Iterable[SyncState], *, now: datetime) -> QuerySet[Connection]:
    """Those of ``connections`` in one of these states (a filter by state). For one state, its
    rule and the negation of those before it, so that the database can rule most syncs out on a
    field or two; for several, each sync's state in full (one rule in order each time is more)."""
    states = set(states)
    if len(states) != 1:
        return with_states(connections, now=now).filter(sync_state__in=[state.value for state in states])
    [wanted] = states
    compared, rules = _rules_in_sql(connections, now)
    earlier = Q()  # no rule before this one holds
    for state, condition in rules:
        if state == wanted:
            return compared.filter(earlier & condition)
        earlier &= ~condition
    return compared.filter(earlier)  # working: no rule holds


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


def states_counted(connections: QuerySet[Connection], *, now: datetime) -> tuple[dict[str, int], list[int]]:
    """Syncs per state among ``connections`` (every state present, 0 when none: they add up to the
    number of syncs), and the ids of those that need attention: three queries (with_states' two
    small ones, then two narrow columns a sync), whatever their number."""
    counts = dict.fromkeys((state.value for state in TILES), 0)
    attention = {state.value for state in NEEDS_ATTENTION}
    troubled = []
    for pk, state in with_states(connections.order_by(), now=now).values_list("pk", "sync_state"):
        counts[state] += 1
        if state in attention:
            troubled.append(pk)
    return counts, troubled


def states_with_attention(connections: QuerySet[Connection], *, now: datetime) -> tuple[dict[str, int], list[SyncStatus]]:
    """Syncs per state among ``connections``, and those that need attention, worst first, each
    decided by ``classify`` with what it read (narrow rows): six queries, the rules' rows read
    for the syncs that need attention only (or for all, when most do)."""
    counts, troubled = states_counted(connections, now=now)
    if not troubled:
        return counts, []
    if len(troubled) * 2 <= sum(counts.values()):
        rows, tokens = Connection.objects.filter(pk__in=troubled), ExportToken.objects.filter(connection_id__in=troubled)
    else:  # most of them (after an outage, say): reading all costs less than naming each
        rows, tokens = connections, ExportToken.objects.filter(connection__in=connections.values("pk"))
    statuses = statuses_of(rows, tokens=tokens, now=now)
    return counts, worst_first(status for status in statuses if status.needs_attention)


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
