"""The one way to change what a sync reads, or how it reads it.

A sync reads its connection (link, portal, direction, interval, switch), its property's time
zone and its portal's labels once, when it takes the lease, and records its result at the end,
after a fetch that may take many seconds. Every change to any of these goes through a function
here, which writes it together with a new ``Connection.settings_version`` for every connection
it concerns. A sync records only ``WHERE settings_version = <the version it read>``, so the
result of a poll made with the old settings (its validators, its schedule, its nights) is
dropped instead of written over the change, whichever page, form, admin or task made it.

Each change also gives the lease back, so that the sync with the new settings need not wait for
the dropped one, and says what the next sync must do:

* a change of what the feed is, or of how its text becomes nights (link, portal, zone, labels),
  forgets the portal's validators and the body's fingerprint: the next sync reads it in full;
* a change of how or when the sync runs (any of the above, direction, interval, switching on)
  brings the next sync forward to now.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import F, QuerySet
from django.utils import timezone

from syncs.engine.lease import LEASE_RELEASED
from syncs.models import Account, Connection, Portal, Property
from syncs.sync_state import state_record

# What the next sync must forget to read its feed from scratch: no 304 on the old feed's ETag,
# no "same body" shortcut, no knowledge of whether the old link's https:// variant worked.
FRESH_READ = {"etag": "", "last_modified": "", "body_fingerprint": "", "https_works": None}
# Connection fields that decide which feed a sync reads and how it turns it into nights.
READ_FROM_SCRATCH = frozenset({"import_url", "portal", "portal_id"})
# Connection fields a sync reads: a change of any of them voids the polls made before it.
SYNC_SETTINGS = READ_FROM_SCRATCH | {"direction", "sync_interval_minutes", "enabled", "property", "property_id"}
# Property and portal fields a sync reads.
PROPERTY_SYNC_SETTINGS = frozenset({"timezone"})
PORTAL_SYNC_SETTINGS = frozenset({"labels"})


def _void_older_polls(*, read_from_scratch: bool, sync_now: bool, now: datetime) -> dict:
    updates: dict = {"settings_version": F("settings_version") + 1, **LEASE_RELEASED}
    if read_from_scratch:
        updates.update(FRESH_READ)
    if sync_now:
        updates["next_sync_at"] = now
    return updates


def connection_settings_update(
    *, connection_id: int, values: dict, now: datetime | None = None, expected_version: int | None = None
) -> list[str]:
    """Write ``values`` (connection fields by name) to one connection; if any of them is read by
    a sync, in the same statement void the polls made before. Returns the sync settings changed.

    ``values`` may set engine fields of its own (a resume sets ``next_sync_at`` and clears the
    pause): they win over the defaults above. Switching off does not bring a sync forward.
    With ``expected_version``, nothing is written (and nothing returned) unless the connection's
    settings are still that version: nobody changed them since it was read.
    """
    now = now or timezone.now()
    changed = sorted(SYNC_SETTINGS & set(values))
    updates = dict(values)
    if changed:
        switched_off = values.get("enabled") is False
        updates = {
            **_void_older_polls(
                read_from_scratch=bool(READ_FROM_SCRATCH & set(values)), sync_now=not switched_off, now=now
            ),
            **values,
        }
    rows = Connection.objects.filter(pk=connection_id)
    if expected_version is not None:
        rows = rows.filter(settings_version=expected_version)
    if not updates:
        return changed
    if not rows.update(**updates):
        return [] if expected_version is not None else changed
    # Whatever was written (a switch, a pause cleared, the interval, the direction...), the
    # sync's state is decided again on it.
    state_record([connection_id], now=now)
    return changed


def property_settings_update(*, property_id: int, values: dict, now: datetime | None = None) -> list[str]:
    """Write ``values`` to one property; a new time zone makes every feed of it read again from
    scratch, at once (its text becomes other nights)."""
    now = now or timezone.now()
    Property.objects.filter(pk=property_id).update(**values)
    if "timezone" in values:
        for account_id in Property.all_objects.filter(pk=property_id).values_list("account_id", flat=True):
            Account.main_time_zone_changed(account_id)
    changed = sorted(PROPERTY_SYNC_SETTINGS & set(values))
    if changed:
        _void(Connection.objects.filter(property_id=property_id), now=now)
    return changed


def portal_settings_update(*, portal_id: int, values: dict, now: datetime | None = None) -> list[str]:
    """Write ``values`` to one portal; new labels make every feed of the portal read again. A new
    pick-up delay changes when its portal is late reading our calendars: the states of its syncs
    are decided again by the next sweep (there may be thousands)."""
    now = now or timezone.now()
    Portal.objects.filter(pk=portal_id).update(**values)
    if {"pickup_delay_max_minutes"} & set(values):
        Connection.all_objects.filter(portal_id=portal_id).exclude(direction=Connection.Direction.IMPORT_ONLY).update(
            state_changes_at=now
        )
    changed = sorted(PORTAL_SYNC_SETTINGS & set(values))
    if changed:
        _void(Connection.objects.filter(portal_id=portal_id), now=now)
    return changed


def connections_removed_update(*, connections: QuerySet, values: dict, now: datetime | None = None) -> int:
    """Remove or restore syncs (``values``: their ``archived_at`` and ``archived_by``;
    syncs.removal): in the same statement, a poll under way with the sync as it was records
    nothing and gives its lease back, and a restored sync reads its portal at once. Returns how
    many rows changed (``connections`` says which may: live ones to remove, removed ones to restore)."""
    now = now or timezone.now()
    return connections.update(**_void_older_polls(read_from_scratch=False, sync_now=True, now=now), **values)


def _void(connections: QuerySet, *, now: datetime) -> None:
    importing = connections.exclude(direction=Connection.Direction.EXPORT_ONLY)
    importing.update(**_void_older_polls(read_from_scratch=True, sync_now=True, now=now))


def changed_fields(instance, values: dict) -> dict:
    """The subset of ``values`` that differs from what ``instance`` holds."""
    return {name: value for name, value in values.items() if getattr(instance, name) != value}
