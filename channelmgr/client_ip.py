"""The client's address, for the log-in lockout (django-axes' ``AXES_CLIENT_IP_CALLABLE``).

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
