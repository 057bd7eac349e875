"""Helpers shared by the views that answer htmx requests."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme


def partial_with_toasts(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """Render a fragment for htmx, with the pending messages swapped into the toast area."""
    body = render_to_string(template, context, request=request)
    toasts = render_to_string("syncs/includes/toasts_oob.html", {}, request=request)
    return HttpResponse(body + toasts)


def back(request: HttpRequest, fallback: str) -> HttpResponse:
    """After a plain (JavaScript-less) form post: return to the page the operator came from."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect(fallback)
