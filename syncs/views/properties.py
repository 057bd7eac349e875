"""The properties list, a property's page, and the nights closed or opened here."""

from __future__ import annotations

from datetime import date
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from syncs.dashboard import property_month
from syncs.date_inputs import month_bounds, month_from_query
from syncs.export_tokens import export_token_ensure, export_url
from syncs.horizon import latest_checkout
from syncs.models import (
    Account,
    Activity,
    Block,
    BlockKind,
    BulkAction,
    Membership,
    Portal,
)
from syncs.operator_actions import property_block_add, property_block_remove
from syncs.property_listing import SORTS, Order, properties_ordered, properties_page, property_rows
from syncs.removal import removed_facts, removed_of, removed_with
from syncs.roles import Role, can_see_secrets, role_required
from syncs.selectors import (
    connection_rows,
    property_get,
    property_manual_blocks,
)
from syncs.spreadsheet_csv import rows_written
from syncs.sync_state import SEVERITY
from syncs.timeline import ATTENTION, Filter, connections_matching
from syncs.troubleshooting import night_audience
from syncs.views.confirm import Confirmation, confirmation_page, confirmed
from syncs.views.htmx import back

PROPERTIES_PER_PAGE = 25


@require_safe
@login_required
@role_required(Role.VIEWER)
def property_list(request: HttpRequest) -> HttpResponse:
    account = Account.of_user(request.user)
    chosen, order = Filter.from_query(request.GET), Order.from_query(request.GET)
    page = properties_page(
        account=account, chosen=chosen, order=order, language=translation.get_language(),
        page=request.GET.get("page"), per_page=PROPERTIES_PER_PAGE,
    )
    page.object_list = property_rows(list(page.object_list))
    # This very list without its page: the pages and the spreadsheet add to it.
    query = urlencode(chosen.as_query() | ({"sort": order.value} if order != Order() else {}))
    # Each sortable column's link: the other direction when the list is sorted by it.
    column_sorts = {
        by: urlencode(chosen.as_query() | {"sort": Order(by, descending=order.by == by and not order.descending).value})
        for by in SORTS
    }
    return render(
        request, "syncs/property_list.html",
        {
            "account": account, "page": page, "chosen": chosen, "order": order, "query": query,
            "column_sorts": column_sorts,
            "orders": Order.choices(), "portals": Portal.objects.order_by("position", "name"),
            "applied": [*chosen.in_words(), *([order.label] if order != Order() else [])],
            "states": SEVERITY, "attention": ATTENTION, "bulk_kinds": BulkAction.Kind.choices,
            "matching_syncs": connections_matching(account=account, chosen=chosen).count(),
            "members": Membership.objects.filter(account=account).select_related("user").order_by("user__username"),
        },
    )


@require_safe
@login_required
@role_required(Role.VIEWER)
def property_list_csv(request: HttpRequest) -> HttpResponse:
    """The list as a spreadsheet: every property the filter keeps (not only a page), in the same
    order, with what the page shows of each. No secret link: viewers may take it too."""
    ordered = properties_ordered(
        account=Account.of_user(request.user), chosen=Filter.from_query(request.GET), order=Order.from_query(request.GET),
        language=translation.get_language(),
    )
    zone = Membership.current_of(request.user).reading_time_zone()
    header = [
        _("Property"), _("Time zone"), _("Syncs"), _("Health"),
        _("Last successful sync (%(zone)s)") % {"zone": zone},
    ]
    rows = [
        [
            row.property.name, row.property.timezone, row.syncs, "; ".join(words for _kind, _state, words in row.health.badges),
            timezone.localtime(row.last_sync, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M") if row.last_sync else "",
        ]
        for row in property_rows(list(ordered.values_list("pk", flat=True)))
    ]
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="properties-{timezone.localdate():%Y-%m-%d}.csv"'
    response["Cache-Control"] = "no-store"
    response.write("\ufeff")  # spreadsheets read the file as UTF-8
    response.write(rows_written([header, *rows]))
    return response


@require_safe
@login_required
@role_required(Role.VIEWER)
def property_detail(request: HttpRequest, property_id: int) -> HttpResponse:
    # A removed property's page answers too: its history stays readable, and it is restored here.
    prop = property_get(user=request.user, property_id=property_id, removed=True)
    if prop.archived_at is not None:
        return render(request, "syncs/property_removed.html", {
            "account": Account.of_user(request.user), "property": prop, "removed": removed_facts(prop),
            "removed_with": removed_with(prop), "removed_before": [c for c in removed_of(prop) if c.archived_at != prop.archived_at],
            "activity": Activity.objects.for_user(request.user).filter(property=prop).select_related("user", "connection__portal")[:30],
        })
    today = prop.local_today()
    month, refused = month_from_query(request.GET.get("month", ""), today=today)
    if refused:
        messages.warning(request, refused)
    first, last = month_bounds(today)
    calendar = property_month(property=prop, month=month, today=today)
    rows = connection_rows(property=prop)
    manual_blocks = property_manual_blocks(property=prop)
    if manual_blocks:
        audience = night_audience(prop)
        for block in manual_blocks:
            block.opening = opening_words(block, audience=audience)
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
            "manual_blocks": manual_blocks,
            "kinds": BlockKind.choices,
            "today": today,
            "last_checkout": latest_checkout(today),
            "removed_syncs": [(c, removed_facts(c, problem=False)) for c in removed_of(prop)],
        },
    )


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


def opening_words(block: Block, *, audience: list[str]) -> Confirmation:
    """What opening nights closed here again means: the portals that read our calendar see them
    free at their next read, and may sell them; no undo can take that back, so it is asked first."""
    first, checkout = date_format(block.start_date, "DATE_FORMAT"), date_format(block.end_date, "DATE_FORMAT")
    sentences = [_("This is a booking made here: its guest's nights become free.")] if block.kind == BlockKind.RESERVED else []
    if audience:
        sentences.append(
            _("%(portals)s will see these nights free the next time they read our calendar, and may take bookings for them.")
            % {"portals": ", ".join(audience)}
        )
    else:
        sentences.append(_("No portal reads this property's calendar from us yet: they become free here only."))
    return Confirmation(
        title=_("Open the nights from %(first)s to %(checkout)s (check-out) again?") % {"first": first, "checkout": checkout},
        sentences=sentences, button=_("Yes, open these nights"),
    )


@require_POST
@login_required
@role_required(Role.MANAGER)
def property_block_remove_view(request: HttpRequest, block_id: int) -> HttpResponse:
    block = get_object_or_404(Block.objects.for_user(request.user).filter(source__isnull=True), pk=block_id)
    if not confirmed(request):
        return confirmation_page(
            request, opening_words(block, audience=night_audience(block.property)),
            action=reverse("block-remove", args=[block.pk]),
            cancel=reverse("property-detail", kwargs={"property_id": block.property_id}),
        )
    property_block_remove(block=block, user=request.user)
    messages.success(request, _("Nights opened again."))
    return back(request, reverse("property-detail", kwargs={"property_id": block.property_id}))
