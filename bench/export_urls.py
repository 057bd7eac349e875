"""The project's URLs plus one bench-only baseline: /bench/constant.ics.

The baseline answers with the export's own body, read once at startup from the file named by
BENCH_EXPORT_BODY (written by bench/export.py), with the export's content type. The difference
between it and /ical/<token>.ics is what the export path itself costs: the token lookup, the cache
read, the conditional headers and the read recording.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.http import require_safe

from syncs.views.export import CALENDAR_TYPE


def _load_body() -> bytes:
    body_path = os.environ.get("BENCH_EXPORT_BODY", "")
    if not body_path:
        raise ImproperlyConfigured(
            "BENCH_EXPORT_BODY must name the file of the export body (bench/export.py sets it)."
        )
    return Path(body_path).read_bytes()


BODY = _load_body()


@require_safe  # the same decorator as the export, so only the view bodies differ
def constant_feed(request: HttpRequest) -> HttpResponse:
    return HttpResponse(BODY, content_type=CALENDAR_TYPE)


urlpatterns = [
    path("bench/constant.ics", constant_feed, name="bench-constant"),
    path("", include("channelmgr.urls")),
]
