"""Removing a sync or a property, safely; restoring it; deleting it for good later.

Removal archives, it never deletes at once:

1. The row gets ``archived_at`` and ``archived_by``. ``models.LiveManager`` then leaves it out of
   every list, count, tile, timeline, metric, email, digest, webhook scan, double-booking search
   and task. A removed property takes its live syncs with it, at the same moment: restoring the
   property brings back exactly those (a sync removed before stays removed).
2. Its nights leave the property's other exports at once: ``Block.current()`` drops a removed
   sync's blocks, and the calendar version moves on in the same transaction, so that no portal
   is told "304 Not Modified" about the old calendar. Its own export URL, and every URL of a
   removed property, answers 410 Gone (``syncs.views.export``).
3. A poll under way with the sync as it was records nothing, and gives its lease back
   (``sync_settings.connections_removed_update``).
4. Its history stays: its page answers, saying when and by whom it was removed, until when it
   can be restored, and what it did.
5. Restoring, within RESTORE_DAYS, puts it back as it was: its blocks take their nights again
   and its export URL answers again; it reads its portal at once. Refused while another sync of
   the account imports its link (a link belongs to one sync of the account).
6. After RESTORE_DAYS, ``prune`` deletes it for good, with its history, and leaves one activity
   entry that names it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from syncs.activity import activity_record
from syncs.blocks import property_calendar_changed
from syncs.collation import sort_key
from syncs.editing import account_links_lock, link_use, words_with_links
from syncs.explain import day, day_of
from syncs.export import merge_nights
from syncs.models import RESTORE_DAYS, Account, Activity, Block, Connection, Portal, Property
from syncs.sync_labels import label_syncs
from syncs.sync_settings import connections_removed_update

# --------------------------------------------------------------------------- removing


def connections_remove(*, user, connections: Iterable[Connection], each_recorded: bool = True,
                       now: datetime | None = None) -> list[int]:
    """Remove these syncs (already scoped to the operator's account), in the caller's
    transaction or one of their own; returns the ids of those removed now (one removed a moment
    ago by someone else is left as it is). ``each_recorded``: an activity entry per sync (a bulk
    action records one entry for the lot)."""
    now = now or timezone.now()
    connections = [c for c in connections if c.archived_at is None]
    removed: list[int] = []
    with transaction.atomic():
        for connection in connections:
            # One row at a time: the rows that change are exactly those still live now.
            if connections_removed_update(
                connections=Connection.objects.filter(pk=connection.pk),
                values={"archived_at": now, "archived_by": _who(user)}, now=now,
            ):
                removed.append(connection.pk)
                connection.archived_at, connection.archived_by = now, _who(user)
                if each_recorded:
                    activity_record(user=user, action=Activity.Action.CONNECTION_REMOVED, connection=connection)
        for property_id in {c.property_id for c in connections if c.pk in removed}:
            property_calendar_changed(property_id=property_id, now=now)
    return removed


def property_remove(*, user, property: Property, now: datetime | None = None) -> int | None:
    """Remove a property with its live syncs; returns how many syncs went with it (None: it was
    removed a moment ago by someone else)."""
    now = now or timezone.now()
    with transaction.atomic():
        if not Property.objects.filter(pk=property.pk).update(archived_at=now, archived_by=_who(user)):
            return None
        count = connections_removed_update(
            connections=Connection.objects.filter(property_id=property.pk),
            values={"archived_at": now, "archived_by": _who(user)}, now=now,
        )
        property_calendar_changed(property_id=property.pk, now=now)
        Account.main_time_zone_changed(property.account_id)
        activity_record(user=user, action=Activity.Action.PROPERTY_REMOVED, property=property, params={"syncs": count})
    property.archived_at, property.archived_by = now, _who(user)
    return count


def _who(user):
    return user if user is not None and user.is_authenticated else None


# --------------------------------------------------------------------------- restoring


def restore_deadline_passed(removed: Property | Connection, *, now: datetime | None = None) -> bool:
    return removed.restorable_until is not None and removed.restorable_until <= (now or timezone.now())


def connection_restore_problem(connection: Connection, *, now: datetime | None = None) -> str:
    """Why this removed sync cannot be restored now, in words ("" when it can)."""
    prop = connection.property
    if restore_deadline_passed(connection, now=now):
        return _("It was removed more than %(days)d days ago: it can no longer be restored, and is deleted for good "
                 "at the next clean-up.") % {"days": RESTORE_DAYS}
    if prop.archived_at is not None:
        if prop.archived_at == connection.archived_at:
            return _("It was removed with its property, %(property)s: restore the property, and its syncs come "
                     "back with it.") % {"property": prop.name}
        return _("Its property, %(property)s, is removed too: restore the property first.") % {"property": prop.name}
    holder = link_use(account_id=prop.account_id, import_url=connection.import_url, exclude=connection).holder
    return link_now_taken_words(holder) if holder else ""


def link_now_taken_words(holder: Connection) -> str:
    """Why a removed sync cannot come back: another sync imports its link now (named, with links)."""
    return words_with_links(
        _("Its link is now imported by the %(portal)s sync of %(property)s, and a portal's link belongs to one "
          "sync: remove that sync first, or add this portal again with another link."),
        portal=(holder.portal.display_name, reverse("connection-detail", args=[holder.pk])),
        property=(holder.property.name, reverse("property-detail", args=[holder.property_id])),
    )


def connection_restore(*, user, connection: Connection, now: datetime | None = None) -> list[str]:
    """Bring back a removed sync as it was; returns what is worth telling (another account
    imports its link too). Raises ValidationError, in words, when it cannot come back."""
    now = now or timezone.now()
    with transaction.atomic():
        account_links_lock(account_id=connection.property.account_id)
        problem = connection_restore_problem(connection, now=now)
        if problem:
            raise ValidationError(problem)
        use = link_use(account_id=connection.property.account_id, import_url=connection.import_url, exclude=connection)
        if not connections_removed_update(
            connections=Connection.all_objects.filter(pk=connection.pk, archived_at=connection.archived_at),
            values={"archived_at": None, "archived_by": None}, now=now,
        ):
            raise ValidationError(_("This sync was restored or deleted a moment ago: look at it again."))
        property_calendar_changed(property_id=connection.property_id, now=now)
        activity_record(user=user, action=Activity.Action.CONNECTION_RESTORED, connection=connection)
    connection.archived_at = connection.archived_by = None
    return _hand_over_warnings([use.other_accounts])


@dataclass(frozen=True)
class PropertyRestored:
    restored: int  # syncs that came back with it
    kept: list[tuple[Connection, str]]  # syncs removed with it that stay removed, and why
    warnings: list[str]


def property_restore_problem(property: Property, *, now: datetime | None = None) -> str:
    if restore_deadline_passed(property, now=now):
        return _("It was removed more than %(days)d days ago: it can no longer be restored, and is deleted for good "
                 "at the next clean-up.") % {"days": RESTORE_DAYS}
    return ""


def property_restore(*, user, property: Property, now: datetime | None = None) -> PropertyRestored:
    """Bring back a removed property and the syncs removed with it, as they were; a sync whose
    link another sync of the account imports now stays removed (said why). Raises
    ValidationError, in words, when the property cannot come back."""
    now = now or timezone.now()
    with transaction.atomic():
        account_links_lock(account_id=property.account_id)
        problem = property_restore_problem(property, now=now)
        if problem:
            raise ValidationError(problem)
        back, kept, elsewhere = [], [], []
        for connection in removed_with(property):
            use = link_use(account_id=property.account_id, import_url=connection.import_url, exclude=connection)
            if use.holder is not None:
                kept.append((connection, link_now_taken_words(use.holder)))
            else:
                back.append(connection.pk)
                elsewhere.append(use.other_accounts)
        if not Property.all_objects.filter(pk=property.pk, archived_at=property.archived_at).update(
            archived_at=None, archived_by=None
        ):
            raise ValidationError(_("This property was restored or deleted a moment ago: look at it again."))
        connections_removed_update(
            connections=Connection.all_objects.filter(pk__in=back), values={"archived_at": None, "archived_by": None},
            now=now,
        )
        property_calendar_changed(property_id=property.pk, now=now)
        Account.main_time_zone_changed(property.account_id)
        activity_record(
            user=user, action=Activity.Action.PROPERTY_RESTORED, property=property,
            params={"syncs": len(back), "kept": len(kept)},
        )
    property.archived_at = property.archived_by = None
    return PropertyRestored(restored=len(back), kept=kept, warnings=_hand_over_warnings(elsewhere))


def removed_with(property: Property) -> list[Connection]:
    """The syncs removed together with this removed property (those restoring it brings back)."""
    if property.archived_at is None:
        return []
    return list(
        Connection.all_objects.filter(property=property, archived_at=property.archived_at)
        .select_related("property", "portal").order_by("portal__position", "pk")
    )


def _hand_over_warnings(other_accounts: list[bool]) -> list[str]:
    if not any(other_accounts):
        return []
    return [_("Another account of this service imports the link of a restored sync too: both block the same nights. "
              "If the property was handed over, one of the two accounts should remove its sync.")]


# --------------------------------------------------------------------------- the confirmation

# The confirmation page lists this many stays of nights per calendar, and counts the rest.
NIGHTS_SHOWN = 6


@dataclass(frozen=True)
class ExportLoss:
    """The nights one of our exports stops giving: a portal's calendar, or the whole calendar."""

    name: str  # "Booking.com", "Booking.com 2"; "" for the property's whole calendar
    portal: Portal | None
    nights: list[tuple[date, date]]  # from today on, as check-in / check-out days

    @property
    def count(self) -> int:
        return sum((end - start).days for start, end in self.nights)

    @property
    def shown(self) -> list[str]:
        """The first few stays of nights, in words ("12 March to 15 March (check-out)")."""
        return [
            _("%(first)s to %(checkout)s (check-out)") % {"first": day(start, with_year=start.year != end.year),
                                                          "checkout": day(end)}
            for start, end in self.nights[:NIGHTS_SHOWN]
        ]

    @property
    def more(self) -> int:
        return max(len(self.nights) - NIGHTS_SHOWN, 0)

    @property
    def pickup(self) -> str:
        """How soon the portal usually reads our calendar again ("" when we do not know)."""
        portal = self.portal
        if portal is None or not portal.pickup_delay_max_minutes:
            return ""
        return _("%(portal)s usually takes %(low)s to %(high)s minutes.") % {
            "portal": portal.display_name, "low": portal.pickup_delay_min_minutes or 0,
            "high": portal.pickup_delay_max_minutes,
        }


@dataclass
class PropertyRemoval:
    """What removing some syncs (or the whole property) does to one property's calendars."""

    property: Property
    whole: bool  # the property itself goes
    removing: list[tuple[Connection, str]] = field(default_factory=list)  # the syncs, with their labels
    losses: list[ExportLoss] = field(default_factory=list)  # exports that stay, losing nights
    gone: list[ExportLoss] = field(default_factory=list)  # exports whose URL stops working, with their nights

    @property
    def nights_leaving(self) -> bool:
        return any(loss.nights for loss in self.losses)


def removal_effects(*, connections: Iterable[Connection] = (), property: Property | None = None) -> list[PropertyRemoval]:
    """What removing these syncs (or this property, with all its syncs) would do, property by
    property: which nights leave which of our exports, and which export URLs stop working.
    Three queries, whatever the number of syncs."""
    chosen = {c.pk for c in connections}
    if property is not None:
        properties = {property.pk: property}
    else:
        properties = {c.property_id: c.property for c in connections}
    if not properties:
        return []
    siblings = list(
        Connection.objects.filter(property_id__in=properties).select_related("portal").order_by("portal__position", "pk")
    )
    by_property: dict[int, list[Connection]] = defaultdict(list)
    for connection in siblings:
        by_property[connection.property_id].append(connection)
    today = min(prop.local_today() for prop in properties.values())
    blocks: dict[int, list[tuple[int | None, date, date]]] = defaultdict(list)
    for property_id, source, start, end in Block.objects.current().filter(
        property_id__in=properties, end_date__gt=today,
        start_date__lt=today + timedelta(days=settings.EXPORT_HORIZON_DAYS),
    ).values_list("property_id", "source_id", "start_date", "end_date"):
        blocks[property_id].append((source, start, end))
    effects = []
    language = translation.get_language()
    for property_id, prop in sorted(properties.items(), key=lambda item: (sort_key(item[1].name, language), item[0])):
        syncs = by_property[property_id]
        labels = label_syncs(syncs)
        whole = property is not None
        going = {c.pk for c in syncs} if whole else chosen & {c.pk for c in syncs}
        effect = PropertyRemoval(property=prop, whole=whole,
                                 removing=[(c, labels[c.pk].label) for c in syncs if c.pk in going])
        local_today = prop.local_today()
        stays = [(source, max(start, local_today), end) for source, start, end in blocks[property_id] if end > local_today]
        exports = [(c.pk, labels[c.pk].label, c.portal) for c in syncs if c.exports] + [(None, "", None)]
        for own, name, portal in exports:
            # What the export gives now (no echo: never the nights of its own sync), and after.
            before = merge_nights((start, end) for source, start, end in stays if source is None or source != own)
            if whole or own in going:
                effect.gone.append(ExportLoss(name=name, portal=portal, nights=before))
                continue
            after = merge_nights((start, end) for source, start, end in stays
                                 if (source is None or source != own) and source not in going)
            effect.losses.append(ExportLoss(name=name, portal=portal, nights=nights_minus(before, after)))
        effects.append(effect)
    return effects


def nights_minus(ranges: list[tuple[date, date]], kept: list[tuple[date, date]]) -> list[tuple[date, date]]:
    """The nights of ``ranges`` that ``kept`` does not cover (both merged, in order: merge_nights)."""
    freed: list[tuple[date, date]] = []
    index = 0
    for start, end in ranges:
        cursor = start
        while index < len(kept) and kept[index][1] <= cursor:
            index += 1
        look = index
        while look < len(kept) and kept[look][0] < end:
            if kept[look][0] > cursor:
                freed.append((cursor, kept[look][0]))
            cursor = max(cursor, kept[look][1])
            look += 1
        if cursor < end:
            freed.append((cursor, end))
    return freed


# --------------------------------------------------------------------------- for good


@dataclass(frozen=True)
class RemovedPruned:
    properties: int
    connections: int


def removed_prune(*, now: datetime | None = None) -> RemovedPruned:
    """Delete for good the properties and syncs removed more than RESTORE_DAYS ago, each with
    its history; one activity entry (with no user) names each, who removed it and when."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=RESTORE_DAYS)
    properties = connections = 0
    for prop in Property.all_objects.filter(archived_at__lt=cutoff).select_related("archived_by").order_by("pk"):
        with transaction.atomic():
            Activity.objects.create(
                account_id=prop.account_id, action=Activity.Action.REMOVED_DELETED, created_at=now,
                params=_deleted_params(prop, property_name=prop.name),
            )
            prop.delete()
        properties += 1
    for connection in (
        Connection.all_objects.filter(archived_at__lt=cutoff).select_related("property", "portal", "archived_by")
        .order_by("pk")
    ):
        with transaction.atomic():
            Activity.objects.create(
                account_id=connection.property.account_id, action=Activity.Action.REMOVED_DELETED, created_at=now,
                property=connection.property if connection.property.archived_at is None else None,
                params=_deleted_params(connection, property_name=connection.property.name, portal=connection.portal.name),
            )
            connection.delete()
        connections += 1
    return RemovedPruned(properties=properties, connections=connections)


def _deleted_params(removed: Property | Connection, *, property_name: str, portal: str = "") -> dict:
    return {
        "property": property_name, "portal": portal, "removed_at": removed.archived_at.isoformat(),
        "removed_by": removed.archived_by.get_username() if removed.archived_by else "",
    }


@dataclass(frozen=True)
class RemovedFacts:
    """What a removed property's or sync's page says: "Removed on <day> by <who>; restore until <day>"."""

    day: str
    by: str  # their user name; "" when the account was deleted since
    until: str
    problem: str  # why it cannot be restored now, in words ("" when it can)

    @property
    def restorable(self) -> bool:
        return not self.problem


def removed_facts(removed: Property | Connection, *, problem: bool = True, now: datetime | None = None) -> RemovedFacts:
    """``problem``: also work out whether it can be restored now (a query or two; lists do not)."""
    zone = removed.timezone if isinstance(removed, Property) else removed.property.timezone
    if not problem:
        problem = ""
    elif isinstance(removed, Property):
        problem = property_restore_problem(removed, now=now)
    else:
        problem = connection_restore_problem(removed, now=now)
    return RemovedFacts(
        day=day_of(removed.archived_at, zone), by=removed.archived_by.get_username() if removed.archived_by else "",
        until=day_of(removed.restorable_until, zone), problem=problem,
    )


def removed_of(property: Property) -> list[Connection]:
    """The property's removed syncs, latest removed first (its page lists them, to restore)."""
    return list(
        Connection.all_objects.filter(property=property, archived_at__isnull=False)
        .select_related("property", "portal", "archived_by").order_by("-archived_at", "-pk")
    )
