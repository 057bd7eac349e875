"""Which language a person reads: one rule for every page (the sign-in's code page too) and
every email, decided by ``reader_language`` and nowhere else.

1. The language the person chose, saved on their memberships (``Membership.language``, the
   same in each account they belong to). Choosing in the top bar of any page saves it; a choice
   made on the log-in page (or any page before signing in) is saved when they sign in, so the
   page right after it (the code page of two-factor sign-in) already speaks it. An invitation
   carries the language its owner chose for the new member, until the member chooses.
2. Else, on a page: this browser's, as Django reads it (the language cookie, then the browser's
   Accept-Language).
3. Else the site's, ``LANGUAGE_CODE`` (English). Emails have no browser: 1, then 3.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils import translation

from syncs.models import Membership

# A choice made before signing in, kept in the session until the sign-in saves it.
CHOSEN_BEFORE_SIGN_IN = "syncs_language_chosen"


def offered(language: str | None) -> str:
    """``language`` if the site offers it, else ""."""
    return language if language and language in dict(settings.LANGUAGES) else ""


def chosen_language(user) -> str:
    """The language the signed-in person chose ("" when none, or when it is no longer offered)."""
    if user is None or not user.is_authenticated:
        return ""
    membership = Membership.current_of(user)
    return offered(membership.language if membership else "")


def reader_language(*, chosen: str = "", request: HttpRequest | None = None) -> str:
    """The language to speak: ``chosen`` (the reader's saved choice), else the browser's when
    there is a request, else the site's."""
    if offered(chosen):
        return chosen
    if request is not None:
        return translation.get_language_from_request(request)
    return settings.LANGUAGE_CODE


def language_choose(*, request: HttpRequest, language: str) -> None:
    """Remember a choice the language selector accepted: on every membership of a signed-in
    person; in the session of someone not signed in yet, for ``language_adopt_at_sign_in``."""
    if not offered(language):
        return
    if request.user.is_authenticated:
        Membership.objects.filter(user=request.user).exclude(language=language).update(language=language)
        Membership.forget_current(request.user)
    else:
        request.session[CHOSEN_BEFORE_SIGN_IN] = language


def language_adopt_at_sign_in(*, request: HttpRequest | None, user) -> None:
    """At sign-in: a language chosen just before, on the log-in page, is the person's newest
    choice, and is saved as theirs."""
    session = getattr(request, "session", None)
    language = offered(session.pop(CHOSEN_BEFORE_SIGN_IN, "")) if session is not None else ""
    if language:
        Membership.objects.filter(user=user).exclude(language=language).update(language=language)
        Membership.forget_current(user)
