"""Who may do what in an account: one rule, checked on the server by every view.

Roles are ranked (``Membership.Role``): an *owner* does everything, members and settings
included; a *manager* works on properties, syncs, the fix checklist, switches, blocks and
webhooks; a *viewer* sees states, calendars and history and changes nothing, and never sees a
secret link (a portal's import URL, our export URLs). Every view names the least role it needs
with ``role_required``, under ``login_required``; pages hide what a role may not do, but hidden
buttons are not the protection: the view is.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject
from django.utils.text import get_text_list
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from syncs.auth_middleware import user_has_two_factor
from syncs.models import Membership

Role = Membership.Role


def membership_of(request: HttpRequest) -> Membership | None:
    """The signed-in person's membership in the account they work in now."""
    return Membership.current_of(request.user)


def role_check(request: HttpRequest, role: str) -> Membership:
    """The current membership if its role may do what ``role`` may; else 403, saying why."""
    membership = membership_of(request)
    if membership is None:
        raise PermissionDenied(_("You are not a member of any account. Ask an account's owner to invite you."))
    if not membership.allows(role):
        raise PermissionDenied(
            _("Your role in %(account)s is %(role)s: it lets you see this account, not change it. Ask an owner if you need more.")
            % {"account": membership.account.name, "role": membership.get_role_display()}
            if membership.role == Role.VIEWER
            else _("Only the owners of %(account)s can do this.") % {"account": membership.account.name}
        )
    return membership


def role_required(role: str) -> Callable:
    """View decorator: the current membership's role must allow ``role`` (403 otherwise).

    Goes under ``login_required``, so that an anonymous visitor is sent to log in first.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def checked(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            role_check(request, role)
            return view(request, *args, **kwargs)

        return checked

    return decorator


# How many of the people who can change things a viewer's note names; the rest are counted.
NAMES_SHOWN = 3


def people_who_can_change(*, account, roles=(Role.OWNER, Role.MANAGER)) -> tuple[list[str], int]:
    """The account's active members of ``roles`` (owners and managers unless told), by name
    (their full name, else their username), owners first, then by name: the first NAMES_SHOWN
    names, and how many more there are."""
    rows = Membership.objects.filter(account=account, role__in=roles, user__is_active=True).values_list(
        "role", "user__first_name", "user__last_name", "user__username"
    )
    people = sorted(
        ((role != Role.OWNER, " ".join(f"{first} {last}".split()) or username) for role, first, last, username in rows),
        key=lambda person: (person[0], person[1].casefold()),
    )
    names = [name for _owner_last, name in people]
    return names[:NAMES_SHOWN], max(len(names) - NAMES_SHOWN, 0)


def _names(names: list[str], more: int) -> str:
    if more:
        return ngettext("%(names)s and %(n)s more", "%(names)s and %(n)s more", more) % {"names": ", ".join(names), "n": more}
    # Translators: the last word of a list of names, "Ana, Rui and Zé".
    return get_text_list(names, _("and"))


def viewer_note(membership: Membership | None) -> str:
    """For a viewer, where a manager has controls: her role, and who can change things; "" for
    anyone else."""
    if not membership or membership.can_manage:  # a lazy membership of no one is falsy, not None
        return ""
    who = _names(*people_who_can_change(account=membership.account))
    return _(
        "Your role in %(account)s is %(role)s: you see everything here, but change nothing. "
        "Owners and managers can: %(who)s."
    ) % {"account": membership.account.name, "role": membership.get_role_display(), "who": who}


def owner_note(membership: Membership | None) -> str:
    """For a member who is not an owner, where owners have controls (the account's settings):
    her role, and which owners can change them; "" for an owner."""
    if not membership or membership.is_owner:
        return ""
    who = _names(*people_who_can_change(account=membership.account, roles=(Role.OWNER,)))
    return _(
        "Your role in %(account)s is %(role)s: only owners change the account's settings: %(who)s."
    ) % {"account": membership.account.name, "role": membership.get_role_display(), "who": who}


def can_see_secrets(request: HttpRequest) -> bool:
    """Whether the pages may show this person the import and export URLs (managers and owners)."""
    membership = membership_of(request)
    return membership is not None and membership.can_manage


def membership_context(request: HttpRequest) -> dict:
    """Template context: ``signed_in`` (past the password and, where needed, the second factor),
    ``membership`` (the current one, or None before that) and ``other_memberships`` (the
    person's other accounts, for the switcher; read only when there are some)."""
    if not hasattr(request, "user"):
        return {}

    def others() -> list[Membership]:
        current = membership_of(request)
        if current is None or (current.accounts_count or 0) < 2:
            return []
        others = Membership.objects.filter(user_id=current.user_id).exclude(pk=current.pk)
        return list(others.select_related("account").order_by("account__name", "pk"))

    def signed_in() -> bool:
        # Past the second factor too, where the person has one (syncs.auth_middleware).
        user = request.user
        if not user.is_authenticated:
            return False
        is_verified = getattr(user, "is_verified", None)
        return bool(is_verified and is_verified()) or not user_has_two_factor(user)

    return {
        "membership": SimpleLazyObject(lambda: membership_of(request) if signed_in() else None),
        "other_memberships": SimpleLazyObject(others),
        "signed_in": SimpleLazyObject(signed_in),
    }
