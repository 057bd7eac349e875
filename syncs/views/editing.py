"""Add and edit pages: properties and their calendar syncs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods

from syncs import editing, operator_actions
from syncs.editing import FeedCheck
from syncs.explain import day
from syncs.forms import ConnectionForm, PropertyForm, ServiceErrorsMixin, timezone_names
from syncs.models import RESTORE_DAYS, Account
from syncs.portals import BY_SLUG
from syncs.roles import Role, role_required
from syncs.selectors import connection_get, connection_state_of, property_get
from syncs.sync_labels import label_syncs
from syncs.sync_state import SyncState

T = TypeVar("T")


def _account(request: HttpRequest) -> Account:
    account = Account.of_user(request.user)
    if account is None:  # a user nobody attached to an account yet has nowhere to add to
        raise PermissionDenied
    return account


def _form_data(request: HttpRequest) -> dict | None:
    return request.POST if request.method == "POST" else None


def _save(form: ServiceErrorsMixin, write: Callable[[], T]) -> T | None:
    """Run a write service; its refusal (e.g. a name taken a moment ago) goes back to the form."""
    try:
        return write()
    except ValidationError as exc:
        form.add_service_errors(exc)
        return None


# --------------------------------------------------------------------------- properties


def _property_page(request: HttpRequest, form: PropertyForm, **context) -> HttpResponse:
    return render(
        request, "syncs/forms/property_form.html",
        {"account": Account.of_user(request.user), "form": form, "timezone_names": timezone_names(),
         "restore_days": RESTORE_DAYS, **context},
    )


@require_http_methods(["GET", "POST"])
@login_required
@role_required(Role.MANAGER)
def property_create(request: HttpRequest) -> HttpResponse:
    _account(request)
    form = PropertyForm(_form_data(request), user=request.user)
    if request.method == "POST" and form.is_valid():
        prop = _save(form, lambda: editing.property_create(user=request.user, **form.property_values()))
        if prop is not None:
            messages.success(
                request, _("Added %(name)s. Now add its calendar syncs, one per portal.") % {"name": prop.name}
            )
            return redirect("property-detail", property_id=prop.pk)
    return _property_page(request, form)


@require_http_methods(["GET", "POST"])
@login_required
@role_required(Role.MANAGER)
def property_edit(request: HttpRequest, property_id: int) -> HttpResponse:
    prop = property_get(user=request.user, property_id=property_id)
    form = PropertyForm(_form_data(request), user=request.user, instance=prop)
    if request.method == "POST" and form.is_valid():
        changed = _save(
            form, lambda: editing.property_edit(user=request.user, property=prop, **form.property_values())
        )
        if changed is not None:
            messages.success(request, _property_saved_words(prop.name, changed))
            return redirect("property-detail", property_id=prop.pk)
    return _property_page(request, form, property=prop)


def _property_saved_words(name: str, changed: list[str]) -> str:
    if not changed:
        return _("Nothing to save: %(name)s was already like this.") % {"name": name}
    words = _("Saved %(name)s.") % {"name": name}
    if "timezone" in changed:
        words += " " + _("Its calendars will be read again in the new time zone at the next sync.")
    return words


# --------------------------------------------------------------------------- connections


def _connection_page(request: HttpRequest, form: ConnectionForm, **context) -> HttpResponse:
    return render(
        request, "syncs/forms/connection_form.html",
        {"account": Account.of_user(request.user), "form": form, "property": form.property, "restore_days": RESTORE_DAYS,
         **context},
    )


@require_http_methods(["GET", "POST"])
@login_required
@role_required(Role.MANAGER)
def connection_create(request: HttpRequest, property_id: int) -> HttpResponse:
    prop = property_get(user=request.user, property_id=property_id)
    form = ConnectionForm(_form_data(request), user=request.user, property=prop)
    if request.method == "POST" and form.is_valid():
        connection = _save(
            form,
            lambda: editing.connection_create(user=request.user, property=prop, **form.connection_values()),
        )
        if connection is not None:
            words = _("Added the %(portal)s sync of %(property)s.") % {
                "portal": connection.portal.display_name, "property": prop.name,
            }
            _report_saved(request, form, words)
            _warn_same_portal(request, connection)
            return redirect("connection-detail", connection_id=connection.pk)
    return _connection_page(request, form)


def _warn_same_portal(request: HttpRequest, connection) -> None:
    """A second sync of one portal on a property is allowed (two listings of one flat on
    Airbnb), but is more often a link pasted into a new sync instead of the old one: say so."""
    same = connection.property.connections.filter(portal=connection.portal).exclude(pk=connection.pk)
    if not same.exists():
        return
    labels = label_syncs(connection.property.connections.select_related("portal"))
    others = [labels[other.pk].label for other in same.order_by("pk")]
    messages.warning(request, _(
        "%(property)s already had a %(portal)s sync (%(others)s): this one is %(label)s. Right for another "
        "listing on %(portal)s; if you meant to change a link, edit the other sync instead and switch this one off."
    ) % {
        "property": connection.property.name, "portal": connection.portal.display_name,
        "others": ", ".join(others), "label": labels[connection.pk].label,
    })


@require_http_methods(["GET", "POST"])
@login_required
@role_required(Role.MANAGER)
def connection_edit(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = connection_get(user=request.user, connection_id=connection_id)
    form = ConnectionForm(_form_data(request), user=request.user, property=connection.property, instance=connection)
    if request.method == "POST" and form.is_valid():
        changed = _save(
            form, lambda: editing.connection_edit(user=request.user, connection=connection, **form.connection_values())
        )
        if changed is not None:
            connection_edit_follow_up(request, form, connection, changed)
            return redirect("connection-detail", connection_id=connection.pk)
    return _connection_page(request, form, connection=connection)


def connection_edit_follow_up(request: HttpRequest, form: ConnectionForm, connection, changed: list[str]) -> str:
    """What follows a saved edit, from the edit form or the checklist's new link: the sync reads
    a new link, and the operator is told what it found. Returns what the save did, in words."""
    paused = _paused_by_errors(connection)
    if _new_link(changed) and paused:
        # A new link is usually the fix for a paused sync: it is read now. A read that
        # works resumes the sync; one that fails leaves it paused, with the new reason.
        operator_actions.connection_read_new_link(connection=connection, user=request.user)
    words = _connection_saved_words(connection, changed, was_paused=paused)
    _report_saved(request, form, words)
    return words


def _new_link(changed: list[str]) -> bool:
    return "import_url" in changed or "portal" in changed


def _paused_by_errors(connection) -> bool:
    """Paused automatically, not switched off by the operator."""
    return connection.enabled and connection.paused_at is not None


def _connection_saved_words(connection, changed: list[str], *, was_paused: bool = False) -> str:
    if not changed:
        return _("Nothing to save: the %(portal)s sync was already like this.") % {"portal": connection.portal.display_name}
    words = _("Saved the %(portal)s sync.") % {"portal": connection.portal.display_name}
    if _new_link(changed):
        if not connection.enabled:
            words += " " + _("This sync is switched off: switch it on to read the new link.")
        elif was_paused:
            words += " " + _paused_link_words(connection)
        else:
            words += " " + _("The next sync reads the new link from scratch, in the next minutes.")
    return words


def _paused_link_words(connection) -> str:
    """What reading the new link of a paused sync did, from the state read after it: the page the
    operator lands on reads the same state, so its message and its state box agree."""
    state = connection_state_of(connection)
    if state.state == SyncState.CHECKING:
        return _("This sync was paused: the new link is being read now, and the sync resumes if it works.")
    if state.state == SyncState.PAUSED:
        return _("The new link was read, and it fails too: %(reason)s The sync stays paused.") % {"reason": state.words}
    return _("The new link was read without error: the sync works again.")


def _report_saved(request: HttpRequest, form: ConnectionForm, words: str) -> None:
    if form.portal_recognised:
        words += " " + _("We recognised %(portal)s from the link.") % {"portal": form.cleaned_data["portal"].name}
    if form.feed_check is not None:
        words += " " + feed_check_words(form.feed_check)
    messages.success(request, words)
    if form.plain_http:
        messages.warning(request, _plain_http_words(form.feed_check))
    for warning in form.warnings:
        messages.warning(request, warning)


def _plain_http_words(check: FeedCheck | None) -> str:
    if check is not None and check.https_works:
        return _("This link is not encrypted (http://), and its https:// version works: "
                 "edit the sync and add the “s” after http.")
    if check is not None and check.https_works is False:
        return _("This link is not encrypted (http://), and the portal does not answer on https:// for it. "
                 "It works as it is.")
    return _("This link is not encrypted (http://); the portal probably offers https. "
             "We will tell you if https works.")


def feed_check_words(check: FeedCheck) -> str:
    """E.g. "Found 12 bookings and blocks from 3 March to 20 November 2027 (Airbnb calendar)."."""
    if check.events == 0:
        words = _("The link works; the calendar has no bookings or blocks for now.")
    else:
        first, last = check.first_night, check.last_checkout
        words = ngettext(
            "Found %(count)s booking or block from %(first)s to %(last)s",
            "Found %(count)s bookings and blocks from %(first)s to %(last)s",
            check.events,
        ) % {
            "count": check.events,
            "first": day(first, with_year=first.year != last.year),
            "last": day(last),
        }
        if check.portal_slug in BY_SLUG:
            words += " " + _("(%(portal)s calendar)") % {"portal": _(BY_SLUG[check.portal_slug].name)}
        words += "."
    if check.skipped:
        words += " " + ngettext(
            "%(count)s event could not be read and was left out.",
            "%(count)s events could not be read and were left out.",
            check.skipped,
        ) % {"count": check.skipped}
    return words
