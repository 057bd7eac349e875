"""The fix checklist pages.

The page opens with every step decided from one read of the sync (syncs.troubleshooting); the
two steps that read the portal itself check themselves as the page loads, each in its own request
(bounded by syncs.live_checks). After any action, htmx swaps in every step decided again from one
fresh read: the step acted on in place, the others beside it (out of band). While a sync runs,
the page looks again every two seconds until it ends (for a bounded time), so it never keeps
saying what was true before. Without JavaScript, each step is a plain form: "Check now" and every
action submit to the server, which answers with the page and that step's fresh result.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_safe
from django.views.decorators.vary import vary_on_headers

from syncs import editing
from syncs.forms import ConnectionForm
from syncs.models import Account, ChecklistStep
from syncs.roles import Role, role_required
from syncs.selectors import connection_get
from syncs.troubleshooting import (
    LIVE_STEPS,
    STEP_NAMES,
    STEPS,
    ChecklistRun,
    StepReport,
    checklist_progress,
    checklist_run,
    checklist_snapshot,
    link_refused_report,
    link_saved_report,
    suggested_test_night,
)
from syncs.views.editing import connection_edit_follow_up, feed_check_words


@require_safe
@login_required
@role_required(Role.MANAGER)
@vary_on_headers("HX-Request")
def connection_fix(request: HttpRequest, connection_id: int) -> HttpResponse:
    """The checklist. ``?check=<step>``: that step is checked now and its result shown (the plain
    form of "Check now", and where a step's action lands without JavaScript). From htmx (the
    page's look while a sync runs): every step decided again, swapped in beside the page's."""
    connection = connection_get(user=request.user, connection_id=connection_id)
    if request.htmx:
        return _steps_response(request, checklist_run(connection=connection, user=request.user))
    checked = request.GET.get("check", "")
    checked = checked if checked in STEP_NAMES else ""
    run = checklist_run(connection=connection, user=request.user, step=checked, opening=True)
    return _checklist_page(request, run, checked=checked)


def _checklist_page(request: HttpRequest, run: ChecklistRun, *, checked: str = "", new_link_form=None, status=200):
    connection = run.snapshot.connection
    progress = checklist_progress(connection=connection)
    steps = [(step, title, run.reports.get(step), progress.get(step)) for step, title in STEPS]
    unfinished = [step for step, _title, report, row in steps
                  if getattr(report or row, "status", None) != ChecklistStep.Status.PASSED]
    return render(
        request,
        "syncs/fix.html",
        {
            "account": Account.of_user(request.user),
            "connection": connection,
            "steps": steps,
            "first_open": checked or (unfinished[0] if unfinished else STEPS[0][0]),
            "checked": checked,
            "snapshot": run.snapshot,
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
    htmx gets the step's body, and after anything but a reading of the portal, every other step
    decided from the same read; a plain form gets the checklist page."""
    connection = connection_get(user=request.user, connection_id=connection_id)
    if step not in STEP_NAMES:
        raise Http404
    action = request.POST.get("action", "") if request.method == "POST" else ""
    if step == "link" and action == "new_link":
        return _new_link(request, connection)
    # Reading the portal again changes nothing else: only that step is shown anew.
    every = bool(action) or step not in LIVE_STEPS
    run = checklist_run(connection=connection, user=request.user, step=step, action=action, form=request.POST, every=every)
    if not request.htmx:
        if request.method == "POST":
            return redirect(_checked_url(connection, step))
        return _checklist_page(request, run, checked=step)
    response = _steps_response(request, run, main=step)
    if step == "link":
        # The https step's live check waits for this one's (fix.html): one at a time per person.
        response["HX-Trigger"] = "link-checked"
    return response


def _checked_url(connection, step: str) -> str:
    return reverse("connection-fix", kwargs={"connection_id": connection.pk}) + f"?check={step}#step-{step}"


def _steps_response(request: HttpRequest, run: ChecklistRun, *, main: str = "", new_link_form=None) -> HttpResponse:
    """The steps decided anew: ``main`` in the place of the element that asked (htmx's target),
    every other one out of band, the steps to read from the portal again as pending, and, when
    every step was decided, the page's look while a sync runs (started, or stopped once it ended:
    only with every step shown as that read left them)."""
    connection = run.snapshot.connection
    others = [report for step, report in run.reports.items() if step != main]
    context = {
        "connection": connection, "snapshot": run.snapshot, "main": run.reports.get(main), "others": others,
        "recheck": run.recheck, "suggested_night": suggested_test_night(connection), "new_link_form": new_link_form,
        "progress": checklist_progress(connection=connection), "whole": run.whole,
    }
    body = render_to_string("syncs/includes/fix_steps.html", context, request=request)
    toasts = render_to_string("syncs/includes/toasts_oob.html", {}, request=request)
    return HttpResponse(body + toasts)


def _new_link(request: HttpRequest, connection) -> HttpResponse:
    """Step 2's field: the portal's new calendar link is read live and saved as the edit form
    saves it (the same form, the same service, the same follow-up: a paused sync reads it at
    once); then every step is decided again from one read, and followed while that sync runs."""
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
        # Nothing was saved, nor recorded: the link the step last read is still the sync's.
        report: StepReport = link_refused_report(connection)
        run = ChecklistRun(snapshot=checklist_snapshot(connection=connection), reports={"link": report}, whole=False)
        if request.htmx:
            return _steps_response(request, run, main="link", new_link_form=form)
        return _checklist_page(request, run, checked="link", new_link_form=form)
    connection_edit_follow_up(request, form, connection, changed)  # says what the save did, as a message
    found = feed_check_words(form.feed_check) if form.feed_check else ""
    report = link_saved_report(connection, found=found)
    run = checklist_run(connection=connection, user=request.user, step="link", done=report)
    if not request.htmx:
        messages.success(request, report.summary)
        return redirect(_checked_url(connection, "link"))
    return _steps_response(request, run, main="link")
