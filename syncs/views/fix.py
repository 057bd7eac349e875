"""The fix checklist pages: one step at a time, each checked when opened or asked to."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from syncs.models import Account, ChecklistStep
from syncs.roles import Role, role_required
from syncs.selectors import connection_get
from syncs.troubleshooting import (
    STEP_NAMES,
    STEPS,
    checklist_progress,
    run_step,
    suggested_test_night,
)


@require_safe
@login_required
@role_required(Role.MANAGER)
def connection_fix(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = connection_get(user=request.user, connection_id=connection_id)
    progress = checklist_progress(connection=connection)
    unfinished = [step for step, _ in STEPS if getattr(progress.get(step), "status", None) != ChecklistStep.Status.PASSED]
    return render(
        request,
        "syncs/fix.html",
        {
            "account": Account.of_user(request.user),
            "connection": connection,
            "steps": [(step, title, progress.get(step)) for step, title in STEPS],
            "first_open": unfinished[0] if unfinished else STEPS[0][0],
        },
    )


@require_http_methods(["GET", "POST"])
@login_required
@role_required(Role.MANAGER)
def connection_fix_step(request: HttpRequest, connection_id: int, step: str) -> HttpResponse:
    """GET runs the step's check; POST runs its action (switch on, sync, test block...) first."""
    connection = connection_get(user=request.user, connection_id=connection_id)
    if step not in STEP_NAMES:
        raise Http404
    action = request.POST.get("action", "") if request.method == "POST" else ""
    report = run_step(connection=connection, step=step, user=request.user, action=action, form=request.POST)
    if request.method == "POST" and not request.htmx:
        return redirect(reverse("connection-fix", kwargs={"connection_id": connection.pk}) + f"#step-{step}")
    return render(
        request,
        "syncs/includes/fix_step.html",
        {"connection": connection, "report": report, "suggested_night": suggested_test_night(connection)},
    )
