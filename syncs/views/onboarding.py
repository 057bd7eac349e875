"""Syncs from a file: upload a CSV, see what each row would do, save the whole file; and the CSV
of every sync, which is the file to edit and upload back."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import HttpResponseStopPolling

from syncs.engine.fetch import mask_url
from syncs.models import Account, Connection, OnboardingUpload, Portal
from syncs.onboarding.checking import ADD, CHANGE, SAME
from syncs.onboarding.file import MAX_BYTES, NO, YES, column_names, export_text
from syncs.onboarding.jobs import (
    job_state,
    onboarding_import,
    onboarding_preview,
    onboarding_recheck,
)
from syncs.onboarding.live import live_progress, onboarding_live_request, verdict_words
from syncs.roles import Role, role_required

Stage = OnboardingUpload.Stage
ROWS_PER_PAGE = 500
SHOWN = ("all", "error", ADD, CHANGE, SAME)


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
                user=request.user, account=account, filename=upload.name or "", data=upload.read(MAX_BYTES + 1)
            )
            if made is not None:
                return redirect("onboarding-preview", upload_id=made.pk)
    return render(request, "syncs/onboarding.html", {
        "account": account, "problems": problems, "columns": column_names(read_only=False),
        "read_only": column_names(read_only=True),
    })


def _upload(request: HttpRequest, upload_id: int) -> OnboardingUpload:
    return get_object_or_404(OnboardingUpload.objects.filter(account=Account.of_user(request.user)), pk=upload_id)


@require_safe
@login_required
@role_required(Role.MANAGER)
def onboarding_preview_view(request: HttpRequest, upload_id: int) -> HttpResponse:
    upload = _upload(request, upload_id)
    return render(request, "syncs/onboarding_preview.html", _context(request, upload))


@require_safe
@login_required
@role_required(Role.MANAGER)
def onboarding_progress(request: HttpRequest, upload_id: int) -> HttpResponse:
    """Polled while the worker checks or saves the file, or reads its links; stops polling with
    the outcome."""
    context = _context(request, _upload(request, upload_id))
    response = render(request, "syncs/onboarding_preview.html#body", context)
    return response if context["polling"] else HttpResponseStopPolling(response.content)


@require_POST
@login_required
@role_required(Role.MANAGER)
def onboarding_live(request: HttpRequest, upload_id: int) -> HttpResponse:
    upload = _upload(request, upload_id)
    if upload.stage == Stage.CHECKED and not upload.imported_at:
        n = onboarding_live_request(upload=upload)
        messages.info(request, ngettext("Checking %(n)d link…", "Checking %(n)d links…", n) % {"n": n})
    return redirect("onboarding-preview", upload_id=upload.pk)


@require_POST
@login_required
@role_required(Role.MANAGER)
def onboarding_recheck_view(request: HttpRequest, upload_id: int) -> HttpResponse:
    upload = _upload(request, upload_id)
    if not onboarding_recheck(upload=upload, language=translation.get_language() or ""):
        messages.info(request, _("This file is being checked or saved already, or it was saved."))
    return redirect("onboarding-preview", upload_id=upload.pk)


@require_POST
@login_required
@role_required(Role.MANAGER)
def onboarding_import_view(request: HttpRequest, upload_id: int) -> HttpResponse:
    upload = _upload(request, upload_id)
    if upload.imported_at:
        messages.info(request, _("This file was saved already."))
    elif upload.stage == Stage.CHECKED and not _counts(upload)["ready"]:
        messages.error(request, _("Nothing to save: check the rows below."))
    elif not onboarding_import(upload=upload):
        messages.info(request, _("This file is still being checked.") if upload.stage == Stage.CHECKING
                      else _("This file is being saved already."))
    return redirect("onboarding-preview", upload_id=upload.pk)


@require_safe
@login_required
@role_required(Role.MANAGER)
def exports_csv(request: HttpRequest) -> HttpResponse:
    """Every sync, in the columns the upload reads (secrets: managers and owners only)."""
    account = Account.of_user(request.user)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="syncs-{timezone.localdate():%Y-%m-%d}.csv"'
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    # The byte order mark: spreadsheets then read the file as UTF-8.
    response.write("\ufeff" + export_text(account=account))
    return response


# --------------------------------------------------------------------------- the preview


def _counts(upload: OnboardingUpload) -> dict:
    rows = upload.rows
    counts = {
        "rows": len(rows),
        "error": sum(1 for row in rows if row.get("errors")),
        ADD: sum(1 for row in rows if not row.get("errors") and row.get("action") == ADD),
        CHANGE: sum(1 for row in rows if not row.get("errors") and row.get("action") == CHANGE),
        SAME: sum(1 for row in rows if not row.get("errors") and row.get("action") == SAME),
    }
    checked = upload.stage == Stage.CHECKED and not upload.outcome.get("failed") and not upload.imported_at
    counts["ready"] = checked and not counts["error"] and bool(counts[ADD] + counts[CHANGE])
    return counts


def _summary(counts: dict) -> list[str]:
    parts = [ngettext("%(n)d row", "%(n)d rows", counts["rows"]) % {"n": counts["rows"]}]
    for key, words in (
        (ADD, lambda n: ngettext("%(n)d to add", "%(n)d to add", n)),
        (CHANGE, lambda n: ngettext("%(n)d to change", "%(n)d to change", n)),
        (SAME, lambda n: ngettext("%(n)d without change", "%(n)d without change", n)),
        ("error", lambda n: ngettext("%(n)d with an error", "%(n)d with an error", n)),
    ):
        if counts[key]:
            parts.append(words(counts[key]) % {"n": counts[key]})
    return parts


def _context(request: HttpRequest, upload: OnboardingUpload) -> dict:
    job = job_state(upload=upload)
    live = live_progress(upload=upload)
    counts = _counts(upload)
    show = request.GET.get("show", "all")
    show = show if show in SHOWN else "all"
    every = list(Portal.objects.all())
    portals = {portal.slug: portal.display_name for portal in every}
    in_sentences = {portal.slug: portal.name_in_sentence for portal in every}
    shown = [
        row for row in upload.rows
        if show == "all" or (show == "error" and row.get("errors")) or (not row.get("errors") and row.get("action") == show)
    ]
    page = Paginator(shown, ROWS_PER_PAGE).get_page(request.GET.get("page"))
    query = {"show": show} if show != "all" else {}
    if page.number > 1:
        query["page"] = page.number
    return {
        "account": upload.account, "upload": upload, "job": job, "live": live, "counts": counts,
        "summary": _summary(counts), "show": show, "page": page, "rows": [_shown(row, portals, in_sentences, live) for row in page],
        "polling": job.running or (live.waiting and upload.stage == Stage.CHECKED),
        "poll_url": reverse("onboarding-progress", args=[upload.pk]) + ("?" + urlencode(query) if query else ""),
        "filters": [(key, _filter_label(key, counts)) for key in SHOWN if key == "all" or counts[key]],
        "query": urlencode({"show": show}) if show != "all" else "",
        "checked_in": _checked_in(upload),
    }


def _checked_in(upload: OnboardingUpload) -> str:
    """The language the rows' words were written in, by its own name, when it is not the
    reader's (a check writes them once, in the language of whoever asked for it); else ""."""
    language = upload.language
    if not language or language == translation.get_language() or upload.imported_at:
        return ""
    try:
        return translation.get_language_info(language)["name_local"]
    except KeyError:
        return ""


def _filter_label(key: str, counts: dict) -> str:
    return {
        "all": lambda: _("All rows"),
        "error": lambda: _("With an error (%(n)d)") % {"n": counts["error"]},
        ADD: lambda: _("To add (%(n)d)") % {"n": counts[ADD]},
        CHANGE: lambda: _("To change (%(n)d)") % {"n": counts[CHANGE]},
        SAME: lambda: _("Without change (%(n)d)") % {"n": counts[SAME]},
    }[key]()


def _shown(row: dict, portals: dict[str, str], in_sentences: dict[str, str | None], live) -> dict:
    """A row as the preview shows it, in the reader's words."""
    cells = row.get("cells", {})
    portal = portals.get(row.get("portal", ""), "") or cells.get("portal", "")
    # A sentence names the portal "Other" as "the portal" (Portal.name_in_sentence).
    in_sentence = in_sentences.get(row.get("portal", ""), portal)
    link = row.get("url") or cells.get("url", "")
    key = row.get("live_key") if not row.get("errors") else ""
    check = live.verdicts.get(key) if key and live.asked else None
    verdict = verdict_words(check, portal=in_sentence, given_up=live.given_up) if key and live.asked else ""
    return {
        "line": row["line"], "property": row.get("property") or cells.get("property", ""),
        "property_new": row.get("property_new", False), "portal": portal, "link": mask_url(link) if link else "",
        "action": "" if row.get("errors") else row.get("action", ""), "errors": row.get("errors", []),
        "changes": [_change_words(change, portals) for change in row.get("changes", [])],
        "verdict": verdict, "verdict_ok": check is not None and check.ok,
        "awaiting": bool(key) and live.waiting and check is None,
    }


def _change_words(change: dict, portals: dict[str, str]) -> str:
    """E.g. "interval: 30 minutes → 60 minutes"."""
    field = change["field"]

    def value(item) -> str:
        if field == "url":
            return mask_url(item) if item else _("no link")
        if field == "portal":
            return portals.get(item, item)
        if field == "direction":
            return str(dict(Connection.Direction.choices).get(item, item))
        if field == "enabled":
            return str(YES if item else NO)
        if field == "interval":
            return ngettext("%(n)d minute", "%(n)d minutes", item) % {"n": item}
        return str(item)

    name = {
        "timezone": _("time zone"), "url": _("link"), "portal": _("portal"), "direction": _("direction"),
        "enabled": _("switched on"), "interval": _("interval"),
    }[field]
    return f"{name}: {value(change['old'])} → {value(change['new'])}"
