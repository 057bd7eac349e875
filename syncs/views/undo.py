"""Undo: the button in the message after syncs were switched off (syncs.undo).

The offer travels with the message (its tags carry the offer's id); ``messages.html`` draws the
button, a plain form: with or without JavaScript it posts here and comes back to the page."""

from __future__ import annotations

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from syncs.models import Account, Undo
from syncs.roles import Role, role_required
from syncs.undo import undo_apply
from syncs.views.htmx import back

_OFFER = re.compile(r"\bundo-(\d+)\b")


def message_with_undo(request: HttpRequest, words: str, undo: Undo | None, *, level: int = messages.SUCCESS) -> None:
    """Say what an action did, offering to undo it when there is something to put back."""
    messages.add_message(request, level, words, extra_tags=f"undo undo-{undo.pk}" if undo else "")


def undo_offered(message) -> int | None:
    """The undo a message offers (its id), or None."""
    match = _OFFER.search(message.extra_tags or "")
    return int(match.group(1)) if match else None


def _names(connections) -> str:
    shown = ", ".join(f"{c.property.name} · {c.portal.display_name}" for c in connections[:5])
    more = len(connections) - 5
    return shown + (" " + ngettext("and %(n)s more", "and %(n)s more", more) % {"n": more} if more > 0 else "")


@require_POST
@login_required
@role_required(Role.MANAGER)
def undo_view(request: HttpRequest, undo_id: int) -> HttpResponse:
    undo = get_object_or_404(Undo.objects.filter(account=Account.of_user(request.user)), pk=undo_id)
    result = undo_apply(undo=undo, user=request.user)
    if not result.done:
        messages.error(
            request,
            _("Too late to undo: switch the syncs back on from their pages, or several at once from the timeline.")
            if result.too_late else _("This was undone already."),
        )
        return back(request, reverse("home"))
    words = []
    if result.restored or not result.left:
        n = len(result.restored)
        words.append(
            ngettext("%(n)d sync switched back on, as it was before.", "%(n)d syncs switched back on, as they were before.", n)
            % {"n": n}
        )
    if result.left:
        n = len(result.left)
        words.append(
            ngettext(
                "%(n)d sync was left as it is: someone changed it after it was switched off (%(names)s).",
                "%(n)d syncs were left as they are: someone changed them after they were switched off (%(names)s).", n,
            ) % {"n": n, "names": _names(result.left)}
        )
    (messages.warning if result.left else messages.success)(request, " ".join(words))
    return back(request, reverse("home"))
