"""Bulk actions: one POST for many syncs, then a page that shows them run."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST, require_safe
from django_htmx.http import HttpResponseStopPolling

from syncs.bulk import bulk_progress, bulk_run, bulk_selected
from syncs.id_inputs import parse_ids
from syncs.models import RESTORE_DAYS, Account, BulkAction, Connection
from syncs.roles import Role, role_required
from syncs.timeline import Filter, connections_matching
from syncs.views.htmx import next_path
from syncs.views.removal import bulk_remove_confirmation
from syncs.views.undo import message_with_undo

DONE_WORDS = {
    BulkAction.Kind.SWITCH_OFF: lambda n: ngettext("%(n)d sync switched off.", "%(n)d syncs switched off.", n),
    BulkAction.Kind.SWITCH_ON: lambda n: ngettext("%(n)d sync switched on.", "%(n)d syncs switched on.", n),
    BulkAction.Kind.SYNC_NOW: lambda n: ngettext("%(n)d sync queued to run now.", "%(n)d syncs queued to run now.", n),
    BulkAction.Kind.ACCEPT_HELD: lambda n: ngettext(
        "Held removals accepted for %(n)d sync.", "Held removals accepted for %(n)d syncs.", n
    ),
    BulkAction.Kind.REMOVE: lambda n: ngettext(
        "%(n)d sync removed: it can be restored from its page for %(days)d days.",
        "%(n)d syncs removed: each can be restored from its page for %(days)d days.", n,
    ),
}


@require_POST
@login_required
@role_required(Role.MANAGER)
def bulk_action(request: HttpRequest) -> HttpResponse:
    """The syncs ticked (``connection``, or ``property`` for all of a property's syncs), or with
    ``all=1`` every sync matching the filter sent along (q, portal, state)."""
    account = Account.of_user(request.user)
    kind = request.POST.get("action", "")
    back = next_path(request, reverse("timeline"))
    if kind not in BulkAction.Kind.values:
        messages.error(request, _("Choose what to do with the selected syncs."))
        return HttpResponseRedirect(back)
    if request.POST.get("all") == "1":
        connections = connections_matching(account=account, chosen=Filter.from_query(request.POST))
    else:
        connection_ids = parse_ids(request.POST.getlist("connection"))
        property_ids = parse_ids(request.POST.getlist("property"))
        connections = Connection.objects.for_account(account).filter(pk__in=connection_ids) | Connection.objects.for_account(
            account
        ).filter(property_id__in=property_ids)
    if not connections.exists():
        messages.error(request, _("Select at least one sync first."))
        return HttpResponseRedirect(back)
    if kind == BulkAction.Kind.REMOVE and request.POST.get("confirmed") != "1":
        return bulk_remove_confirmation(request, connections=bulk_selected(account=account, connections=connections), back=back)
    result = bulk_run(user=request.user, account=account, kind=kind, connections=connections)
    words = DONE_WORDS[kind](result.done) % {"n": result.done, "days": RESTORE_DAYS}
    if result.skipped and kind == BulkAction.Kind.SYNC_NOW:
        words += " " + ngettext(
            "%(n)d selected sync was not synced: it is switched off, or it only exports.",
            "%(n)d selected syncs were not synced: they are switched off, or they only export.", result.skipped,
        ) % {"n": result.skipped}
    elif result.skipped:
        words += " " + ngettext(
            "%(n)d selected sync was left as it was (nothing to do).",
            "%(n)d selected syncs were left as they were (nothing to do).", result.skipped,
        ) % {"n": result.skipped}
    message_with_undo(request, words, result.undo)
    if result.action.awaited_ids:
        url = reverse("bulk-detail", kwargs={"bulk_id": result.action.pk})
        return HttpResponseRedirect(url + "?" + urlencode({"next": back}))
    return HttpResponseRedirect(back)


def _action(request: HttpRequest, bulk_id: int) -> BulkAction:
    return get_object_or_404(BulkAction.objects.filter(account=Account.of_user(request.user)), pk=bulk_id)


@require_safe
@login_required
@role_required(Role.VIEWER)
def bulk_detail(request: HttpRequest, bulk_id: int) -> HttpResponse:
    action = _action(request, bulk_id)
    return render(
        request, "syncs/bulk.html",
        {"account": action.account, "progress": bulk_progress(action=action), "next": next_path(request)},
    )


@require_safe
@login_required
@role_required(Role.VIEWER)
def bulk_progress_view(request: HttpRequest, bulk_id: int) -> HttpResponse:
    """Polled by htmx every two seconds while the syncs run; stops polling when all are done, or
    when none has moved for a while (and says so)."""
    progress = bulk_progress(action=_action(request, bulk_id))
    response = render(request, "syncs/bulk.html#progress", {"progress": progress})
    if progress.done or progress.stalled:
        stop = HttpResponseStopPolling(response.content)
        return stop
    return response
