"""The timeline of all properties: one row per property, one column per night."""

from __future__ import annotations

from datetime import date, timedelta

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe
from django.views.decorators.vary import vary_on_headers

from syncs.models import Account, BulkAction, Portal
from syncs.roles import Role, role_required
from syncs.sync_state import SEVERITY
from syncs.timeline import ATTENTION, DEFAULT_NIGHTS, NIGHT_CHOICES, Filter, timeline_read


def _start(request: HttpRequest, today: date) -> date:
    try:
        return date.fromisoformat(request.GET.get("from", ""))
    except ValueError:
        return today


def _nights(request: HttpRequest) -> int:
    value = request.GET.get("nights", "")
    return int(value) if value.isdigit() and int(value) in NIGHT_CHOICES else DEFAULT_NIGHTS


@require_safe
@login_required
@role_required(Role.VIEWER)
@vary_on_headers("HX-Request")
def timeline(request: HttpRequest) -> HttpResponse:
    """With htmx, the next page's rows only ("load more"); else the whole page."""
    account = Account.of_user(request.user)
    chosen = Filter.from_query(request.GET)
    today = timezone.localdate()
    start = _start(request, today)
    nights = _nights(request)
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
        "earlier": start - timedelta(days=30),
        "later": start + timedelta(days=30),
        "portals": Portal.objects.order_by("position", "name"),
        "states": SEVERITY,
        "attention": ATTENTION,
        "bulk_kinds": BulkAction.Kind.choices,
    }
    if request.htmx and request.GET.get("page"):
        return render(request, "syncs/scale/timeline.html#rows", context)
    return render(request, "syncs/scale/timeline.html", context)
