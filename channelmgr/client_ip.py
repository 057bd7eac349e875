"""Who a log-in attempt comes from, for the lockout: the client's address (django-axes'
``AXES_CLIENT_IP_CALLABLE``) and the username tried (``AXES_USERNAME_CALLABLE``).

Nothing a client says about itself is trusted by default: the address is the connection's
(``REMOTE_ADDR``). Behind reverse proxies, ``PROXY_COUNT`` says how many stand in front of
gunicorn; each appends the address it received the request from to ``X-Forwarded-For``, so the
client's address is the ``PROXY_COUNT``-th from the right end. Entries further left were written
by the client and are never read. A header too short or not an address means the request did
not come through the proxies as declared: the connection's address is used.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

# django-axes stores the username tried in a column of this size (AccessAttempt.username).
USERNAME_KEPT = 255


def client_username(request: HttpRequest, credentials: dict | None = None) -> str:
    """The username tried, as django-axes reads it, cut to what it stores: a 1,000-character
    username is a failed log-in like any other, not a database error. Usernames are at most
    150 characters, so no two real ones are cut to the same."""
    field = getattr(settings, "AXES_USERNAME_FORM_FIELD", "username")
    source = credentials if credentials else getattr(request, "POST", {})
    return str(source.get(field) or "")[:USERNAME_KEPT]


def client_ip(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    count = settings.PROXY_COUNT
    if not count:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(forwarded) < count:
        return remote
    try:
        return str(ipaddress.ip_address(forwarded[-count]))
    except ValueError:
        return remote
