"""Onboarding by file: upload a CSV, see every row checked, import the good ones; and the CSV
of every sync with its export URL."""

from __future__ import annotations

import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import HttpResponseStopPolling

from syncs.models import Account, OnboardingUpload
from syncs.onboarding import (
    export_csv_rows,
    live_words,
    onboarding_import,
    onboarding_live_request,
    onboarding_preview,
    portals_by_typed_name,
)
from syncs.roles import Role, role_required


@require_http_methods(["GET", "POST"])
@login_required
@role_required(Role.MANAGER)
def onboarding(request: HttpRequest) -> HttpResponse:
    account = Account.of_user(request.user)
    problems: list[str] = []
    if request.method == "POST":
        upload = request.FILES.get("file")
        if upload is None:
            problems = [_("Choose a CSV file first.")]
        else:
            made, problems = onboarding_preview(
                user=request.user, account=account, filename=upload.name, data=upload.read(2 * 1024 * 1024 + 1)
            )
            if made is not None:
                for problem in problems:
                    messages.warning(request, problem)
                return redirect("onboarding-preview", upload_id=made.pk)
    return render(request, "syncs/scale/onboarding.html", {"account": account, "problems": problems})


def _upload(request: HttpRequest, upload_id: int) -> OnboardingUpload:
    return get_object_or_404(OnboardingUpload.objects.filter(account=Account.of_user(request.user)), pk=upload_id)


def _context(upload: OnboardingUpload) -> dict:
    rows = upload.rows
    portals = portals_by_typed_name()
    for row in rows:
        row["live_words"] = live_words(row["live"], portals.get(row["portal"].casefold())) if "live" in row else ""
    good = sum(1 for row in rows if not row["errors"])
    waiting = sum(1 for row in rows if not row["errors"]) if upload.live_requested_at else 0
    return {"upload": upload, "rows": rows, "good": good, "bad": len(rows) - good,
            "live_total": waiting, "live_done": upload.live_checked >= waiting}


@require_safe
@login_required
@role_required(Role.MANAGER)
def onboarding_preview_view(request: HttpRequest, upload_id: int) -> HttpResponse:
    upload = _upload(request, upload_id)
    return render(request, "syncs/scale/onboarding_preview.html", {"account": upload.account, **_context(upload)})


@require_safe
@login_required
@role_required(Role.MANAGER)
def onboarding_progress(request: HttpRequest, upload_id: int) -> HttpResponse:
    """Polled while the worker checks the links live; stops polling when all are checked."""
    upload = _upload(request, upload_id)
    context = _context(upload)
    response = render(request, "syncs/scale/onboarding_preview.html#table", {"account": upload.account, **context})
    return HttpResponseStopPolling(response.content) if context["live_done"] else response


@require_POST
@login_required
@role_required(Role.MANAGER)
def onboarding_live(request: HttpRequest, upload_id: int) -> HttpResponse:
    upload = _upload(request, upload_id)
    n = onboarding_live_request(upload=upload)
    messages.info(request, ngettext("Checking %(n)d link…", "Checking %(n)d links…", n) % {"n": n})
    return redirect("onboarding-preview", upload_id=upload.pk)


@require_POST
@login_required
@role_required(Role.MANAGER)
def onboarding_import_view(request: HttpRequest, upload_id: int) -> HttpResponse:
    upload = _upload(request, upload_id)
    if upload.imported_at:
        messages.info(request, _("This file was imported already."))
        return redirect("property-list")
    made, rows = onboarding_import(user=request.user, upload=upload)
    bad = [row for row in rows if row.errors]
    messages.success(request, ngettext("%(n)d sync added.", "%(n)d syncs added.", len(made)) % {"n": len(made)})
    if bad:
        messages.warning(
            request, ngettext("%(n)d row was left out: see its error.", "%(n)d rows were left out: see their errors.", len(bad))
            % {"n": len(bad)},
        )
        upload.rows = [row.as_dict() for row in rows]
        OnboardingUpload.objects.filter(pk=upload.pk).update(rows=upload.rows)
        return redirect("onboarding-preview", upload_id=upload.pk)
    return redirect("property-list")


@require_safe
@login_required
@role_required(Role.MANAGER)
def exports_csv(request: HttpRequest) -> HttpResponse:
    """Every sync with its export URL, as CSV (secrets: managers and owners only)."""
    account = Account.of_user(request.user)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="export-urls-{timezone.localdate():%Y-%m-%d}.csv"'
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    response.write("\ufeff")  # spreadsheets read the file as UTF-8
    csv.writer(response).writerows(export_csv_rows(account=account))
    return response
