from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from syncs.demo import demo_feed


@require_GET
def demo_portal_feed(request: HttpRequest, portal: str, key: str) -> HttpResponse:
    """A portal's feed, played by the app itself in demo mode (404 otherwise)."""
    if not settings.DEMO_MODE:
        raise Http404
    body = demo_feed(key)
    if body is None:
        raise Http404
    return HttpResponse(body, content_type="text/calendar; charset=utf-8")
