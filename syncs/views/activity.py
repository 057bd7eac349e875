"""The activity log: what people and the system did, in the reader's zone, filtered and paged."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from syncs.collation import by_name, name_matches
from syncs.id_inputs import parse_id
from syncs.models import Account, Activity, Membership, Property
from syncs.roles import Role, role_required

ENTRIES_PER_PAGE = 50
# Up to this many properties, the filter lists them all; beyond, it searches their names.
PROPERTIES_LISTED = 200


def reading_time_zone(user) -> str:
    """The zone a user reads account-wide times in (Membership.reading_time_zone)."""
    membership = Membership.current_of(user)
    return membership.reading_time_zone() if membership else "UTC"


@require_safe
@login_required
@role_required(Role.VIEWER)
def activity_list(request: HttpRequest) -> HttpResponse:
    # Removed properties too, named so: their history is here.
    account_properties = Property.all_objects.for_user(request.user)
    rows = list(account_properties.values_list("pk", "name", "archived_at")[: PROPERTIES_LISTED + 1])
    # A list to pick from, or, for an account with more properties than anyone scrolls through,
    # a name to search: the page costs the same whatever the account's size.
    listed = len(rows) <= PROPERTIES_LISTED
    properties = by_name([(pk, _named(name, archived_at)) for pk, name, archived_at in rows], translation.get_language()) if listed else []
    entries = Activity.objects.for_user(request.user).select_related("user", "property", "connection__portal")
    chosen = _chosen_property(request.GET.get("property", ""), account_properties)
    search = "" if listed else " ".join(request.GET.get("name", "").split())[:200]
    chosen_kind = _chosen(request.GET.get("kind", ""), set(Activity.Action.values))
    if chosen:
        entries = entries.filter(property_id=chosen.pk)
    elif search:
        entries = entries.filter(name_matches(search, path="property__"))
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
            "listed": listed,
            "search": search,
            "kinds": Activity.Action.choices,
            "chosen_property": str(chosen.pk) if chosen else "",
            "chosen_name": _named(chosen.name, chosen.archived_at) if chosen else "",
            "chosen_kind": chosen_kind,
            "filters": urlencode({k: v for k, v in (
                ("property", str(chosen.pk) if chosen else ""), ("name", search), ("kind", chosen_kind)) if v}),
        },
    )


def _named(name: str, archived_at) -> str:
    return name if archived_at is None else _("%(name)s (removed)") % {"name": name}


def _chosen_property(value: str, properties) -> Property | None:
    """The account's property a link asks for, or no filter (never an error page)."""
    pk = parse_id(value)
    return None if pk is None else properties.filter(pk=pk).first()


def _chosen(value: str, allowed: set[str]) -> str:
    """A filter's value if it is one of the offered ones, else no filter (never an error page)."""
    return value if value in allowed else ""
