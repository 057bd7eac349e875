"""The language a signed-in user chose, remembered on their membership.

LocaleMiddleware picks the language from the language cookie or the browser; for a signed-in
user who chose one in the top bar, that choice wins, on every device and in every new session.
Choosing is Django's ``set_language`` view (it sets the cookie); this middleware also stores
the choice on every one of the user's memberships (``Membership.language``: the same in each
account they belong to) once the view has accepted it.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import translation
from django.views.i18n import LANGUAGE_QUERY_PARAMETER  # "language", the field set_language reads

from syncs.models import Membership


def user_language(user) -> str:
    """The language the user chose ("" when none, or when it is no longer offered)."""
    if user is None or not user.is_authenticated:
        return ""
    membership = Membership.current_of(user)
    language = membership.language if membership else ""
    return language if language in dict(settings.LANGUAGES) else ""


class UserLanguageMiddleware:
    """Goes right after AuthenticationMiddleware (it reads request.user) and after LocaleMiddleware
    (it overrides what that one activated)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        language = user_language(request.user)
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        response = self.get_response(request)
        self._remember_choice(request, response)
        return response

    def _remember_choice(self, request: HttpRequest, response: HttpResponse) -> None:
        # After the view, so that a request CsrfViewMiddleware refused (403) stores nothing.
        if request.method != "POST" or response.status_code not in (204, 302):
            return
        if request.path != reverse("set_language") or not request.user.is_authenticated:
            return
        chosen = request.POST.get(LANGUAGE_QUERY_PARAMETER, "")
        if chosen in dict(settings.LANGUAGES):
            Membership.objects.filter(user=request.user).exclude(language=chosen).update(language=chosen)
