from __future__ import annotations

from datetime import date

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe
from django_htmx.http import HttpResponseClientRefresh

from syncs.dashboard import properties_health, property_month
from syncs.dashboard import property_list as property_list_read
from syncs.date_inputs import month_bounds, month_from_query
from syncs.explain import describe_readers
from syncs.export_tokens import export_token_ensure, export_url
from syncs.horizon import latest_checkout
from syncs.models import Account, Activity, BlockKind, BulkAction, Membership
from syncs.readers import connection_export_facts
from syncs.roles import Role, can_see_secrets, role_required
from syncs.selectors import (
    connection_blocks,
    connection_get,
    connection_recent_runs,
    connection_rows,
    connection_state_get,
    property_get,
    property_manual_blocks,
)
from syncs.sync_state import SyncState
from syncs.timeline import Filter, connections_matching

PROPERTIES_PER_PAGE = 25


@require_safe
@login_required
@role_required(Role.VIEWER)
def property_list(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "")
    page = Paginator(property_list_read(user=request.user, search=search), PROPERTIES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    page.object_list = list(page.object_list)
    health = properties_health(page.object_list)
    for prop in page.object_list:
        prop.health = health[prop.pk]
    account = Account.of_user(request.user)
    return render(
        request, "syncs/property_list.html",
        {
            "account": account, "page": page, "q": search, "bulk_kinds": BulkAction.Kind.choices,
            "matching_syncs": connections_matching(account=account, chosen=Filter(q=search.strip())).count(),
            "members": Membership.objects.filter(account=account).select_related("user").order_by("user__username"),
        },
    )


@require_safe
@login_required
@role_required(Role.VIEWER)
def property_detail(request: HttpRequest, property_id: int) -> HttpResponse:
    prop = property_get(user=request.user, property_id=property_id)
    today = prop.local_today()
    month, refused = month_from_query(request.GET.get("month", ""), today=today)
    if refused:
        messages.warning(request, refused)
    first, last = month_bounds(today)
    calendar = property_month(property=prop, month=month, today=today)
    rows = connection_rows(property=prop)
    return render(
        request,
        "syncs/property_detail.html",
        {
            "account": Account.of_user(request.user),
            "property": prop,
            "rows": rows,
            "export_url": export_url(export_token_ensure(property=prop)) if can_see_secrets(request) else "",
            "month": month,
            "previous_month": (month - date.resolution).replace(day=1) if month > first else None,
            "next_month": (month.replace(day=28) + 4 * date.resolution).replace(day=1) if month < last else None,
            "weeks": calendar.weeks,
            "legend": calendar.legend,
            "manual_blocks": property_manual_blocks(property=prop),
            "kinds": BlockKind.choices,
            "today": today,
            "last_checkout": latest_checkout(today),
        },
    )


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
    state = connection_state_get(user=request.user, connection_id=connection_id)
    connection = state.connection
    context = {
        "account": Account.of_user(request.user),
        "connection": connection,
        # The heading's badge and the state box: one read, the one the messages were made from.
        "state": state,
        "runs": connection_recent_runs(connection=connection),
        "blocks": connection_blocks(connection=connection),
        "activity": Activity.objects.for_user(request.user).filter(connection=connection).select_related("user", "connection__portal")[:20],
    }
    if connection.exports and can_see_secrets(request):
        context.update(connection_export_panel(connection))
    return render(request, "syncs/connection_detail.html", context)


def connection_export_panel(connection) -> dict:
    """What the connection page's export panel shows: the URL, and who reads it."""
    facts = connection_export_facts(connection=connection)
    return {
        "export_url": export_url(export_token_ensure(property=connection.property, connection=connection)),
        "reader_facts": facts,
        "readers": describe_readers(facts, portal=connection.portal.display_name),
        "rotation_grace_hours": settings.EXPORT_ROTATION_GRACE_HOURS,
    }
