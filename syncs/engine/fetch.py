"""The project's only HTTP client: fetch an imported iCal feed from a user-supplied URL.

Feed URLs are typed in by operators, so every fetch is a potential SSRF. The protective work is
done by requests-hardened (resolve the host once, refuse private and special addresses, pin the
connection to the checked address, set the User-Agent). This module adds what it lacks, each
point backed by a test in ``tests/test_fetch.py``:

* a stricter address policy on top of its filter (it lets ``::127.0.0.1`` and ``fec0::/10``
  through on CPython 3.11.7, and trusts ``is_private`` where "deny unless ``is_global``" is safer),
  and ports other than 80/443 only towards loopback when loopback is allowed;
* string-level URL checks for forms (schemes, credentials, single-label hosts, ports, IP literals
  in any spelling) without DNS;
* redirects followed by hand: each hop is re-validated as a new URL, and a redirect's body is
  never read (requests' own redirect handling decodes it in full with ``resp.content``);
* a total deadline that holds even while a read is blocked, a decoded-size cap, and an error
  classification that never carries the URL (feed URLs are secret capability URLs);
* connections kept alive between polls, per process and per checked address, without cookies.

The fetch itself takes its settings as arguments; Django's settings are read only by what makes
us polite to each portal host (the per-host limit) and by the https check of a connection.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import functools
import hashlib
import http.cookiejar
import ipaddress
import math
import os
import random
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from requests_hardened import Config, HTTPSession
from requests_hardened.ip_filter import EXTRA_BLOCKED_NET_RANGES, InvalidIPAddress
from requests_hardened.ip_filter_adapter import IPFilterAdapter
from urllib3.exceptions import ReadTimeoutError

from syncs.engine.deadlines import at_deadline
from syncs.engine.parse import feed_decoding

if TYPE_CHECKING:
    from collections.abc import Iterator

    from syncs.models import Connection

    IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Airbnb answers 403 to requests without a User-Agent; a contact URL lets portals reach us.
DEFAULT_USER_AGENT = "channelmgr-ical-sync/0.1 (+https://github.com/channelmgr; calendar sync)"
ACCEPT = "text/calendar, */*;q=0.5"
CHUNK_SIZE = 64 * 1024
WEB_PORTS = frozenset({80, 443})
# The URL is wrong or revoked: retrying will not help, so the caller pauses the sync at once.
PERMANENT_4XX = frozenset({401, 403, 404, 410})
# A Retry-After beyond a day is treated as a day; the caller's own backoff is capped lower.
MAX_RETRY_AFTER = 24 * 3600

_SCHEMES = {"http": "http", "https": "https", "webcal": "https", "webcals": "https"}
# Names that always mean this machine (RFC 6761 and Debian's /etc/hosts): exempt from the
# single-label rule so they are reported as what they are, a loopback target.
_LOCALHOST_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
)
# Ranges not caught by ``not is_global`` plus requests-hardened's list on every CPython patch level:
# site-local fec0::/10 is still "global" on 3.11.7, and Teredo tunnels to an embedded IPv4 address.
_MORE_BLOCKED_RANGES = (ipaddress.ip_network("fec0::/10"), ipaddress.ip_network("2001::/32"))
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class FetchResult:
    outcome: str  # "ok" (2xx, body may be b"") or "not_modified" (304)
    status: int
    body: bytes  # decoded; b"" for 304
    etag: str | None  # verbatim, quotes included; on 304 the one we sent if none came back
    last_modified: str | None  # verbatim; on 304 the one we sent if none came back
    final_url: str  # after redirects: a secret, mask it before showing or logging
    content_type: str | None
    elapsed: float  # seconds, all hops included
    bytes_read: int  # body bytes received on the wire (compressed size when gzip)


class FetchError(Exception):
    """A failed fetch. ``code`` says what went wrong; nothing in it ever holds the URL."""

    def __init__(
        self,
        code: str,
        *,
        params: dict | None = None,
        permanent: bool = False,
        retry_after: int | None = None,
    ):
        super().__init__(code)
        self.code = code
        self.params = params or {}
        self.permanent = permanent
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.code} {self.params}" if self.params else self.code

    def __reduce__(self):
        # Keyword-only arguments are lost by Exception's default pickling (Celery, multiprocessing).
        rebuild = partial(
            FetchError, params=self.params, permanent=self.permanent, retry_after=self.retry_after
        )
        return rebuild, (self.code,)


# --------------------------------------------------------------------------- URL checks


def normalise_url(url: str, *, allow_any_port: bool = False) -> str:
    """Return ``url`` with webcal(s):// rewritten to https://, or raise FetchError("invalid_url").

    Refused: schemes other than http(s)/webcal(s), no host, credentials, single-label host names,
    and ports other than 80 and 443 unless ``allow_any_port``.

    Everything after the scheme is kept verbatim: paths and queries hold case-sensitive tokens.
    """
    url = url.strip()
    # isprintable() is False for every whitespace character but the ASCII space.
    if " " in url or not url.isprintable():
        raise _invalid("characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _invalid("syntax") from None
    scheme = _SCHEMES.get(parts.scheme)
    if scheme is None:
        raise _invalid("scheme", scheme=parts.scheme[:20])
    host = parts.hostname
    if not host:
        raise _invalid("host")
    if "@" in parts.netloc:
        raise _invalid("credentials")
    if port is not None and port not in WEB_PORTS and not allow_any_port:
        raise _invalid("port", port=port)
    if _is_single_label(host):
        # "redis" or "db" would be completed by the worker's DNS search domains.
        raise _invalid("single_label_host", host=host)
    return scheme + url[len(parts.scheme) :]


def validate_url(url: str, *, allow_loopback: bool = False, allow_any_port: bool = False) -> str:
    """Normalise ``url`` and refuse targets that are blocked by their spelling alone (no DNS).

    Quick feedback for forms. The check at connect time, on the resolved address, is the
    authoritative one: a name can resolve to anything.
    """
    url = normalise_url(url, allow_any_port=allow_any_port)
    host = urlsplit(url).hostname
    ip = _ip_literal(host)
    blocked = (
        _is_blocked_address(ip, allow_loopback=allow_loopback)
        if ip is not None
        else _is_localhost_name(host) and not allow_loopback
    )
    if blocked:
        raise FetchError("blocked_address", params={"host": host}, permanent=True)
    return url


_PERCENT_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")


def link_identity(url: str) -> str:
    """What makes two links the same feed, for refusing a duplicate: http, https and webcal as
    one; the host in lower case, IDNA-encoded, without a trailing dot; the default port dropped;
    the #fragment dropped (it is never sent); the path and query kept as they are, their tokens
    being case-sensitive (only the hex digits of %-escapes are put in upper case)."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text
    if parts.scheme not in _SCHEMES or not parts.hostname:
        return text
    host = parts.hostname.rstrip(".")
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port not in WEB_PORTS:
        netloc += f":{port}"
    escapes = partial(_PERCENT_ESCAPE.sub, lambda match: match.group(0).upper())
    query = escapes(parts.query)
    return netloc + escapes(parts.path or "/") + (f"?{query}" if query else "")


def mask_url(url: str) -> str:
    """``scheme://host/…`` plus at most the last 4 characters of the file name and its extension.

    For logs and the UI: feed URLs are capability URLs whose secret may sit in the query
    (Airbnb, Booking.com) or in the path (Google's ``/private-<token>/basic.ics``).
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "…"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    stem, dot, ext = parts.path.rpartition("/")[2].rpartition(".")
    if not dot or not ext.isalnum() or len(ext) > 5:
        stem, ext = stem + dot + ext, ""
    tail = stem[-4:] + (f".{ext}" if ext else "")
    hidden = parts.path.strip("/") or parts.query or parts.fragment
    return f"{parts.scheme}://{netloc}/" + (f"…{tail}" if hidden else "")


def _invalid(reason: str, **params: object) -> FetchError:
    return FetchError("invalid_url", params={"reason": reason, **params}, permanent=True)


def _ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, in any form getaddrinfo accepts (``0x7f.1``, ``2130706433``)."""
    if ":" in host:
        try:
            return ipaddress.ip_address(host)
        except ValueError:
            return None
    try:
        # inet_aton is the parser getaddrinfo itself uses for IPv4 numbers; it never does DNS.
        return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
    except (OSError, ValueError):
        return None


def _is_localhost_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name in _LOCALHOST_NAMES or name.endswith(".localhost")


def _is_single_label(host: str) -> bool:
    return (
        "." not in host.rstrip(".") and _ip_literal(host) is None and not _is_localhost_name(host)
    )


def _is_blocked_address(ip: IPAddress, *, allow_loopback: bool) -> bool:
    """Deny unless globally routable; ``allow_loopback`` opens 127.0.0.0/8 and ::1 only."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # the socket reaches the embedded IPv4 address
    if ip.is_loopback:
        return not allow_loopback
    return (
        not ip.is_global
        or ip.is_multicast
        or ip.is_reserved  # includes the deprecated IPv4-compatible ::a.b.c.d
        or any(ip in net for net in EXTRA_BLOCKED_NET_RANGES)
        or any(ip in net for net in _MORE_BLOCKED_RANGES)
    )


# --------------------------------------------------------------------------- transport


_local = threading.local()  # per thread: the running fetch's deadline
# The kept-alive sessions of this process, one per (allow_loopback, user_agent), shared by its
# threads: each thread's own would keep its own connections to every portal, beyond what the
# per-host limit lets it use.
_sessions: dict[tuple[bool, str], _FeedSession] = {}
_sessions_lock = threading.Lock()


def _forget_after_fork() -> None:
    # A forked child (Celery's prefork pool) must not share the parent's sockets.
    global _local, _sessions, _sessions_lock
    _local, _sessions, _sessions_lock = threading.local(), {}, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


class _Deadline:
    """The total time budget of one fetch, enforced even while a read is blocked.

    The read timeout restarts with every byte, and urllib3 fills a whole 64 KiB chunk before
    iter_content yields it, so a server dripping a byte every 0.3 s neither trips the read
    timeout nor lets the streaming loop run (measured: a 1,000-byte Content-Length body blocked
    the loop for 6 s). At the deadline the watchdog (syncs.engine.deadlines) shuts down every socket the fetch used,
    new or kept alive, which ends any blocked read at once; the caller then reports a timeout.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires = time.monotonic() + seconds
        self.fired = False
        self._finished = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._outer: _Deadline | None = None

    def __enter__(self) -> _Deadline:
        self._outer = getattr(_local, "deadline", None)
        _local.deadline = self
        at_deadline(self.expires, self.fire)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _local.deadline = self._outer
        with self._lock:
            # From now on the sockets belong to the session's pool and the next fetch.
            self._finished = True
            self._sockets = []

    def remaining(self) -> float:
        return self.expires - time.monotonic()

    def expired(self) -> bool:
        return self.fired or self.remaining() <= 0

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if not self.fired:
                if not self._finished:
                    self._sockets.append(sock)
                return
        _shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.fired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shutdown(sock)


def _running_deadline() -> _Deadline | None:
    return getattr(_local, "deadline", None)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the fetch itself
        sock.shutdown(socket.SHUT_RDWR)


@functools.cache
def _watched(base: type) -> type:
    """A urllib3 connection class whose sockets the running fetch's deadline can cut: a new
    socket once connected, a kept-alive one as soon as a request is sent on it."""

    class WatchedConnection(base):
        def connect(self) -> None:
            super().connect()
            if deadline := _running_deadline():
                deadline.watch(self.sock)

        def request(self, *args, **kwargs) -> None:
            if self.sock is not None and (deadline := _running_deadline()):
                deadline.watch(self.sock)
            super().request(*args, **kwargs)

    return WatchedConnection


class _GuardedAdapter(IPFilterAdapter):
    """requests-hardened's adapter (resolve once, filter, pin) plus our stricter policy.

    Connections are pooled by the pinned address (and, for TLS, the host name), so a kept-alive
    connection only ever serves the address that was checked for it.
    """

    def __init__(self, *, is_https_proto: bool, allow_loopback: bool):
        super().__init__(is_https_proto=is_https_proto, allow_loopback=allow_loopback)
        self._loopback_allowed = allow_loopback
        # Kept: the connections of KEPT_ADDRESSES addresses, KEPT_PER_ADDRESS each (the most a
        # polite client has in flight to one host); a busier address opens and closes the rest.
        self.init_poolmanager(KEPT_ADDRESSES, KEPT_PER_ADDRESS)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        # The parent resolves the host once and replaces it with the pinned address.
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        pinned = ipaddress.ip_address(host_params["host"].strip("[]"))
        if _is_blocked_address(pinned, allow_loopback=self._loopback_allowed):
            raise InvalidIPAddress(pinned)
        # validate_url lifts the port rule when loopback is allowed (test servers use ephemeral
        # ports); only a loopback address may actually use it.
        port = host_params["port"]
        if port not in (None, *WEB_PORTS) and not pinned.is_loopback:
            raise InvalidIPAddress(pinned)
        return host_params, pool_kwargs

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        pool = super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
        pool.ConnectionCls = _watched(type(pool).ConnectionCls)
        return pool


# The connection pools a process keeps alive: how many portal addresses, how many to each.
KEPT_ADDRESSES = 256
KEPT_PER_ADDRESS = 8


class _FeedSession(HTTPSession):
    """requests-hardened's session with our adapters, no environment, no cookies ever kept, and
    no redirect pre-read. Shared by a process's threads: nothing in it belongs to one fetch."""

    def __init__(self, config: Config):
        super().__init__(config)
        # Replace the adapters HTTPSession mounted with subclasses that keep their filter.
        for prefix, is_https in (("http://", False), ("https://", True)):
            adapter = _GuardedAdapter(
                is_https_proto=is_https, allow_loopback=config.ip_filter_allow_loopback_ips
            )
            self.mount(prefix, adapter)
        # An inherited HTTP(S)_PROXY would make the filter check the proxy, not the target,
        # and ~/.netrc would hand our credentials to whatever host a feed URL names.
        self.trust_env = False
        # One operator's fetch must never carry what a portal set during another's: no cookie
        # is ever stored (a jar that refuses every domain), so none is ever sent.
        self.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))

    def resolve_redirects(self, *args, **kwargs) -> Iterator:
        # Session.send calls this even with allow_redirects=False (to fill Response.next), and
        # it reads the redirect's body in full with resp.content, stream=True or not: a gzip
        # bomb behind a 302 took RSS from 110 to 460 MiB. We follow redirects ourselves.
        return iter(())


def _session(*, allow_loopback: bool, user_agent: str) -> _FeedSession:
    """This process's session for these settings, kept between fetches.

    Keeping connections alive is what real portals expect of a poller that comes back every few
    minutes: most polls of one portal then skip the TCP and TLS handshakes (tens of
    milliseconds each against a real portal). The session's pools are thread-safe, and it
    keeps no cookies (see _FeedSession).
    """
    key = (allow_loopback, user_agent)
    session = _sessions.get(key)
    if session is None:
        with _sessions_lock:
            session = _sessions.get(key)
            if session is None:
                session = _sessions[key] = _FeedSession(
                    Config(
                        ip_filter_enable=True,
                        ip_filter_allow_loopback_ips=allow_loopback,
                        never_redirect=True,  # followed by _follow_redirects, one checked hop at a time
                        default_timeout=None,  # every request passes its own, within the deadline
                        user_agent_override=user_agent,
                    )
                )
    return session


def close_kept_connections() -> None:
    """Close this process's kept-alive connections, for when the servers they lead to go away
    (a test's portals): the other end stops waiting for a next request that will never come."""
    with _sessions_lock:
        for session in _sessions.values():
            session.close()
        _sessions.clear()


# --------------------------------------------------------------------------- fetching


def fetch_feed(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    allow_loopback: bool = False,
    user_agent: str = DEFAULT_USER_AGENT,
    connect_timeout: float = 5.0,
    read_timeout: float = 10.0,
    deadline: float = 30.0,
    max_bytes: int = 5 * 1024 * 1024,
    max_redirects: int = 3,
) -> FetchResult:
    """GET a feed. Returns "ok" or "not_modified"; raises FetchError for everything else.

    ``allow_loopback`` is for tests and the demo only: it permits 127.0.0.0/8 and ::1 (on any
    port), never any other private range.
    """
    started = time.monotonic()
    url = validate_url(url, allow_loopback=allow_loopback, allow_any_port=allow_loopback)
    headers = {"Accept": ACCEPT, "Accept-Encoding": "gzip"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    session = _session(allow_loopback=allow_loopback, user_agent=user_agent)
    with _Deadline(deadline) as budget:
        response, url = _follow_redirects(
            session,
            url,
            headers=headers,
            budget=budget,
            timeouts=(connect_timeout, read_timeout),
            max_redirects=max_redirects,
            allow_loopback=allow_loopback,
        )
        with response:
            return _result(
                response,
                url=url,
                budget=budget,
                max_bytes=max_bytes,
                sent=(etag, last_modified),
                started=started,
            )


def _follow_redirects(
    session: requests.Session,
    url: str,
    *,
    headers: dict[str, str],
    budget: _Deadline,
    timeouts: tuple[float, float],
    max_redirects: int,
    allow_loopback: bool,
) -> tuple[requests.Response, str]:
    """Send, and follow redirects with each hop validated like a URL typed into the form.

    More than ``max_redirects`` is FetchError("invalid_url", reason "too_many_redirects"),
    transient: a portal's redirect loop is usually a temporary misconfiguration.
    """
    for hop in range(max_redirects + 1):
        response = _send(session, url, headers=headers, budget=budget, timeouts=timeouts)
        location = session.get_redirect_target(response)
        if location is None:
            return response, url
        # Closing without reading: a redirect body is never needed and may be a bomb too.
        response.close()
        if hop == max_redirects:
            break
        url = validate_url(
            urljoin(url, location), allow_loopback=allow_loopback, allow_any_port=allow_loopback
        )
    raise FetchError("invalid_url", params={"reason": "too_many_redirects", "limit": max_redirects})


def _send(
    session: requests.Session,
    url: str,
    *,
    headers: dict[str, str],
    budget: _Deadline,
    timeouts: tuple[float, float],
) -> requests.Response:
    remaining = budget.remaining()
    if remaining <= 0:
        raise _timeout_error(budget)
    timeout = (min(timeouts[0], remaining), min(timeouts[1], remaining))
    try:
        return session.get(
            url, headers=headers, stream=True, allow_redirects=False, timeout=timeout
        )
    except requests.RequestException as exc:
        # "from None": the chained exception's message contains the URL, a secret.
        raise _error_for(exc, budget=budget, host=urlsplit(url).hostname) from None


def _result(
    response: requests.Response,
    *,
    url: str,
    budget: _Deadline,
    max_bytes: int,
    sent: tuple[str | None, str | None],
    started: float,
) -> FetchResult:
    status = response.status_code
    content_type = response.headers.get("Content-Type")
    if status == 304:
        # A 304 has no body (http.client reads none); consuming it hands the kept-alive
        # connection back to the pool instead of closing it.
        _read_body(response, budget=budget, max_bytes=0, host=urlsplit(url).hostname)
        return FetchResult(
            outcome="not_modified",
            status=status,
            body=b"",
            etag=response.headers.get("ETag", sent[0]),
            last_modified=response.headers.get("Last-Modified", sent[1]),
            final_url=url,
            content_type=content_type,
            elapsed=time.monotonic() - started,
            bytes_read=0,
        )
    if not 200 <= status < 300:
        raise _status_error(response)
    body = _unpacked(_read_body(response, budget=budget, max_bytes=max_bytes, host=urlsplit(url).hostname), max_bytes)
    _check_is_calendar(body, content_type)
    return FetchResult(
        outcome="ok",
        status=status,
        body=body,
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        final_url=url,
        content_type=content_type,
        elapsed=time.monotonic() - started,
        bytes_read=response.raw.tell(),
    )


def _read_body(
    response: requests.Response, *, budget: _Deadline, max_bytes: int, host: str
) -> bytes:
    """Stream the decoded body, cut at ``max_bytes`` and at the deadline.

    Never response.content: that decodes a gzip bomb in full before any check can run.
    """
    too_large = FetchError("too_large", params={"limit": max_bytes})
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    try:
        for chunk in response.iter_content(CHUNK_SIZE):
            body += chunk
            if len(body) > max_bytes:
                raise too_large
            if budget.expired():
                raise _timeout_error(budget)
    except requests.RequestException as exc:
        raise _error_for(exc, budget=budget, host=host) from None
    if budget.fired:
        # The watchdog's shutdown looks like a normal end to a body without Content-Length.
        raise _timeout_error(budget)
    return bytes(body)


def _unpacked(body: bytes, max_bytes: int) -> bytes:
    """A gzip file served as the body itself, without ``Content-Encoding`` (some servers send a
    stored ``.ics.gz`` that way), unpacked within the same cap as any body: a bomb stops at it.

    A body cut off inside the gzip data gives what it held; the parser then finds the calendar
    incomplete, which is what it is."""
    if not body.startswith(_GZIP_MAGIC):
        return body
    unpacked = bytearray()
    rest = body
    while rest.startswith(_GZIP_MAGIC):  # a gzip file may hold several members, one after another
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            unpacked += member.decompress(rest, max_bytes + 1 - len(unpacked))
        except zlib.error:
            return body if not unpacked else bytes(unpacked)  # not gzip after all: judged as it is
        if len(unpacked) > max_bytes or member.unconsumed_tail:
            raise FetchError("too_large", params={"limit": max_bytes})
        rest = member.unused_data
    return bytes(unpacked)


def _check_is_calendar(body: bytes, content_type: str | None) -> None:
    """Lenient on the Content-Type header, strict on the body (``feed_decoding.sniff`` reads it in
    any encoding a feed comes in). An empty body is an empty calendar (Booking.com serves 0
    bytes); anything else must start with BEGIN:VCALENDAR."""
    kind = feed_decoding.sniff(body)
    if kind in (feed_decoding.CALENDAR, feed_decoding.EMPTY):
        return
    raise FetchError(
        "not_ical",
        params={"content_type": (content_type or "")[:100], "looks_like": kind},
        permanent=True,
    )


# --------------------------------------------------------------------------- classification


def _status_error(response: requests.Response) -> FetchError:
    status = response.status_code
    if 300 <= status < 400:
        # requests' get_redirect_target follows 301/302/303/307/308 with a Location. What is
        # left (300, 305 "use this proxy", a redirect without Location) we may not follow.
        return FetchError(
            "invalid_url", params={"reason": "unsupported_redirect", "status": status}
        )
    retry_after = None
    if status in (429, 503):
        retry_after = _parse_retry_after(response.headers.get("Retry-After"))
    params = {"status": status}
    if retry_after is not None:
        params["retry_after"] = retry_after
    if status == 429:
        return FetchError("rate_limited", params=params, retry_after=retry_after)
    if status >= 500:
        return FetchError("http_5xx", params=params, retry_after=retry_after)
    return FetchError("http_4xx", params=params, permanent=status in PERMANENT_4XX)


def _parse_retry_after(value: str | None) -> int | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped at a day."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        seconds = int(value) if len(value) < 10 else MAX_RETRY_AFTER
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        # parsedate_to_datetime returns a naive value for "-0000"; HTTP-dates are always GMT.
        timestamp = when.timestamp() if when.tzinfo else when.replace(tzinfo=dt.UTC).timestamp()
        seconds = math.ceil(timestamp - time.time())
    return min(max(seconds, 0), MAX_RETRY_AFTER)


def _error_for(
    exc: requests.RequestException, *, budget: _Deadline, host: str | None
) -> FetchError:
    """Map a requests exception to a FetchError that carries the host name but never the URL."""
    if budget.fired:
        # The watchdog's shutdown surfaces as a broken connection.
        return _timeout_error(budget)
    if isinstance(exc, InvalidIPAddress):
        return FetchError("blocked_address", params={"host": host}, permanent=True)
    if isinstance(exc, requests.exceptions.InvalidURL):
        return _invalid("host")  # a name IDNA cannot encode (validate_url does not try)
    if isinstance(exc, requests.exceptions.SSLError):
        return FetchError("tls", params={"host": host})
    causes = list(_causes(exc))
    if isinstance(exc, requests.Timeout) or any(isinstance(c, ReadTimeoutError) for c in causes):
        # iter_content reports a read timeout as a ConnectionError wrapping ReadTimeoutError.
        return FetchError("timeout", params={"host": host})
    if any(isinstance(c, socket.gaierror) for c in causes):
        return FetchError("dns", params={"host": host})
    # The OS-level error ("ConnectionRefusedError") is the useful diagnostic, and has no URL.
    root = next((c for c in causes if type(c).__module__ == "builtins"), exc)
    return FetchError("connect", params={"host": host, "error": type(root).__name__})


def _timeout_error(budget: _Deadline) -> FetchError:
    return FetchError("timeout", params={"deadline": budget.seconds})


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: requests and urllib3 nest the real error in args and reason."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = (current.__cause__, current.__context__, getattr(current, "reason", None))
        pending.extend(e for e in (*wrapped, *current.args) if isinstance(e, BaseException))


def https_variant_works(url: str, *, allow_loopback: bool = False, user_agent: str = DEFAULT_USER_AGENT,
                        deadline: float = 15.0) -> bool:
    """Whether the https:// version of an http:// link answers with a calendar (the seed's
    "add an s" to http://)."""
    try:
        fetch_feed(
            "https://" + url[len("http://"):], allow_loopback=allow_loopback, user_agent=user_agent, deadline=deadline
        )
    except FetchError:
        return False
    return True


# --------------------------------------------------------------------------- posting (webhooks)


def post_json(
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    allow_loopback: bool = False,
    user_agent: str = DEFAULT_USER_AGENT,
    connect_timeout: float = 5.0,
    read_timeout: float = 10.0,
    deadline: float = 15.0,
) -> int:
    """POST a JSON body to an operator's webhook URL, with the feeds' protections (the same
    address policy, pinned connection and total deadline), and return the HTTP status.

    Redirects are not followed (a 3xx is returned as it is); the answer's body is read up to
    64 KiB and dropped. Raises FetchError for what keeps the request from being answered.
    """
    url = validate_url(url, allow_loopback=allow_loopback, allow_any_port=allow_loopback)
    session = _session(allow_loopback=allow_loopback, user_agent=user_agent)
    sent = {"Content-Type": "application/json", **headers}
    host = urlsplit(url).hostname
    with _Deadline(deadline) as budget:
        timeout = (min(connect_timeout, budget.remaining()), min(read_timeout, budget.remaining()))
        try:
            response = session.post(url, data=body, headers=sent, stream=True, allow_redirects=False, timeout=timeout)
        except requests.RequestException as exc:
            raise _error_for(exc, budget=budget, host=host) from None
        with response:
            with contextlib.suppress(FetchError):  # an answer too long or slow is still an answer
                _read_body(response, budget=budget, max_bytes=64 * 1024, host=host)
            return response.status_code


# --------------------------------------------------------------------------- politeness
# Being a polite client of each portal host, within this process.
#
# At most ``FETCH_PER_HOST_LIMIT`` fetches are in flight to one host at a time, and fewer to a
# host we know little of: a host starts with two, and may have one more for every fetch it has
# answered in a row, up to the limit. A host whose last fetch ran to its deadline is given one
# fetch at a time until one answers. So a portal that hangs holds one or two worker slots, not a
# slot per connection it serves. A host that asked us to wait (429, or a ``Retry-After`` on any
# answer) is not asked again before that time.
#
# A sync that may not ask its host now is not made to wait: it gives its lease back and comes
# again when the host is free (``syncs.engine.lease.connection_defer``), with a little jitter so
# that the deferred syncs of one host do not return on the same second.
#
# Limits are counted per worker process: with W processes a host sees at most W times the limit.


# A host that answered 429 without saying how long to wait is left alone this long.
DEFAULT_BACKOFF_SECONDS = 60
# Deferred syncs come back after the wait plus up to this much.
DEFER_JITTER_SECONDS = 30
# Codes of a fetch that ran out of time: the host may be hanging.
HANGING = frozenset({"timeout"})


def host_of(url: str) -> str:
    try:
        return (urlsplit(url.strip()).hostname or "").lower()
    except ValueError:
        return ""


# A host we know nothing of may have this many fetches in flight.
FIRST_SLOTS = 2


@dataclass
class _Host:
    in_flight: int = 0
    answered: int = 0  # fetches answered in a row (capped at the limit)
    not_before: float = 0.0  # time.monotonic()
    hanging: bool = False

    def slots(self, limit: int) -> int:
        return 1 if self.hanging else min(limit, FIRST_SLOTS + self.answered)


class HostSlots:
    """The fetches in flight per host, and when each host may be asked again. One small entry
    per host this process has asked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}

    def take(self, host: str, *, limit: int | None = None) -> float | None:
        """Take a slot for ``host`` and return None, or return how many seconds to come back
        after without taking one."""
        limit = limit or settings.FETCH_PER_HOST_LIMIT
        now = time.monotonic()
        with self._lock:
            state = self._hosts.setdefault(host, _Host())
            if state.not_before > now:
                return state.not_before - now
            if state.in_flight >= state.slots(limit):
                return 0.0
            state.in_flight += 1
            return None

    def give_back(self, host: str, *, error_code: str | None = None, retry_after: int | None = None) -> None:
        """Give the slot back, with what the fetch learnt about the host."""
        now = time.monotonic()
        with self._lock:
            state = self._hosts.setdefault(host, _Host())
            state.in_flight = max(state.in_flight - 1, 0)
            state.hanging = error_code in HANGING
            state.answered = 0 if state.hanging else min(state.answered + 1, settings.FETCH_PER_HOST_LIMIT)
            if retry_after or error_code == "rate_limited":
                state.not_before = max(state.not_before, now + (retry_after or DEFAULT_BACKOFF_SECONDS))

    def in_flight(self, host: str) -> int:
        with self._lock:
            state = self._hosts.get(host)
            return state.in_flight if state else 0


def defer_seconds(wait: float) -> float:
    """How long a sync refused a slot stays away: the host's wait, plus jitter."""
    return wait + random.uniform(1, DEFER_JITTER_SECONDS)


SLOTS = HostSlots()


# --------------------------------------------------------------------------- the https check


def https_works_or_check(connection: Connection) -> bool | None:
    """After an http:// URL failed, try https:// once and remember whether it answers a calendar."""
    if not connection.import_url.lower().startswith("http://") or connection.https_works is not None:
        return connection.https_works
    return https_variant_works(
        connection.import_url, allow_loopback=settings.FETCH_ALLOW_LOOPBACK, user_agent=settings.FETCH_USER_AGENT
    )


# --------------------------------------------------------------------------- the fingerprint

# A DTSTAMP line and its folded continuations, each line after an LF (see body_fingerprint).
_DTSTAMP_LINES = re.compile(rb"\nDTSTAMP[;:][^\n]*(?:\n[ \t][^\n]*)*", re.IGNORECASE)


def body_fingerprint(body: bytes) -> str:
    """A hash of the body that ignores DTSTAMP lines and line-ending style.

    Booking.com stamps every event with the fetch time, so without this an unchanged feed would
    look changed on every run. It runs on every poll that gets a 200, so it works on the whole
    body at once (line by line in Python took 0.3 ms for 50 events); the hash is the same as the
    line-by-line one's, so fingerprints stored before still match (tests compare the two).
    """
    # Line breaks become LF, and an LF goes in front so that the first line is matched like the
    # others: DTSTAMP lines, with their folded continuations, are cut with the LF before them.
    text = b"\n" + body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return hashlib.sha256(_DTSTAMP_LINES.sub(b"", text)[1:]).hexdigest()
