"""The calendars we publish: each exporting connection's URL gives the property's taken nights
from every other source; the property-wide URL gives all of them.

Exported events say only that the nights are taken: no names, no phone digits, no links, from
any portal. Each calendar is built once per version (in each web process) and kept in memory:
the version comes from the database on every request, so a kept calendar is never stale.
"""

from __future__ import annotations

import functools
import hashlib
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.http import http_date
from icalendar import Calendar, Event

from syncs.export_tokens import ServingToken
from syncs.models import Block

PRODID = "-//channelmgr//iCal availability sync 1.0//EN"
PROPERTY_WIDE_SUMMARY = "Not available"
# Calendars kept per web process, least recently read dropped first: a few MB at 66 KB each.
KEPT_CALENDARS = 300


@dataclass(frozen=True)
class ExportedCalendar:
    body: bytes
    etag: str
    last_modified: datetime
    last_modified_header: str  # formatted once, not on every request


def merge_nights(ranges: Iterable[tuple[date, date]]) -> list[tuple[date, date]]:
    """Overlapping or touching ranges become one: a portal only needs to know what is taken."""
    merged: list[list[date]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def event_uid(*, property_id: int, start: date) -> str:
    """Stable for the same first night, under our own domain, so our blocks coming back through
    a portal are recognised by the import engine and dropped."""
    seed = hashlib.sha256(f"{settings.SECRET_KEY}:{property_id}:{start.isoformat()}".encode()).hexdigest()[:24]
    return f"{seed}@{settings.EXPORT_UID_DOMAIN}"


def build_calendar(
    *, name: str, property_id: int, nights: list[tuple[date, date]], summary: str, stamp: datetime
) -> bytes:
    """RFC 5545 with what every portal accepts: date-only events, exclusive DTEND, CRLF, folded lines."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", name)
    for start, end in nights:
        event = Event()
        event.add("uid", event_uid(property_id=property_id, start=start))
        event.add("dtstamp", stamp)
        event.add("dtstart", start)
        event.add("dtend", end)
        event.add("summary", summary)
        calendar.add_component(event)
    return calendar.to_ical()


def exported_nights(*, token: ServingToken, today: date) -> list[tuple[date, date]]:
    """Nights from yesterday to the horizon, from every source except the token's own connection."""
    # Current blocks: a removed sync's nights leave at once (Block.current).
    blocks = Block.objects.current().filter(
        property_id=token.property_id,
        end_date__gt=today - timedelta(days=1),
        start_date__lt=today + timedelta(days=settings.EXPORT_HORIZON_DAYS),
    )
    if token.connection_id:
        # No echo: a portal is never sent back the nights it told us about.
        blocks = blocks.exclude(source_id=token.connection_id)
    return merge_nights(blocks.values_list("start_date", "end_date"))


def calendar_export(*, token: ServingToken, today: date | None = None) -> ExportedCalendar:
    """The token's calendar, built once per calendar version (and per day, as the horizon moves)."""
    zone = zoneinfo.ZoneInfo(token.property_timezone)
    today = today or timezone.localdate(timezone=zone)
    summary = token.export_summary if token.connection_id else PROPERTY_WIDE_SUMMARY
    # Everything the calendar is made of. The token's random nonce, never reused, keeps a kept
    # calendar from ever outliving its token (a database may hand a deleted property's id to a
    # new one); the version is bumped in the transaction that changes the property's blocks.
    version = (
        token.nonce, token.calendar_version, token.calendar_changed_at, today, summary,
        token.property_name, token.property_timezone,
    )  # fmt: skip
    return _calendar_build(token=token, today=today, zone=zone, summary=summary, version=version)


# Kept by its arguments, the version among them. Not Django's cache: its local-memory backend
# pickles the body in and out on every read, and nothing here needs sharing between processes.
@functools.lru_cache(maxsize=KEPT_CALENDARS)
def _calendar_build(
    *, token: ServingToken, today: date, zone: zoneinfo.ZoneInfo, summary: str, version: tuple
) -> ExportedCalendar:
    body = build_calendar(
        name=token.property_name, property_id=token.property_id, nights=exported_nights(token=token, today=today),
        summary=summary, stamp=token.calendar_changed_at,
    )
    # A new day moves the horizon, so the calendar is at least as new as today's midnight.
    midnight = datetime.combine(today, time(), tzinfo=zone).astimezone(UTC)
    last_modified = max(token.calendar_changed_at, midnight).replace(microsecond=0)
    return ExportedCalendar(
        body=body,
        etag='"' + hashlib.sha256("\0".join(map(str, version)).encode()).hexdigest()[:32] + '"',
        last_modified=last_modified,
        last_modified_header=http_date(last_modified.timestamp()),
    )
