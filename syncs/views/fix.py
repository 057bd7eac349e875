"""The fix checklist pages.

With JavaScript, every step checks itself as the page loads, each in its own request (the
browser runs them side by side, each bounded by its step's own deadline: a live read of a link
within syncs.live_checks' limits, the rest reading the database), and its result replaces the
step's body. Without JavaScript, each step shows its last result and is a plain form: "Check
now" and every action submit to the server, which answers with the page and that step's fresh
result. Nothing waits on "Checking…" that never comes.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe

from syncs import editing
from syncs.forms import ConnectionForm
from syncs.models import Account, ChecklistStep
from syncs.roles import Role, role_required
from syncs.selectors import connection_get
from syncs.troubleshooting import (
    STEP_NAMES,
    STEPS,
    StepReport,
    checklist_progress,
    link_refused_report,
    link_saved_report,
    run_step,
    step_record,
    suggested_test_night,
)
from syncs.views.editing import connection_edit_follow_up, feed_check_words
from syncs.views.htmx import partial_with_toasts

# After these steps' actions, the other steps' results may have changed: htmx asks them again.
CHANGES_OTHERS = {"switched_on", "link", "resync", "https"}


@require_safe
@login_required
@role_required(Role.MANAGER)
def connection_fix(request: HttpRequest, connection_id: int) -> HttpResponse:
    """The checklist. ``?check=<step>``: that step is checked now and its result shown (the plain
    form of "Check now", and where a step's action lands without JavaScript)."""
    connection = connection_get(user=request.user, connection_id=connection_id)
    checked = request.GET.get("check", "")
    report = run_step(connection=connection, step=checked, user=request.user) if checked in STEP_NAMES else None
    return _checklist_page(request, connection, report)


def _checklist_page(request: HttpRequest, connection, report: StepReport | None, *, new_link_form=None, status=200):
    progress = checklist_progress(connection=connection)
    unfinished = [step for step, _ in STEPS if getattr(progress.get(step), "status", None) != ChecklistStep.Status.PASSED]
    return render(
        request,
        "syncs/fix.html",
        {
            "account": Account.of_user(request.user),
            "connection": connection,
            "steps": [(step, title, progress.get(step)) for step, title in STEPS],
            "first_open": report.step if report else (unfinished[0] if unfinished else STEPS[0][0]),
            "report": report,
            "new_link_form": new_link_form,
            "suggested_night": suggested_test_night(connection),
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@login_required
@role_required(Role.MANAGER)
def connection_fix_step(request: HttpRequest, connection_id: int, step: str) -> HttpResponse:
    """GET runs the step's check; POST runs its action (switch on, sync, test block...) first.
    htmx gets the step's body; a plain form gets the checklist page."""
    connection = connection_get(user=request.user, connection_id=connection_id)
    if step not in STEP_NAMES:
        raise Http404
    action = request.POST.get("action", "") if request.method == "POST" else ""
    if step == "link" and action == "new_link":
        return _new_link(request, connection)
    report = run_step(connection=connection, step=step, user=request.user, action=action, form=request.POST)
    if not request.htmx:
        if request.method == "POST":
            return redirect(_checked_url(connection, step))
        return _checklist_page(request, connection, report)
    response = _step_response(request, connection, report, changed_others=bool(action) and step in CHANGES_OTHERS)
    if step == "link" and not response.has_header("HX-Trigger"):
        # The https step's live check waits for this one's (fix.html): one at a time per person.
        response["HX-Trigger"] = "link-checked"
    return response


def _checked_url(connection, step: str) -> str:
    return reverse("connection-fix", kwargs={"connection_id": connection.pk}) + f"?check={step}#step-{step}"


def _step_response(request, connection, report: StepReport, *, changed_others: bool = False, new_link_form=None):
    response = partial_with_toasts(
        request,
        "syncs/includes/fix_step.html",
        {"connection": connection, "report": report, "suggested_night": suggested_test_night(connection),
         "new_link_form": new_link_form, "oob": True},
    )
    if changed_others:
        # The steps that read the sync's state check again (fix.html: "checklist-changed"), once
        # this answer is in place: a step must not ask from an element that is being replaced.
        response["HX-Trigger-After-Settle"] = "checklist-changed"
    return response


def _new_link(request: HttpRequest, connection) -> HttpResponse:
    """Step 2's field: the new link is checked live and saved as the edit form saves it (the same
    form, the same service, the same follow-up: a paused sync reads it at once)."""
    data = {
        "import_url": request.POST.get("import_url", ""), "portal": connection.portal_id,
        "direction": connection.direction, "sync_interval_minutes": connection.sync_interval_minutes,
        "export_summary": connection.export_summary, "check_now": "on",
    }
    form = ConnectionForm(data, user=request.user, property=connection.property, instance=connection)
    changed = None
    if form.is_valid():
        try:
            changed = editing.connection_edit(user=request.user, connection=connection, **form.connection_values())
        except ValidationError as exc:  # e.g. the same link saved a moment ago by someone else
            form.add_service_errors(exc)
    if changed is None:
        report = link_refused_report(connection)
        if request.htmx:
            return _step_response(request, connection, report, new_link_form=form)
        return _checklist_page(request, connection, report, new_link_form=form)
    saved = connection_edit_follow_up(request, form, connection, changed)
    found = feed_check_words(form.feed_check) if form.feed_check else ""
    report = link_saved_report(connection, found=found, saved=saved)
    step_record(connection=connection, report=report, user=request.user)
    if not request.htmx:
        messages.success(request, report.summary)
        return redirect(_checked_url(connection, "link"))
    return _step_response(request, connection, report, changed_others=True)
