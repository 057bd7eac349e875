"""Removing a sync or a property, behind a page that says what follows; restoring one; the
bulk bar's Remove (syncs.removal). Managers and owners only; a GET only shows, a POST does."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST

from syncs import removal
from syncs.editing import words_with_links
from syncs.explain import day_of
from syncs.models import RESTORE_DAYS, Account, Connection, Property
from syncs.roles import Role, role_required
from syncs.selectors import connection_get, property_get


def _linked(words) -> str:
    """A message with links (editing.words_with_links) as the toast shows it."""
    return mark_safe(words.__html__())  # words_with_links escaped every part


def _confirmation(request: HttpRequest, *, title: str, effects: list, cancel_url: str, **context) -> HttpResponse:
    return render(
        request, "syncs/remove_confirm.html",
        {"account": Account.of_user(request.user), "title": title, "effects": effects, "cancel_url": cancel_url,
         "restore_days": RESTORE_DAYS, **context},
    )


@require_http_methods(["GET", "POST"])
@login_required
@role_required(Role.MANAGER)
def connection_remove_view(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = connection_get(user=request.user, connection_id=connection_id)
    if request.method == "POST":
        removal.connections_remove(user=request.user, connections=[connection])
        messages.success(request, _linked(words_with_links(
            _("Removed the %(portal)s sync of %(property)s. You can restore it from %(page)s until %(day)s."),
            portal=connection.portal.display_name, property=connection.property.name,
            page=(_("its page"), reverse("connection-detail", args=[connection.pk])), day=_restore_day(connection),
        )))
        return redirect("property-detail", property_id=connection.property_id)
    return _confirmation(
        request,
        title=_("Remove the %(portal)s sync of %(property)s?") % {
            "portal": connection.portal.display_name, "property": connection.property.name},
        effects=removal.removal_effects(connections=[connection]),
        cancel_url=reverse("connection-edit", args=[connection.pk]),
        action_url=reverse("connection-remove", args=[connection.pk]),
        count=1,
    )


@require_http_methods(["GET", "POST"])
@login_required
@role_required(Role.MANAGER)
def property_remove_view(request: HttpRequest, property_id: int) -> HttpResponse:
    prop = property_get(user=request.user, property_id=property_id)
    if request.method == "POST":
        removal.property_remove(user=request.user, property=prop)
        messages.success(request, _linked(words_with_links(
            _("Removed %(property)s and its syncs. You can restore them from %(page)s until %(day)s."),
            property=prop.name, page=(_("its page"), reverse("property-detail", args=[prop.pk])),
            day=_restore_day(prop),
        )))
        return redirect("property-list")
    effects = removal.removal_effects(property=prop)
    return _confirmation(
        request,
        title=_("Remove %(property)s?") % {"property": prop.name},
        effects=effects, whole=True,
        cancel_url=reverse("property-edit", args=[prop.pk]),
        action_url=reverse("property-remove", args=[prop.pk]),
        count=sum(len(effect.removing) for effect in effects),
    )


def bulk_remove_confirmation(request: HttpRequest, *, connections: list[Connection], back: str) -> HttpResponse:
    """The bulk bar's Remove, before anything is done: the page for the lot, whose button sends
    the very syncs it lists (not the filter again: what is confirmed is what was shown)."""
    count = len(connections)
    return _confirmation(
        request,
        title=ngettext("Remove %(n)d sync?", "Remove %(n)d syncs?", count) % {"n": count},
        effects=removal.removal_effects(connections=connections),
        cancel_url=back if back.startswith("/") else reverse(back),
        action_url=reverse("bulk-action"), bulk=True, chosen=connections, count=count, next=back,
    )


def _restore_day(removed: Property | Connection) -> str:
    zone = removed.timezone if isinstance(removed, Property) else removed.property.timezone
    return day_of(removed.restorable_until, zone)


@require_POST
@login_required
@role_required(Role.MANAGER)
def connection_restore_view(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = connection_get(user=request.user, connection_id=connection_id, removed=True)
    if connection.archived_at is None:
        raise Http404
    try:
        warnings = removal.connection_restore(user=request.user, connection=connection)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, _linked(words_with_links("%(why)s", why=message)))
    else:
        messages.success(request, _(
            "Restored the %(portal)s sync of %(property)s: its nights are in the other portals' calendars again, its "
            "export URL works again, and it reads %(portal)s now."
        ) % {"portal": connection.portal.display_name, "property": connection.property.name})
        for warning in warnings:
            messages.warning(request, warning)
    return redirect("connection-detail", connection_id=connection.pk)


@require_POST
@login_required
@role_required(Role.MANAGER)
def property_restore_view(request: HttpRequest, property_id: int) -> HttpResponse:
    prop = property_get(user=request.user, property_id=property_id, removed=True)
    if prop.archived_at is None:
        raise Http404
    try:
        restored = removal.property_restore(user=request.user, property=prop)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(request, ngettext(
            "Restored %(property)s with %(n)d sync: its nights and export URLs work again as they were.",
            "Restored %(property)s with %(n)d syncs: its nights and export URLs work again as they were.",
            restored.restored,
        ) % {"property": prop.name, "n": restored.restored})
        for connection, why in restored.kept:
            messages.warning(request, _linked(words_with_links(
                _("The %(portal)s sync stays removed. %(why)s"),
                portal=(connection.portal.display_name, reverse("connection-detail", args=[connection.pk])), why=why,
            )))
        for warning in restored.warnings:
            messages.warning(request, warning)
    return redirect("property-detail", property_id=prop.pk)
