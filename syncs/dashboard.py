"""Reads for the overview and the property pages: what needs the operator's attention first.

Built for accounts with thousands of connections: a fixed number of queries whatever the
number of rows (a few narrow ones, the classification done in Python), and full objects
fetched only for the handful of rows the page shows.
"""

from __future__ import annotations

import calendar as calendar_module
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from syncs.explain import describe, describe_readers, since
from syncs.models import Account, Block, BlockKind, Connection, ExportToken, Portal, Property
from syncs.readers import DEFAULT_PICKUP_MINUTES, STALE_FACTOR, ExportReaderFacts, export_facts

# Order of the attention list: the worst first.
SEVERITY = ("paused", "held", "not_reading", "stale", "never_synced")
# A connection that has not synced for this many of its intervals is "stale".
STALE_INTERVALS = 2


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


def _stale(connections: QuerySet[Connection], now: datetime) -> Q:
    """Importing, running syncs whose last success is older than STALE_INTERVALS of their interval.

    Intervals are per connection but few distinct values exist, so this is a short OR.
    """
    intervals = connections.order_by().values_list("sync_interval_minutes", flat=True).distinct()
    late = Q(pk__in=[])
    for minutes in intervals:
        late |= Q(sync_interval_minutes=minutes, last_success_at__lt=now - timedelta(minutes=minutes * STALE_INTERVALS))
    return late & Q(enabled=True, paused_at__isnull=True) & ~Q(direction=Connection.Direction.EXPORT_ONLY)


def _never_synced(connections: QuerySet[Connection], now: datetime) -> Q:
    """Syncs that have not worked once, long after they were created."""
    intervals = connections.order_by().values_list("sync_interval_minutes", flat=True).distinct()
    old = Q(pk__in=[])
    for minutes in intervals:
        old |= Q(sync_interval_minutes=minutes, created_at__lt=now - timedelta(minutes=minutes * STALE_INTERVALS))
    return old & Q(enabled=True, paused_at__isnull=True, last_success_at__isnull=True) & ~Q(
        direction=Connection.Direction.EXPORT_ONLY
    )


def _not_reading(account: Account, now: datetime) -> QuerySet[Connection]:
    """Switched-on exporting connections whose portal never read, or stopped reading, our URL, or
    still reads the old one after a rotation (readers.export_facts says the same per connection)."""
    late = Q(pk__in=[])
    for portal_id, pickup in Portal.objects.values_list("pk", "pickup_delay_max_minutes"):
        expected = now - timedelta(minutes=(pickup or DEFAULT_PICKUP_MINUTES) * STALE_FACTOR)
        late |= Q(connection__portal_id=portal_id) & (
            Q(last_read_at__isnull=True, created_at__lt=expected) | Q(last_read_at__lt=expected)
        )
    current = ExportToken.objects.filter(property__account=account, connection__isnull=False, expires_at__isnull=True)
    newer = current.filter(connection_id=OuterRef("connection_id"), created_at__lt=OuterRef("last_read_at"))
    old_url_read = ExportToken.objects.serving(now).filter(
        property__account=account, expires_at__isnull=False, last_read_at__isnull=False
    ).filter(Exists(newer))
    ids = current.filter(late).order_by().values("connection_id").union(old_url_read.order_by().values("connection_id"))
    return Connection.objects.for_account(account).filter(enabled=True, pk__in=ids)


def dashboard_summary(*, user, now: datetime | None = None, limit: int = 50) -> DashboardSummary:
    now = now or timezone.now()
    account = Account.of_user(user)
    if account is None:
        empty = dict.fromkeys(("working", "paused", "switched_off", "never_synced", "held", "not_reading", "stale"), 0)
        return DashboardSummary(counts=empty, attention=[], attention_more=0, conflicts=[])
    connections = Connection.objects.for_account(account)
    running = Q(enabled=True, paused_at__isnull=True)
    problems = {
        "paused": Q(enabled=True, paused_at__isnull=False),
        "held": Q(enabled=True, held_removals__gt=0),
        "not_reading": Q(pk__in=_not_reading(account, now).values("pk")),
        "stale": _stale(connections, now),
        "never_synced": _never_synced(connections, now),
    }
    counts = connections.aggregate(
        total=Count("pk"),
        switched_off=Count("pk", filter=Q(enabled=False)),
        never_synced=Count("pk", filter=running & Q(last_success_at__isnull=True) & ~Q(direction=Connection.Direction.EXPORT_ONLY)),
        troubled=Count("pk", filter=_any(problems.values())),
        **{name: Count("pk", filter=problems[name]) for name in ("paused", "held", "not_reading", "stale")},
    )
    counts["working"] = counts["total"] - counts["switched_off"] - counts["paused"] - counts["never_synced"]
    attention = _attention(connections, problems, now, limit)
    return DashboardSummary(
        counts=counts,
        attention=attention,
        attention_more=max(counts["troubled"] - len(attention), 0),
        conflicts=account_conflicts(account=account, today=timezone.localdate()),
    )


def _any(conditions) -> Q:
    combined = Q(pk__in=[])
    for condition in conditions:
        combined |= condition
    return combined


def _attention(connections: QuerySet[Connection], problems: dict[str, Q], now: datetime, limit: int) -> list[AttentionItem]:
    """The worst problems first, oldest first within a kind; each connection once, at its worst."""
    since_field = {"paused": "paused_at", "held": "held_since", "stale": "last_success_at", "never_synced": "created_at"}
    items: list[AttentionItem] = []
    seen: set[int] = set()
    for kind in SEVERITY:
        if len(items) >= limit:
            break
        rows = connections.filter(problems[kind]).exclude(pk__in=seen).select_related("property", "portal")
        rows = rows.order_by(since_field.get(kind, "pk"), "pk")[: limit - len(items)]
        facts = _facts_for(rows, now)
        for connection in rows:
            seen.add(connection.pk)
            moment = getattr(connection, since_field[kind]) if kind in since_field else facts[connection.pk].last_read_at
            words = attention_words(connection, kind, facts.get(connection.pk))
            items.append(AttentionItem(connection=connection, kind=kind, words=words, since=moment))
    return items


def _facts_for(connections, now: datetime) -> dict[int, ExportReaderFacts]:
    tokens: dict[int, list[ExportToken]] = defaultdict(list)
    for token in ExportToken.objects.serving(now).filter(connection__in=[c.pk for c in connections]):
        tokens[token.connection_id].append(token)
    facts = {}
    for connection in connections:
        found = export_facts(tokens=tokens[connection.pk], pickup_max_minutes=connection.portal.pickup_delay_max_minutes, now=now)
        if found is not None:
            facts[connection.pk] = found
    return facts


def attention_words(connection: Connection, kind: str, facts: ExportReaderFacts | None) -> str:
    portal = connection.portal.name
    if kind == "paused":
        words = describe(connection.pause_reason, connection.pause_params, portal=portal)
        if connection.ready_to_resume_at:
            words += " " + _("Its calendar works again: ready to resume.")
        return words
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
            "ago": since(connection.last_success_at)
        }
    return _("This sync has never worked yet.")


def booking_like() -> Q:
    """Blocks that may be a guest's stay: reservations, and Booking.com's closures (its feeds do
    not tell bookings from closures). Two of these on one night from different sources may be a
    double booking."""
    booking = Portal.objects.filter(slug="booking").values_list("pk", flat=True).first()
    return Q(kind=BlockKind.RESERVED) | Q(source__portal_id=booking)


def account_conflicts(*, account: Account, today: date, limit: int = 20) -> list[Conflict]:
    """Nights that two sources both say are booked: possible double bookings, soonest first.

    Each pair has at least one imported block, and is found from that side: another source's
    block, or one made here, over the same nights. Two blocks made here never clash (the
    operator's own doing).
    """
    booked = Block.objects.current().filter(booking_like(), end_date__gt=today)
    clashing = booked.filter(
        property_id=OuterRef("property_id"), start_date__lt=OuterRef("end_date"), end_date__gt=OuterRef("start_date")
    ).filter(Q(source__isnull=True) | ~Q(source_id=OuterRef("source_id")))
    rows = (
        booked.filter(property__account=account, source__isnull=False)
        .filter(Exists(clashing))
        .select_related("property", "source__portal")
        .order_by("start_date", "property_id")[: limit * 2]
    )
    conflicts = _group_conflicts(rows)
    return conflicts[:limit]


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
