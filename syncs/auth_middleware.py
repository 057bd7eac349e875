"""Two guards that run on every signed-in request, after authentication.

- ``MembershipSessionMiddleware``: a session remembers the membership it worked in; when an
  owner removes that membership, the session ends at its next request (the person is told why
  on the log-in page). Switching accounts elsewhere moves the session along instead.
- ``TwoFactorMiddleware``: a person with an authenticator app has signed in only once the
  session passed a code (django-otp's ``is_verified``); until then every page but the code's
  own sends them there. In an account that requires two-factor sign-in, a member without an
  app is sent to set one up first.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django_htmx.http import HttpResponseClientRedirect

from syncs.models import Membership

SESSION_MEMBERSHIP = "syncs_membership"


def _go(request: HttpRequest, url: str) -> HttpResponse:
    # An htmx request (a poll, a button) gets the whole window sent there, not a fragment swap.
    if request.headers.get("HX-Request") == "true":
        return HttpResponseClientRedirect(url)
    return redirect(url)


def _with_next(url_name: str, request: HttpRequest) -> str:
    nxt = request.get_full_path() if request.method == "GET" and request.headers.get("HX-Request") != "true" else ""
    return reverse(url_name) + (f"?{urlencode({'next': nxt})}" if nxt else "")


class MembershipSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated:
            current = Membership.current_of(user)
            seen = request.session.get(SESSION_MEMBERSHIP)
            moved = seen is not None and (current is None or current.pk != seen)
            if moved and not Membership.objects.filter(pk=seen, user_id=user.pk).exists():
                # Removed from the account this session worked in: the session ends.
                logout(request)
                messages.warning(request, _("You are no longer a member of that account, so you were signed out."))
                return _go(request, reverse("login"))
            if current is not None and seen != current.pk:
                request.session[SESSION_MEMBERSHIP] = current.pk
        return self.get_response(request)


# Pages a signed-in person reaches before the second factor: the code's own pages, leaving,
# the language, and what needs no sign-in at all.
_BEFORE_SECOND_FACTOR = {
    "two-factor-verify", "logout", "set_language", "healthz", "export-feed", "demo-portal-feed",
}


class TwoFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> HttpResponse | None:
        user = request.user
        if not user.is_authenticated or user.is_verified():
            return None
        name = request.resolver_match.url_name if request.resolver_match else None
        if name in _BEFORE_SECOND_FACTOR:
            return None
        if user_has_two_factor(user):
            return _go(request, _with_next("two-factor-verify", request))
        membership = Membership.current_of(user)
        if membership is not None and membership.account.require_two_factor and name != "two-factor-setup":
            messages.info(
                request,
                _("%(account)s asks every member to sign in with a code from an authenticator app too. Set yours up to go on.")
                % {"account": membership.account.name},
            )
            return _go(request, _with_next("two-factor-setup", request))
        return None


def user_has_two_factor(user) -> bool:
    """Whether the person has a confirmed authenticator app (read with the current membership)."""
    membership = Membership.current_of(user)
    if membership is not None:
        return membership.two_factor
    from django_otp.plugins.otp_totp.models import TOTPDevice

    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).exists()
