"""The timeline of all properties: one row per property, one column per night."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe
from django.views.decorators.vary import vary_on_headers

from syncs.date_inputs import day_from_query, timeline_bounds
from syncs.models import Account, BulkAction, Portal
from syncs.roles import Role, role_required
from syncs.sync_state import SEVERITY
from syncs.timeline import ATTENTION, DEFAULT_NIGHTS, NIGHT_CHOICES, Filter, timeline_read


def _nights(request: HttpRequest) -> int:
    value = request.GET.get("nights", "")
    return next((n for n in NIGHT_CHOICES if str(n) == value), DEFAULT_NIGHTS)


@require_safe
@login_required
@role_required(Role.VIEWER)
@vary_on_headers("HX-Request")
def timeline(request: HttpRequest) -> HttpResponse:
    """With htmx, the next page's rows only ("load more"); else the whole page."""
    account = Account.of_user(request.user)
    chosen = Filter.from_query(request.GET)
    today = timezone.localdate()
    nights = _nights(request)
    first, last = timeline_bounds(today, nights)
    start, refused = day_from_query(request.GET.get("from", ""), first=first, last=last, default=today)
    if refused and not request.htmx:
        messages.warning(request, refused)
    data = timeline_read(account=account, chosen=chosen, start=start, nights=nights, page=request.GET.get("page"))
    query = chosen.as_query() | {"nights": str(nights)}
    context = {
        "account": account,
        "timeline": data,
        "chosen": chosen,
        "query": query,
        "start": start,
        "today": today,
        "nights": nights,
        "night_choices": NIGHT_CHOICES,
        # Within the range, so that a link never asks for what the page refuses.
        "earlier": max(start - timedelta(days=30), first),
        "later": min(start + timedelta(days=30), last),
        "portals": Portal.objects.order_by("position", "name"),
        "states": SEVERITY,
        "attention": ATTENTION,
        "bulk_kinds": BulkAction.Kind.choices,
    }
    if request.htmx and request.GET.get("page"):
        return render(request, "syncs/timeline.html#rows", context)
    return render(request, "syncs/timeline.html", context)
