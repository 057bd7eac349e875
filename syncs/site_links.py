"""Absolute links to the dashboard's pages, for what is read outside it (emails, webhooks,
digests): the site's address (SITE_URL) and the page's route."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse


def site_link(route: str, **kwargs) -> str:
    return settings.SITE_URL + reverse(route, kwargs=kwargs or None)


def connection_fix_url(connection) -> str:
    """The absolute link to the connection's fix checklist."""
    return site_link("connection-fix", connection_id=connection.pk)
