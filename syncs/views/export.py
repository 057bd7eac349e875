"""The export feed portals read, and the .ics downloads operators take."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.cache import get_conditional_response
from django.utils.text import slugify
from django.views.decorators.http import require_safe

from syncs.engine.deadlines import database_deadline
from syncs.export import ExportedCalendar, calendar_export
from syncs.export_tokens import ServingToken, export_token_ensure, export_token_find
from syncs.readers import export_read_record
from syncs.roles import Role, role_required
from syncs.selectors import connection_get, property_get

log = logging.getLogger(__name__)

CALENDAR_TYPE = "text/calendar; charset=utf-8"
# When the database cannot answer, portals must retry later: an empty 200 would open every night.
RETRY_AFTER_SECONDS = 300


def _private(response: HttpResponse) -> HttpResponse:
    """A capability URL must not travel in Referer headers or end up in search engines."""
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Cache-Control"] = "no-cache"
    return response


@require_safe
def export_feed(request: HttpRequest, token: str) -> HttpResponse:
    try:
        # One query: the token and its calendar's version, so the next request sees a change.
        # A database that does not answer within the deadline is a database that is down.
        with database_deadline(settings.EXPORT_DATABASE_DEADLINE_SECONDS):
            found = export_token_find(token)
            exported = calendar_export(token=found) if found and not found.removed else None
    except DatabaseError:
        log.error("export unavailable: database error", exc_info=True)
        response = HttpResponse("Temporarily unavailable.\n", status=503, content_type="text/plain")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return _private(response)
    if found is not None and found.removed:
        # The operator removed its sync or property (syncs.removal): gone, on purpose, and said
        # so to the portal, rather than "not found" as for a mistyped URL. Restoring brings it back.
        export_read_record(token_id=found.pk, status=410, user_agent=request.META.get("HTTP_USER_AGENT", ""))
        return _private(HttpResponse("Gone: this calendar was removed.\n", status=410, content_type="text/plain"))
    if exported is None:
        # Unknown, revoked and malformed tokens all get this same answer.
        return _private(HttpResponse("Not found.\n", status=404, content_type="text/plain"))
    # Django's own conditional GET: weak and strong ETags, If-Modified-Since, If-Match.
    response = get_conditional_response(
        request, etag=exported.etag, last_modified=int(exported.last_modified.timestamp())
    ) or HttpResponse(exported.body, content_type=CALENDAR_TYPE)
    response["ETag"] = exported.etag
    response["Last-Modified"] = exported.last_modified_header
    export_read_record(token_id=found.pk, status=response.status_code, user_agent=request.META.get("HTTP_USER_AGENT", ""))
    return _private(response)


def _download(exported: ExportedCalendar, filename: str) -> HttpResponse:
    response = HttpResponse(exported.body, content_type=CALENDAR_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}.ics"'
    _private(response)
    # A signed-in person's download, not a portal's poll: like every signed-in page, never kept.
    response["Cache-Control"] = "private, no-store"
    return response


@require_safe
@login_required
@role_required(Role.MANAGER)
def connection_export_download(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = connection_get(user=request.user, connection_id=connection_id)
    if not connection.exports:
        raise Http404
    token = export_token_ensure(property=connection.property, connection=connection)
    name = slugify(f"{connection.property.name} {connection.portal.name}") or "calendar"
    return _download(calendar_export(token=ServingToken.of(token)), name)


@require_safe
@login_required
@role_required(Role.MANAGER)
def property_export_download(request: HttpRequest, property_id: int) -> HttpResponse:
    prop = property_get(user=request.user, property_id=property_id)
    token = export_token_ensure(property=prop)
    return _download(calendar_export(token=ServingToken.of(token)), slugify(prop.name) or "calendar")
