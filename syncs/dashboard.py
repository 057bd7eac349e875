"""Reads for the overview and the property pages: what needs the operator's attention first.

Built for accounts with thousands of connections: a fixed number of queries whatever the
number of rows (a few narrow ones, the classification done in Python), and full objects
fetched only for the handful of rows the page shows.
"""

from __future__ import annotations

import calendar as calendar_module
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import SimpleNamespace

from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from syncs.explain import describe, describe_readers
from syncs.models import Account, Block, BlockKind, Connection, ExportToken, Property
from syncs.readers import ExportReaderFacts, export_facts

# Order of the attention list: the worst first.
SEVERITY = ("paused", "held", "not_reading", "stale", "never_synced")
# A connection that has not synced for this many of its intervals is "stale".
STALE_INTERVALS = 2
# Blocks that may be a guest's stay: reservations, and Booking.com's closures (its feeds do not
# tell bookings from closures). Two of these on the same night from different sources may be a
# double booking.
BOOKING_LIKE = Q(kind=BlockKind.RESERVED) | Q(source__portal__slug="booking")


@dataclass(frozen=True)
class AttentionItem:
    connection: Connection
    kind: str
    words: str
    since: datetime | None


@dataclass
class Conflict:
    property: Property
    start: date
    end: date
    sources: list[str] = field(default_factory=list)


@dataclass
class DashboardSummary:
    counts: dict[str, int]
    attention: list[AttentionItem]
    attention_more: int
    conflicts: list[Conflict]

    @property
    def all_good(self) -> bool:
        return not self.attention and not self.conflicts


_CONNECTION_FIELDS = (
    "pk", "enabled", "paused_at", "held_removals", "held_since", "last_success_at", "sync_interval_minutes",
    "direction", "created_at", "portal__pickup_delay_max_minutes",
)


def _classify(row: SimpleNamespace, facts: ExportReaderFacts | None, now: datetime) -> tuple[str, list[str]]:
    """A connection's state, and the problems that need attention, from its narrow row."""
    problems = []
    if not row.enabled:
        return "switched_off", problems
    imports = row.direction != Connection.Direction.EXPORT_ONLY
    interval = timedelta(minutes=row.sync_interval_minutes)
    if row.paused_at:
        state = "paused"
        problems.append("paused")
    elif imports and row.last_success_at is None:
        state = "never_synced"
        if now - row.created_at > interval * STALE_INTERVALS:
            problems.append("never_synced")
    else:
        state = "working"
        if imports and now - row.last_success_at > interval * STALE_INTERVALS:
            problems.append("stale")
    if row.held_removals:
        problems.append("held")
    if facts and facts.needs_attention:
        problems.append("not_reading")
    return state, problems


def _tokens_by_connection(account: Account, now: datetime) -> dict[int, list]:
    rows = (
        ExportToken.objects.serving(now)
        .filter(property__account=account, connection__isnull=False)
        .values_list("connection_id", "created_at", "expires_at", "last_read_at", "last_reader")
    )
    tokens = defaultdict(list)
    for connection_id, created_at, expires_at, last_read_at, last_reader in rows:
        tokens[connection_id].append(
            SimpleNamespace(created_at=created_at, expires_at=expires_at, last_read_at=last_read_at, last_reader=last_reader)
        )
    return tokens


def dashboard_summary(*, user, now: datetime | None = None, limit: int = 50) -> DashboardSummary:
    now = now or timezone.now()
    account = Account.of_user(user)
    counts = Counter(dict.fromkeys(("working", "paused", "switched_off", "never_synced", *SEVERITY[1:4]), 0))
    if account is None:
        return DashboardSummary(counts=dict(counts), attention=[], attention_more=0, conflicts=[])
    tokens = _tokens_by_connection(account, now)
    flagged: list[tuple[int, datetime, int, str]] = []
    for values in Connection.objects.for_account(account).values_list(*_CONNECTION_FIELDS):
        row = SimpleNamespace(**dict(zip([f.replace("portal__", "") for f in _CONNECTION_FIELDS], values, strict=True)))
        facts = export_facts(tokens=tokens.get(row.pk, []), pickup_max_minutes=row.pickup_delay_max_minutes, now=now)
        state, problems = _classify(row, facts, now)
        counts[state] += 1
        counts.update(p for p in problems if p in ("held", "not_reading", "stale"))
        if problems:
            worst = min(problems, key=SEVERITY.index)
            since = {"paused": row.paused_at, "held": row.held_since}.get(worst) or row.last_success_at or row.created_at
            flagged.append((SEVERITY.index(worst), since, row.pk, worst))
    flagged.sort(key=lambda item: (item[0], item[1]))
    shown = flagged[:limit]
    return DashboardSummary(
        counts=dict(counts),
        attention=_attention_items(shown, tokens, now),
        attention_more=len(flagged) - len(shown),
        conflicts=account_conflicts(account=account, today=timezone.localdate()),
    )


def _attention_items(shown: list, tokens: dict, now: datetime) -> list[AttentionItem]:
    connections = Connection.objects.select_related("property", "portal").in_bulk([item[2] for item in shown])
    items = []
    for _severity, since, pk, kind in shown:
        connection = connections[pk]
        facts = export_facts(tokens=tokens.get(pk, []), pickup_max_minutes=connection.portal.pickup_delay_max_minutes, now=now)
        items.append(AttentionItem(connection=connection, kind=kind, words=attention_words(connection, kind, facts), since=since))
    return items


def attention_words(connection: Connection, kind: str, facts: ExportReaderFacts | None) -> str:
    portal = connection.portal.name
    if kind == "paused":
        return describe(connection.pause_reason, connection.pause_params, portal=portal)
    if kind == "held":
        return ngettext(
            "%(portal)s's calendar suddenly lost %(n)d future booking or block. It is kept until %(portal)s says the same again, or you accept the change.",
            "%(portal)s's calendar suddenly lost %(n)d future bookings or blocks. They are kept until %(portal)s says the same again, or you accept the change.",
            connection.held_removals,
        ) % {"portal": portal, "n": connection.held_removals}
    if kind == "not_reading":
        return describe_readers(facts, portal=portal)
    if kind == "stale":
        return _("No successful sync for a while: the last one was %(ago)s ago.") % {
            "ago": timesince(connection.last_success_at)
        }
    return _("This sync has never worked yet.")


def account_conflicts(*, account: Account, today: date, limit: int = 20) -> list[Conflict]:
    """Nights that two sources both say are booked: possible double bookings, worst first."""
    booked = Block.objects.current().filter(BOOKING_LIKE, end_date__gt=today).annotate(src=Coalesce("source_id", Value(0)))
    clashing = booked.filter(
        property_id=OuterRef("property_id"), start_date__lt=OuterRef("end_date"), end_date__gt=OuterRef("start_date")
    ).exclude(src=OuterRef("src"))
    rows = (
        booked.filter(property__account=account)
        .filter(Exists(clashing))
        .select_related("property", "source__portal")
        .order_by("start_date", "property_id")[: limit * 2]
    )
    return _group_conflicts(rows)[:limit]


def _group_conflicts(blocks) -> list[Conflict]:
    """Overlapping clashing blocks of one property become one conflict naming every source."""
    conflicts: list[Conflict] = []
    open_by_property: dict[int, Conflict] = {}
    for block in blocks:
        name = block.source.portal.name if block.source_id else _("made here")
        current = open_by_property.get(block.property_id)
        if current and block.start_date < current.end:
            current.end = max(current.end, block.end_date)
            if name not in current.sources:
                current.sources.append(name)
            continue
        current = Conflict(property=block.property, start=block.start_date, end=block.end_date, sources=[name])
        open_by_property[block.property_id] = current
        conflicts.append(current)
    return conflicts


def property_list_with_health(*, user, search: str = "") -> QuerySet[Property]:
    """The account's properties with their connections counted by state, in one query."""
    properties = Property.objects.for_user(user)
    if search:
        properties = properties.filter(name__icontains=search.strip())
    enabled = Q(connections__enabled=True)
    return properties.annotate(
        connection_count=Count("connections"),
        paused_count=Count("connections", filter=enabled & Q(connections__paused_at__isnull=False)),
        off_count=Count("connections", filter=Q(connections__enabled=False)),
        held_count=Count("connections", filter=Q(connections__held_removals__gt=0)),
    ).order_by("name", "pk")


@dataclass
class CalendarDay:
    day: date
    in_month: bool
    sources: list[int] = field(default_factory=list)  # colour slots; -1 for blocks made here
    conflict: bool = False


def property_month(*, property: Property, month: date) -> tuple[list[list[CalendarDay]], dict[int, str]]:
    """A month of the property's taken nights, by source, with possible double bookings marked.

    Returns the weeks (Monday first) and the legend: colour slot -> source name.
    """
    first = month.replace(day=1)
    last = first.replace(day=calendar_module.monthrange(first.year, first.month)[1])
    connections = list(property.connections.select_related("portal").order_by("portal__position", "pk"))
    slot = {c.pk: index % 6 for index, c in enumerate(connections)}
    legend = {slot[c.pk]: c.portal.name for c in connections}
    blocks = Block.objects.current().filter(property=property, start_date__lte=last, end_date__gt=first).values_list(
        "source_id", "start_date", "end_date", "kind", "source__portal__slug"
    )
    by_day: dict[date, list[tuple[int, bool]]] = defaultdict(list)
    for source_id, start, end, kind, portal_slug in blocks:
        booking_like = kind == BlockKind.RESERVED or portal_slug == "booking"
        day = max(start, first)
        while day < end and day <= last:
            by_day[day].append((slot.get(source_id, -1), booking_like))
            day += timedelta(days=1)
    weeks = []
    for week in calendar_module.Calendar(firstweekday=0).monthdatescalendar(first.year, first.month):
        row = []
        for day in week:
            taken = by_day.get(day, [])
            booked_sources = {s for s, booking_like in taken if booking_like}
            row.append(
                CalendarDay(day=day, in_month=day.month == first.month, sources=sorted({s for s, _ in taken}),
                            conflict=len(booked_sources) > 1)
            )
        weeks.append(row)
    if any(slot == -1 for day_list in by_day.values() for slot, _ in day_list):
        legend[-1] = _("Made here")
    return weeks, legend
