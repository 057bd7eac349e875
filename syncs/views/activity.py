"""The activity log: what people and the system did, in the reader's zone, filtered and paged."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from syncs.collation import by_name
from syncs.models import Account, Activity, Membership, Property
from syncs.roles import Role, role_required

ENTRIES_PER_PAGE = 50


def reading_time_zone(user) -> str:
    """The zone a user reads account-wide times in (Membership.reading_time_zone)."""
    membership = Membership.current_of(user)
    return membership.reading_time_zone() if membership else "UTC"


@require_safe
@login_required
@role_required(Role.VIEWER)
def activity_list(request: HttpRequest) -> HttpResponse:
    # Removed properties too, named so: their history is here.
    properties = by_name(
        [
            (pk, name if archived_at is None else _("%(name)s (removed)") % {"name": name})
            for pk, name, archived_at in Property.all_objects.for_user(request.user).values_list("pk", "name", "archived_at")
        ],
        translation.get_language(),
    )
    entries = Activity.objects.for_user(request.user).select_related("user", "property", "connection__portal")
    chosen_property = _chosen(request.GET.get("property", ""), {str(pk) for pk, _ in properties})
    chosen_kind = _chosen(request.GET.get("kind", ""), set(Activity.Action.values))
    if chosen_property:
        entries = entries.filter(property_id=int(chosen_property))
    if chosen_kind:
        entries = entries.filter(action=chosen_kind)
    # Strictly newest first: one clock for every row (the reader's), ties broken by the order written.
    page = Paginator(entries.order_by("-created_at", "-pk"), ENTRIES_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "syncs/activity.html",
        {
            "account": Account.of_user(request.user),
            "page": page,
            "zone": reading_time_zone(request.user),
            "properties": properties,
            "kinds": Activity.Action.choices,
            "chosen_property": chosen_property,
            "chosen_kind": chosen_kind,
        },
    )


def _chosen(value: str, allowed: set[str]) -> str:
    """A filter's value if it is one of the offered ones, else no filter (never an error page)."""
    return value if value in allowed else ""
