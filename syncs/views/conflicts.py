"""Marking a possible double booking as handled, with a note."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from syncs.conflicts import double_booking_mark_handled
from syncs.roles import Role, role_required
from syncs.selectors import property_get
from syncs.views.htmx import back


@require_POST
@login_required
@role_required(Role.MANAGER)
def double_booking_handle(request: HttpRequest, property_id: int) -> HttpResponse:
    prop = property_get(user=request.user, property_id=property_id)
    try:
        double_booking_mark_handled(
            user=request.user, property=prop, key=request.POST.get("key", ""),
            fingerprint=request.POST.get("fingerprint", ""), note=request.POST.get("note", ""),
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("Marked as handled. It comes back if either stay changes."))
    return back(request, reverse("home"))
