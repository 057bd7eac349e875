"""How many requests a token (or a signed-in person) may make: DRF's rate throttle, counted on
the shared cache so that every web process counts together; over the rate, 429 with
Retry-After."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from channelmgr.client_ip import client_ip
from syncs.models import ApiToken


class TokenRateThrottle(SimpleRateThrottle):
    scope = "api"

    def get_rate(self) -> str:
        return settings.API_THROTTLE_RATE  # e.g. "600/min"

    def get_cache_key(self, request, view) -> str | None:
        if isinstance(request.auth, ApiToken):
            ident = f"token-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = f"address-{client_ip(request._request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
