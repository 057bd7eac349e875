"""Request middleware: the language a person reads, and text without control characters.

LocaleMiddleware picks the language from the language cookie or the browser; then
``UserLanguageMiddleware`` applies the one rule of ``syncs.languages`` (a signed-in person's
saved choice wins, on every device and in every new session) and remembers a choice the
language selector (Django's ``set_language``, which sets the cookie) accepted.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, QueryDict
from django.urls import reverse
from django.utils import translation
from django.views.i18n import LANGUAGE_QUERY_PARAMETER  # "language", the field set_language reads

from syncs.clean_text import clean, has_control_characters
from syncs.languages import chosen_language, language_choose, reader_language


class UserLanguageMiddleware:
    """Goes right after AuthenticationMiddleware (it reads request.user) and after LocaleMiddleware
    (it overrides what that one activated)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        language = reader_language(chosen=chosen_language(request.user), request=request)
        translation.activate(language)
        request.LANGUAGE_CODE = language
        response = self.get_response(request)
        self._remember_choice(request, response)
        return response

    def _remember_choice(self, request: HttpRequest, response: HttpResponse) -> None:
        # After the view, so that a request CsrfViewMiddleware refused (403) stores nothing.
        if request.method != "POST" or response.status_code not in (204, 302):
            return
        if request.path != reverse("set_language"):
            return
        language_choose(request=request, language=request.POST.get(LANGUAGE_QUERY_PARAMETER, ""))


class ControlCharactersMiddleware:
    """Removes control characters from query strings and form posts before any view, form or
    admin page reads them (``syncs.clean_text``): a NUL in ``?q=`` or in a note is not an error
    page (PostgreSQL refuses a NUL in text), and nothing else they could carry is kept."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Only query strings with escapes or raw controls are parsed here: most requests, the
        # export's among them, have none, and Django parses lazily.
        query = request.META.get("QUERY_STRING", "")
        if "%" in query or has_control_characters(query):
            request.GET = _cleaned(request.GET)
        if request.method == "POST" and request.content_type in _FORM_TYPES:
            request.POST = _cleaned(request.POST)
        return self.get_response(request)


_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def _cleaned(data: QueryDict) -> QueryDict:
    """``data`` itself when it holds no control character, else a cleaned copy."""
    if not any(has_control_characters(key) or any(map(has_control_characters, values)) for key, values in data.lists()):
        return data
    cleaned = QueryDict(mutable=True, encoding=data.encoding)
    for key, values in data.lists():
        cleaned.setlist(clean(key), [clean(value) for value in values])
    cleaned._mutable = False
    return cleaned


class PrivatePagesMiddleware:
    """``Cache-Control: private, no-store`` on every answer to a signed-in person that does not
    set its own: a page of an account's syncs, links and members stays out of shared caches and
    off the disk of the browser of whoever uses the machine next, and the back button after
    signing out does not show it again.

    Goes right after AuthenticationMiddleware. Static files (whitenoise, before it) and the
    export feed (which says ``no-cache`` itself, for portals' validators) keep their own caching.
    """

    VALUE = "private, no-store"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and not response.has_header("Cache-Control"):
            response["Cache-Control"] = self.VALUE
        return response
