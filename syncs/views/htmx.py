"""Helpers shared by the views that answer htmx requests."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme


def partial_with_toasts(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """Render a fragment for htmx, with the pending messages swapped into the toast area."""
    body = render_to_string(template, context, request=request)
    toasts = render_to_string("syncs/includes/toasts_oob.html", {}, request=request)
    return HttpResponse(body + toasts)


def next_path(request: HttpRequest, fallback: str = "") -> str:
    """The page to go to next that the request names (``next``, posted or in the query), when it
    is a path of this site; else ``fallback``.

    Only a path: "abc" or "javascript:..." are not pages, and whatever is returned goes to
    HttpResponseRedirect as it is (``redirect()`` would try "abc" as a URL name and fail).
    """
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback


def back(request: HttpRequest, fallback: str) -> HttpResponse:
    """After a plain (JavaScript-less) form post: return to the page the operator came from."""
    return HttpResponseRedirect(next_path(request, fallback))
