"""State changes from the pages: POST only, scoped to the account, answering htmx with the
changed fragment and plain forms with a redirect."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from syncs.models import Block, BlockKind
from syncs.operator_actions import (
    connection_accept_held,
    connection_rotate_export,
    connection_set_enabled,
    property_block_add,
    property_block_remove,
)
from syncs.roles import Role, role_required
from syncs.selectors import connection_get, connection_rows, property_get
from syncs.sync_requests import connection_request_sync
from syncs.views.htmx import back, partial_with_toasts
from syncs.views.properties import connection_export_panel


def _row_response(request: HttpRequest, connection) -> HttpResponse:
    if request.htmx:
        row = connection_rows(property=connection.property, only=connection)[0]
        return partial_with_toasts(request, "syncs/includes/connection_row.html", {"row": row})
    return back(request, reverse("property-detail", kwargs={"property_id": connection.property_id}))


def _panel_response(request: HttpRequest, connection, panel: str) -> HttpResponse:
    """htmx: the connection page's panel that changed; plain forms: back to the page."""
    if not request.htmx:
        return back(request, reverse("connection-detail", kwargs={"connection_id": connection.pk}))
    connection = connection_get(user=request.user, connection_id=connection.pk)
    context = {"connection": connection}
    if panel == "export-panel":
        context.update(connection_export_panel(connection))
    return partial_with_toasts(request, f"syncs/connection_detail.html#{panel}", context)


@require_POST
@login_required
@role_required(Role.MANAGER)
def connection_switch(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = connection_get(user=request.user, connection_id=connection_id)
    enabled = request.POST.get("enabled") == "1"
    checking = connection_set_enabled(connection=connection, enabled=enabled, user=request.user)
    if checking:
        messages.info(
            request,
            _("%(portal)s sync switched back on: checking its calendar now. It works again only if this check works.")
            % {"portal": connection.portal.display_name},
        )
    elif enabled:
        messages.success(request, _("%(portal)s sync switched on: it syncs within a minute.") % {"portal": connection.portal.display_name})
    else:
        messages.info(request, _("%(portal)s sync switched off.") % {"portal": connection.portal.display_name})
    return _row_response(request, connection)


@require_POST
@login_required
@role_required(Role.MANAGER)
def connection_sync_now(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = connection_get(user=request.user, connection_id=connection_id)
    connection_request_sync(connection=connection, user=request.user)
    messages.info(request, _("Syncing %(portal)s now…") % {"portal": connection.portal.display_name})
    return _row_response(request, connection)


@require_POST
@login_required
@role_required(Role.MANAGER)
def connection_accept_held_view(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = connection_get(user=request.user, connection_id=connection_id)
    run = connection_accept_held(connection=connection, user=request.user)
    if run is not None and not run.removals_held:
        messages.success(
            request,
            ngettext("Done: %(n)s removal applied.", "Done: %(n)s removals applied.", run.events_removed)
            % {"n": run.events_removed},
        )
    else:
        messages.error(request, _("The portal's calendar changed again: nothing was applied. Look at it once more."))
    return _panel_response(request, connection, "held-panel")


@require_POST
@login_required
@role_required(Role.MANAGER)
def connection_export_rotate(request: HttpRequest, connection_id: int) -> HttpResponse:
    """Issue a new export URL; the old one keeps working through the grace period."""
    connection = connection_get(user=request.user, connection_id=connection_id)
    if connection.exports:
        connection_rotate_export(connection=connection, user=request.user)
        messages.success(
            request,
            _("New export URL issued. Paste it into %(portal)s; the old one keeps working for %(hours)s hours.")
            % {"portal": connection.portal.display_name, "hours": settings.EXPORT_ROTATION_GRACE_HOURS},
        )
    return _panel_response(request, connection, "export-panel")


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


@require_POST
@login_required
@role_required(Role.MANAGER)
def property_block_add_view(request: HttpRequest, property_id: int) -> HttpResponse:
    prop = property_get(user=request.user, property_id=property_id)
    start, end = _date(request.POST.get("start", "")), _date(request.POST.get("end", ""))
    kind = request.POST.get("kind", BlockKind.BLOCKED)
    if start is None or end is None:
        messages.error(request, _("Give the first night and the check-out day."))
    else:
        try:
            property_block_add(property=prop, start=start, end=end, kind=kind, summary=request.POST.get("summary", ""),
                               user=request.user)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, _("Nights closed: every portal's export shows them now."))
    return back(request, reverse("property-detail", kwargs={"property_id": prop.pk}))


@require_POST
@login_required
@role_required(Role.MANAGER)
def property_block_remove_view(request: HttpRequest, block_id: int) -> HttpResponse:
    block = get_object_or_404(Block.objects.for_user(request.user).filter(source__isnull=True), pk=block_id)
    property_block_remove(block=block, user=request.user)
    messages.success(request, _("Nights opened again."))
    return back(request, reverse("property-detail", kwargs={"property_id": block.property_id}))
