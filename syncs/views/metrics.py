"""/metrics for Prometheus: a token from the environment (METRICS_TOKEN), else 404."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from syncs.metrics import metrics_text


@require_safe
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404  # not configured: the route does not exist
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not given or not constant_time_compare(given, token):
        response = HttpResponse("token required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
