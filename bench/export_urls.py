"""The project's URLs plus one bench-only baseline, /bench/constant.ics: the export's own body
(from the file BENCH_EXPORT_BODY names) with its content type, so that the difference between it
and /ical/<token>.ics is what the export path itself costs."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.http import require_safe


@functools.cache
def body() -> bytes:
    return Path(os.environ["BENCH_EXPORT_BODY"]).read_bytes()


@require_safe  # as the export, so that only the views' bodies differ
def constant_feed(request):
    return HttpResponse(body(), content_type="text/calendar; charset=utf-8")


urlpatterns = [path("bench/constant.ics", constant_feed), path("", include("channelmgr.urls"))]
