from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from syncs.dashboard import dashboard_summary
from syncs.models import Account, BulkAction
from syncs.roles import Role, role_required


@require_safe
@login_required
@role_required(Role.VIEWER)
def home(request: HttpRequest) -> HttpResponse:
    """The overview: is anything broken, and what do I do?"""
    return render(
        request,
        "syncs/overview.html",
        {
            "account": Account.of_user(request.user),
            "summary": dashboard_summary(user=request.user),
            "bulk_kinds": BulkAction.Kind.choices,
        },
    )


@require_safe
@login_required
@role_required(Role.VIEWER)
def overview_status(request: HttpRequest) -> HttpResponse:
    """The overview's counts and attention list, refreshed every 30 seconds by htmx."""
    return render(request, "syncs/overview.html#status", {"summary": dashboard_summary(user=request.user)})
