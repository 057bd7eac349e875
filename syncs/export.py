"""The calendars we publish: each exporting connection's URL gives the property's taken nights
from every other source; the property-wide URL gives all of them.

Exported events say only that the nights are taken: no names, no phone digits, no links, from
any portal. Bodies are built once per calendar version and served from the cache.
"""

from __future__ import annotations

import hashlib
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.core.cache import cache
from icalendar import Calendar, Event

from syncs.models import Block, ExportToken

PRODID = "-//channelmgr//iCal availability sync 1.0//EN"
PROPERTY_WIDE_SUMMARY = "Not available"
CACHE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class ExportedCalendar:
    body: bytes
    etag: str
    last_modified: datetime


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



def exported_nights(*, token: ExportToken, today: date) -> list[tuple[date, date]]:
    """Nights from yesterday to the horizon, from every source except the token's own connection."""
    blocks = Block.objects.filter(
        property_id=token.property_id,
        removed_at__isnull=True,
        end_date__gt=today - timedelta(days=1),
        start_date__lt=today + timedelta(days=settings.EXPORT_HORIZON_DAYS),
    )
    if token.connection_id:
        # No echo: a portal is never sent back the nights it told us about.
        blocks = blocks.exclude(source_id=token.connection_id)
    return merge_nights(blocks.values_list("start_date", "end_date"))


def calendar_export(*, token: ExportToken, today: date | None = None) -> ExportedCalendar:
    """The token's calendar, built once per calendar version (and per day, as the horizon moves)."""
    prop = token.property
    today = today or prop.local_today()
    summary = token.connection.export_summary if token.connection_id else PROPERTY_WIDE_SUMMARY
    # The token's random nonce, never reused, keeps a cached body from ever outliving its calendar
    # (a database may hand a deleted property's id to a new one).
    version = f"{token.nonce}:{prop.calendar_version}:{today.isoformat()}:{summary}"
    etag = '"' + hashlib.sha256(version.encode()).hexdigest()[:32] + '"'
    # A new day moves the horizon, so the calendar is at least as new as today's midnight.
    midnight = datetime.combine(today, time(), tzinfo=zoneinfo.ZoneInfo(prop.timezone)).astimezone(UTC)
    last_modified = max(prop.calendar_changed_at, midnight).replace(microsecond=0)
    key = f"export:{etag}"
    body = cache.get(key)
    if body is None:
        body = build_calendar(
            name=prop.name, property_id=prop.pk, nights=exported_nights(token=token, today=today),
            summary=summary, stamp=prop.calendar_changed_at,
        )
        cache.set(key, body, CACHE_SECONDS)
    return ExportedCalendar(body=body, etag=etag, last_modified=last_modified)
