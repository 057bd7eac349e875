"""A sync's own page and what is done to one sync from the pages: switch, sync now, accept
held removals, issue a new export URL. State changes are POST only, scoped to the account,
answering htmx with the changed fragment and plain forms with a redirect."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST, require_safe
from django_htmx.http import HttpResponseClientRefresh

from syncs.explain import describe_readers
from syncs.export_tokens import export_token_ensure, export_url
from syncs.models import Account, Activity
from syncs.operator_actions import (
    connection_accept_held,
    connection_rotate_export,
    connection_set_enabled,
    connection_switch_off,
)
from syncs.readers import connection_export_facts
from syncs.removal import removed_facts
from syncs.roles import Role, can_see_secrets, role_required
from syncs.selectors import (
    connection_blocks,
    connection_get,
    connection_recent_runs,
    connection_rows,
    connection_state_get,
    connection_state_of,
)
from syncs.sync_requests import connection_request_sync
from syncs.sync_state import SyncState
from syncs.views.htmx import back, partial_with_toasts
from syncs.views.undo import message_with_undo


@require_safe
@login_required
@role_required(Role.VIEWER)
def connection_row(request: HttpRequest, connection_id: int) -> HttpResponse:
    """One connection's row, polled by htmx while a "Sync now" runs."""
    connection = connection_get(user=request.user, connection_id=connection_id)
    row = connection_rows(property=connection.property, only=connection)[0]
    return render(request, "syncs/includes/connection_row.html", {"row": row})


@require_safe
@login_required
@role_required(Role.VIEWER)
def connection_sync_state(request: HttpRequest, connection_id: int) -> HttpResponse:
    """Polled by htmx on the connection page while a "Sync now" runs or a sync switched back on
    is being checked: nothing meanwhile, then a reload of the whole page, whose every panel
    (state, errors, runs, blocks) it changed."""
    state = connection_state_get(user=request.user, connection_id=connection_id)
    if state.connection.sync_requested_at or state.state == SyncState.CHECKING:
        return HttpResponse(status=204)  # htmx leaves the page as it is
    return HttpResponseClientRefresh()


@require_safe
@login_required
@role_required(Role.VIEWER)
def connection_detail(request: HttpRequest, connection_id: int) -> HttpResponse:
    # A removed sync's page answers too: its history stays readable, and it is restored here.
    connection = connection_get(user=request.user, connection_id=connection_id, removed=True)
    context = {
        "account": Account.of_user(request.user),
        "connection": connection,
        "runs": connection_recent_runs(connection=connection),
        "blocks": connection_blocks(connection=connection),
        "activity": Activity.objects.for_user(request.user).filter(connection=connection).select_related("user", "connection__portal")[:20],
    }
    if connection.archived_at is not None:
        return render(request, "syncs/connection_detail.html", {**context, "removed": removed_facts(connection)})
    # The heading's badge and the state box: one read, the one the messages were made from.
    context["state"] = connection_state_of(connection)
    if connection.exports and can_see_secrets(request):
        context.update(connection_export_panel(connection))
    return render(request, "syncs/connection_detail.html", context)


def connection_export_panel(connection) -> dict:
    """What the connection page's export panel shows: the URL, and who reads it."""
    facts = connection_export_facts(connection=connection)
    return {
        "export_url": export_url(export_token_ensure(property=connection.property, connection=connection)),
        "reader_facts": facts,
        "readers": describe_readers(facts, portal=connection.portal.name_in_sentence),
        "rotation_grace_hours": settings.EXPORT_ROTATION_GRACE_HOURS,
    }


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
    if request.POST.get("enabled") != "1":
        # Undone in one click, as it was (a paused sync paused again, not checked anew).
        undo = connection_switch_off(connection=connection, user=request.user)
        words = _("%(portal)s sync switched off.") % {"portal": connection.portal.display_name}
        message_with_undo(request, words, undo, level=messages.INFO)
        return _row_response(request, connection)
    checking = connection_set_enabled(connection=connection, enabled=True, user=request.user)
    if checking:
        messages.info(
            request,
            _("%(portal)s sync switched back on: checking its calendar now. It works again only if this check works.")
            % {"portal": connection.portal.display_name},
        )
    else:
        messages.success(request, _("%(portal)s sync switched on: it syncs within a minute.") % {"portal": connection.portal.display_name})
    return _row_response(request, connection)


@require_POST
@login_required
@role_required(Role.MANAGER)
def connection_sync_now(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = connection_get(user=request.user, connection_id=connection_id)
    if connection_request_sync(connection=connection, user=request.user):
        messages.info(request, _("Syncing %(portal)s now…") % {"portal": connection.portal.display_name})
    else:
        messages.warning(
            request,
            _("The %(portal)s sync is switched off, so it was not synced: nothing is imported until you switch it on.")
            % {"portal": connection.portal.display_name},
        )
    return _row_response(request, connection)


@require_POST
@login_required
@role_required(Role.MANAGER)
def connection_accept_held_view(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = connection_get(user=request.user, connection_id=connection_id)
    removals = connection.held_removals
    if connection_accept_held(connection=connection, user=request.user):
        messages.success(
            request,
            ngettext(
                "Accepted: %(n)s removal is being applied. This page updates when it is.",
                "Accepted: %(n)s removals are being applied. This page updates when they are.",
                removals,
            )
            % {"n": removals},
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
        hours = settings.EXPORT_ROTATION_GRACE_HOURS
        messages.success(
            request,
            ngettext(
                "New export URL issued. Paste it into %(portal)s; the old one keeps working for %(hours)s hour.",
                "New export URL issued. Paste it into %(portal)s; the old one keeps working for %(hours)s hours.",
                hours,
            )
            % {"portal": connection.portal.display_name, "hours": hours},
        )
    return _panel_response(request, connection, "export-panel")
