"""Export URL tokens: 256-bit capability secrets, stored only as hashes, rotatable with grace.

token = HMAC-SHA256(EXPORT_TOKEN_KEY, nonce), base64url. The row keeps the nonce and
SHA-256(token): looking a token up needs only its hash, and showing the URL again needs the
server's key, which the database does not hold.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from syncs.models import Connection, ExportToken, Property
from syncs.site_links import site_link
from syncs.sync_state import state_record


def token_from_nonce(nonce: str) -> str:
    digest = hmac.new(settings.EXPORT_TOKEN_KEY.encode(), nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token_fields() -> dict:
    nonce = secrets.token_hex(16)
    return {"nonce": nonce, "token_hash": token_hash(token_from_nonce(nonce))}


def export_url(token: ExportToken) -> str:
    return site_link("export-feed", token=token_from_nonce(token.nonce))


def export_token_ensure(*, property: Property, connection: Connection | None = None) -> ExportToken:
    """The current token of a connection's export (or of the property-wide one), created if missing."""
    current = ExportToken.objects.filter(property=property, connection=connection, expires_at__isnull=True).first()
    if current:
        return current
    try:
        with transaction.atomic():
            token = ExportToken.objects.create(property=property, connection=connection, **new_token_fields())
            if connection is not None:  # its portal is now expected to read it
                state_record([connection.pk], now=token.created_at)
            return token
    except IntegrityError:  # created at the same moment by another request
        return ExportToken.objects.get(property=property, connection=connection, expires_at__isnull=True)


def export_token_rotate(*, token: ExportToken, now: datetime | None = None) -> ExportToken:
    """Issue a new URL; the old one keeps working for EXPORT_ROTATION_GRACE_HOURS, then 404s."""
    now = now or timezone.now()
    with transaction.atomic():
        ExportToken.objects.filter(pk=token.pk, expires_at__isnull=True).update(
            expires_at=now + timedelta(hours=settings.EXPORT_ROTATION_GRACE_HOURS)
        )
        new = ExportToken.objects.create(property_id=token.property_id, connection_id=token.connection_id, **new_token_fields())
        if token.connection_id is not None:  # its portal is now expected to read the new URL
            state_record([token.connection_id], now=new.created_at)
        return new


@dataclass(frozen=True, slots=True)
class ServingToken:
    """An export URL's token with everything serving its calendar needs, read in one query."""

    pk: int
    nonce: str
    property_id: int
    connection_id: int | None
    property_name: str
    property_timezone: str
    calendar_version: int
    calendar_changed_at: datetime
    export_summary: str | None  # the connection's; None for the property-wide URL
    # Its sync or its property was removed (syncs.removal): the URL answers 410 Gone, not a calendar.
    removed: bool = False

    @classmethod
    def of(cls, token: ExportToken) -> ServingToken:
        """The same facts from a token already loaded (the operator's download)."""
        prop = token.property
        return cls(
            pk=token.pk, nonce=token.nonce, property_id=prop.pk, connection_id=token.connection_id,
            property_name=prop.name, property_timezone=prop.timezone,
            calendar_version=prop.calendar_version, calendar_changed_at=prop.calendar_changed_at,
            export_summary=token.connection.export_summary if token.connection_id else None,
        )


# What serving a token's calendar reads, in ServingToken's order, then when the token expires,
# and when its property and its sync were removed (a join: not through the live-rows manager).
_SERVING_FIELDS = (
    "pk", "nonce", "property_id", "connection_id", "property__name", "property__timezone",
    "property__calendar_version", "property__calendar_changed_at", "connection__export_summary", "expires_at",
    "property__archived_at", "connection__archived_at",
)


@functools.cache
def _serving_statement(vendor: str) -> str:
    """The ORM's own statement for the look-up by hash, compiled once per process and database:
    building it costs more than the rest of an export request. It runs through Django's cursor,
    seen like any other query."""
    statement, params = (
        ExportToken.objects.filter(token_hash="").order_by().values_list(*_SERVING_FIELDS).query.sql_with_params()
    )
    assert params == ("",)  # one parameter: the hash
    return statement


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite's driver hands back the naive UTC that Django stored (USE_TZ); PostgreSQL's is aware.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def export_token_find(token: str, *, now: datetime | None = None) -> ServingToken | None:
    """The serving token for a URL's token (current, or rotated and within its grace), or None;
    a removed sync's or property's token is found, ``removed``.

    Every token, well-formed or not, costs the same: one hash and one indexed query, which also
    reads the calendar's version, so that the next request after a change sees it.
    """
    with connection.cursor() as cursor:
        cursor.execute(_serving_statement(connection.vendor), [token_hash(token)])
        row = cursor.fetchone()
    if row is None:
        return None
    # The same rule as ExportToken.serving(): a rotated URL answers until its grace ends.
    expires_at = _aware(row[9])
    if expires_at is not None and expires_at <= (now or timezone.now()):
        return None
    return ServingToken(
        *row[:7], calendar_changed_at=_aware(row[7]), export_summary=row[8], removed=row[10] is not None or row[11] is not None
    )


_EXPORT_PATH = re.compile(r"/ical/([^/]+)\.ics$")


def is_our_export(url: str) -> bool:
    """Whether a link is one of the calendars we publish: importing it would read our own echo."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    match = _EXPORT_PATH.search(parts.path)
    if match is None:
        return False
    if host == (urlsplit(settings.SITE_URL).hostname or "").lower():
        return True
    # The same app reached by another name (an IP address, an old domain).
    return export_token_find(match.group(1)) is not None
