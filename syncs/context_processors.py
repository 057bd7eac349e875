from __future__ import annotations

from django.conf import settings

# The menu's entries, each with the page it opens and the routes that belong to it: the menu
# marks where the reader is (aria-current="page" on that page itself, "true" below it).
NAVIGATION = {
    "home": ("home",),
    "property-list": ("property-", "connection-", "block-"),
    "timeline": ("timeline", "bulk-"),
    "activity": ("activity",),
    "members": ("member", "invitation-"),
    "my-alerts": ("my-alerts",),
    "webhooks": ("webhook",),
    "account-settings": ("account-settings",),
    "profile": ("profile", "password_change", "two-factor-", "recovery-codes"),
}


def site(request) -> dict:
    return {"SITE_URL": settings.SITE_URL, "DEMO_MODE": settings.DEMO_MODE, "nav_current": _nav_current(request)}


def _nav_current(request) -> dict[str, str]:
    """{menu entry: "page" or "true"} for the entry the page belongs to (none for other pages),
    the entry named as its route with underscores ("property_list"), as templates can read it."""
    match = getattr(request, "resolver_match", None)
    name = match.url_name if match else None
    if not name:
        return {}
    for entry, prefixes in NAVIGATION.items():
        key = entry.replace("-", "_")
        if name == entry:
            return {key: "page"}
        if any(name.startswith(prefix) for prefix in prefixes):
            return {key: "true"}
    return {}
