from __future__ import annotations

from django.conf import settings


def site(request) -> dict:
    return {"SITE_URL": settings.SITE_URL, "DEMO_MODE": settings.DEMO_MODE}
