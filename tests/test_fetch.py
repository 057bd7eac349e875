"""Tests for syncs/engine/fetch.py: portals are played by servers on 127.0.0.1.

Nothing here may reach another machine. Every test runs behind ``network``: a fake resolver that
answers only IP literals and the names a test registers (no DNS query ever leaves), urllib3's
``create_connection`` replaced by a recorder that refuses any non-loopback address, and
``socket.socket.connect`` refusing the same as a last line of defence.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import gzip
import ipaddress
import json
import logging
import pickle
import resource
import socket
import threading
import time
import traceback
import zlib
from dataclasses import dataclass, field

import pytest
import urllib3
import urllib3.util.connection
from packaging.version import Version
from pytest_httpserver import HTTPServer
from werkzeug import Response

from syncs.engine import fetch
from syncs.engine.fetch import (
    ACCEPT,
    DEFAULT_USER_AGENT,
    FetchError,
    FetchResult,
    close_kept_connections,
    fetch_feed,
    mask_url,
    normalise_url,
    validate_url,
)

pytestmark = pytest.mark.timeout(20)

CALENDAR = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Airbnb Inc//Hosting Calendar 1.0//EN\r\n"
    b"BEGIN:VEVENT\r\nUID:1@airbnb.com\r\nDTSTART;VALUE=DATE:20270301\r\n"
    b"DTEND;VALUE=DATE:20270304\r\nSUMMARY:Reserved\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)
SECRET = "s3cr3t-t0ken"
# A public address (example.com's). The network guard refuses to connect to it.
PUBLIC_IP = "93.184.215.14"
MIB = 1024 * 1024

# Addresses a URL or a resolver may produce that must never be connected to (S1, S3).
BLOCKED_ADDRESSES = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "0.0.0.0",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "192.0.0.170",  # 192.0.0.0/24
    "198.18.0.1",  # benchmarking
    "192.88.99.1",  # 6to4 relay anycast
    "224.0.0.1",  # multicast
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "::",  # unspecified: Mastodon's CVE-2024-37903 regression case
    "::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible: requests-hardened alone lets it through
    "fd00:ec2::254",  # AWS metadata over IPv6
    "fe80::1",  # link-local
    "fec0::1",  # deprecated site-local: requests-hardened alone lets it through
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::1",  # local-use NAT64
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:db8::1",  # documentation
    "ff02::1",  # multicast
]
LOOPBACK_ADDRESSES = {"127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1"}
# Spellings that getaddrinfo resolves to 127.0.0.1 or 0.0.0.0 but ip_address() rejects (S2).
ODD_SPELLINGS = ["2130706433", "0x7f000001", "0177.0.0.1", "017700000001", "127.1", "0", "0x7f.1"]


def url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


LITERAL_URLS = [
    f"http://{url_host(a)}/calendar/{SECRET}.ics?s={SECRET}" for a in BLOCKED_ADDRESSES
] + [f"http://{spelling}/feed?t={SECRET}" for spelling in ODD_SPELLINGS]


# --------------------------------------------------------------------------- fixtures


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """What glibc's getaddrinfo returns for a numeric host without asking DNS."""
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host)
    with contextlib.suppress(OSError):
        return ipaddress.IPv4Address(socket.inet_aton(host))
    return None


def _addrinfo(address: str, port: int | None) -> tuple:
    if ipaddress.ip_address(address).version == 4:
        return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))
    return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port or 0, 0, 0))


@dataclass
class Network:
    """The fake resolver's answers and a record of what the code under test asked for."""

    lookups: list[str] = field(default_factory=list)
    connects: list[tuple[str, int]] = field(default_factory=list)
    answers: dict[str, list[list[str]]] = field(default_factory=dict)

    def answer(self, name: str, *answers: list[str]) -> None:
        """Register successive answers for ``name``; the last one repeats."""
        self.answers[name] = list(answers)

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        host = host.decode() if isinstance(host, bytes) else host
        self.lookups.append(host)
        if host in self.answers:
            queue = self.answers[host]
            addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        elif (ip := _literal(host)) is not None:
            addresses = [str(ip)]
        else:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (test resolver)")
        return [_addrinfo(address, port) for address in addresses]

    @property
    def remote_connects(self) -> list[tuple[str, int]]:
        return [c for c in self.connects if not ipaddress.ip_address(c[0]).is_loopback]


@pytest.fixture(autouse=True)
def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    net = Network()
    monkeypatch.setattr(socket, "getaddrinfo", net.getaddrinfo)

    real_create_connection = urllib3.util.connection.create_connection

    def create_connection(address, *args, **kwargs):
        host, port = address[0].strip("[]"), address[1]
        net.connects.append((host, port))
        if ipaddress.ip_address(host).is_loopback:
            return real_create_connection(address, *args, **kwargs)
        raise OSError(errno.ENETUNREACH, "test guard: only loopback connections are allowed")

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)

    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address) -> None:
        inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        if inet and not ipaddress.ip_address(address[0]).is_loopback:
            raise OSError(errno.ENETUNREACH, "test guard: only loopback connections are allowed")
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return net


@pytest.fixture
def httpserver(httpserver_ipv4: HTTPServer) -> HTTPServer:
    """The plugin's server on 127.0.0.1: its default "localhost" may listen on ::1 only."""
    return httpserver_ipv4


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """About 200 KiB of gzip that decodes to 200 MiB of zeros, built without holding 200 MiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
    zeros = bytes(MIB)
    return b"".join([compressor.compress(zeros) for _ in range(200)] + [compressor.flush()])


@contextlib.contextmanager
def raw_server(respond):
    """A one-connection TCP server on 127.0.0.1 that reads the request then calls ``respond``."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                respond(conn, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(5)


DRIP_HEADERS = {
    "content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
    "close-delimited": b"HTTP/1.0 200 OK\r\n\r\n",
    "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
}


def drip_body(framing: str):
    """Headers at once, then the calendar one byte every 0.3 s, in the given framing."""

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(DRIP_HEADERS[framing])
        for byte in CALENDAR:
            if stop.wait(0.3):
                return
            data = bytes([byte])
            conn.sendall(b"1\r\n" + data + b"\r\n" if framing == "chunked" else data)

    return respond


def stall_mid_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nBEGIN:VCALENDAR\r\n")
    stop.wait(10)


def drip_headers(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    while not stop.wait(0.3):
        conn.sendall(b"a")


def fetch_error(url: str, **kwargs) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch_feed(url, **kwargs)
    return info.value


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --------------------------------------------------------------------------- happy paths


def test_a_calendar_feed_is_returned_with_its_validators(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/calendar/ical/1.ics").respond_with_data(
        CALENDAR,
        content_type="text/calendar; charset=utf-8",
        headers={"ETag": '"abc-123"', "Last-Modified": "Tue, 02 Mar 2027 10:00:00 GMT"},
    )

    result = fetch_feed(httpserver.url_for(f"/calendar/ical/1.ics?s={SECRET}"), allow_loopback=True)

    assert result.outcome == "ok"
    assert result.status == 200
    assert result.body == CALENDAR
    assert result.etag == '"abc-123"'
    assert result.last_modified == "Tue, 02 Mar 2027 10:00:00 GMT"
    assert result.content_type == "text/calendar; charset=utf-8"
    assert result.final_url == httpserver.url_for(f"/calendar/ical/1.ics?s={SECRET}")
    assert result.bytes_read == len(CALENDAR)
    assert 0 < result.elapsed < 5


def test_the_stored_validators_are_sent_back_verbatim_and_304_means_not_modified(
    httpserver: HTTPServer,
) -> None:
    etag, modified = '"abc-123"', "Tue, 02 Mar 2027 10:00:00 GMT"
    httpserver.expect_ordered_request("/feed.ics").respond_with_data(
        CALENDAR, headers={"ETag": etag, "Last-Modified": modified}
    )
    # The server only answers 304 when both validators come back exactly, quotes included.
    httpserver.expect_ordered_request(
        "/feed.ics", headers={"If-None-Match": etag, "If-Modified-Since": modified}
    ).respond_with_data(b"", status=304)

    first = fetch_feed(httpserver.url_for("/feed.ics"), allow_loopback=True)
    second = fetch_feed(
        httpserver.url_for("/feed.ics"),
        etag=first.etag,
        last_modified=first.last_modified,
        allow_loopback=True,
    )

    httpserver.check_assertions()
    assert second.outcome == "not_modified"
    assert second.status == 304
    assert second.body == b""
    assert second.bytes_read == 0
    # This 304 carried no validators: the ones we sent still hold.
    assert (second.etag, second.last_modified) == (etag, modified)


def test_the_user_agent_and_accept_headers_are_sent(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(CALENDAR)

    fetch_feed(httpserver.url_for("/feed.ics"), allow_loopback=True)

    request, _ = httpserver.log[0]
    assert request.headers["User-Agent"] == DEFAULT_USER_AGENT
    assert request.headers["Accept"] == ACCEPT == "text/calendar, */*;q=0.5"
    assert request.headers["Accept-Encoding"] == "gzip"
    assert "If-None-Match" not in request.headers


def test_a_custom_user_agent_replaces_the_default(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(CALENDAR)

    fetch_feed(httpserver.url_for("/feed.ics"), allow_loopback=True, user_agent="Acme/2.0")

    assert httpserver.log[0][0].headers["User-Agent"] == "Acme/2.0"


def test_the_host_header_keeps_the_name_while_the_connection_is_pinned(
    httpserver: HTTPServer, network: Network
) -> None:
    network.answer("portal.test", ["127.0.0.1"])
    httpserver.expect_request("/feed.ics").respond_with_data(CALENDAR)

    fetch_feed(f"http://portal.test:{httpserver.port}/feed.ics", allow_loopback=True)

    assert httpserver.log[0][0].headers["Host"] == f"portal.test:{httpserver.port}"
    assert network.lookups.count("portal.test") == 1
    assert network.connects == [("127.0.0.1", httpserver.port)]


@pytest.mark.parametrize(
    "body",
    [b"", b"\r\n  \n"],
    ids=["zero bytes (Booking.com)", "whitespace"],
)
def test_an_empty_200_is_an_empty_calendar(httpserver: HTTPServer, body: bytes) -> None:
    httpserver.expect_request("/export").respond_with_data(body, content_type="text/calendar")

    result = fetch_feed(httpserver.url_for(f"/export?t={SECRET}"), allow_loopback=True)

    assert result.outcome == "ok"
    assert result.body == body


@pytest.mark.parametrize(
    "body",
    [
        b"\xef\xbb\xbf" + CALENDAR,
        b"\r\n\r\n  " + CALENDAR,
        b"\xef\xbb\xbf\n" + CALENDAR.lower(),
    ],
    ids=["BOM", "leading blank lines", "BOM and lower case"],
)
def test_a_bom_and_leading_whitespace_may_precede_begin_vcalendar(
    httpserver: HTTPServer, body: bytes
) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(body, content_type="text/plain")

    assert fetch_feed(httpserver.url_for("/feed.ics"), allow_loopback=True).body == body


def test_a_gzip_encoded_feed_is_decoded(httpserver: HTTPServer) -> None:
    body = CALENDAR * 50
    compressed = gzip.compress(body)
    httpserver.expect_request("/feed.ics").respond_with_data(
        compressed, headers={"Content-Encoding": "gzip"}
    )

    result = fetch_feed(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert result.body == body
    assert result.bytes_read == len(compressed) < len(body)


# --------------------------------------------------------------------------- HTTP errors


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_a_wrong_or_revoked_url_is_a_permanent_4xx(httpserver: HTTPServer, status: int) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(b"gone", status=status)

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert (error.code, error.params, error.permanent) == ("http_4xx", {"status": status}, True)


@pytest.mark.parametrize("status", [400, 405, 418])
def test_other_4xx_are_transient(httpserver: HTTPServer, status: int) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(b"", status=status)

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert (error.code, error.params, error.permanent) == ("http_4xx", {"status": status}, False)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_is_transient(httpserver: HTTPServer, status: int) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(b"oops", status=status)

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert (error.code, error.permanent, error.retry_after) == ("http_5xx", False, None)
    assert error.params == {"status": status}


def test_a_503_with_retry_after_sets_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(
        b"", status=503, headers={"Retry-After": "120"}
    )

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert (error.code, error.retry_after, error.permanent) == ("http_5xx", 120, False)
    assert error.params == {"status": 503, "retry_after": 120}


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120), ("0", 0), (" 7 ", 7), ("99999999999", 86400), ("soon", None), ("-5", None)],
)
def test_a_429_is_rate_limited_with_retry_after_in_seconds(
    httpserver: HTTPServer, header: str, expected: int | None
) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(
        b"", status=429, headers={"Retry-After": header}
    )

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert (error.code, error.retry_after, error.permanent) == ("rate_limited", expected, False)


def test_a_429_with_retry_after_as_an_http_date(httpserver: HTTPServer) -> None:
    in_two_minutes = email.utils.formatdate(time.time() + 120, usegmt=True)
    httpserver.expect_request("/feed.ics").respond_with_data(
        b"", status=429, headers={"Retry-After": in_two_minutes}
    )

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert error.code == "rate_limited"
    assert 115 <= error.retry_after <= 121


def test_a_retry_after_date_in_the_past_means_now(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(
        b"", status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )

    assert fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True).retry_after == 0


@pytest.mark.parametrize(
    ("body", "content_type", "looks_like"),
    [
        (b"<!DOCTYPE html><html><body>Log in</body></html>", "text/html", "html"),
        (b"\n<html lang='en'><head><title>Captcha</title>", "text/html; charset=utf-8", "html"),
        (json.dumps({"error": "not found"}).encode(), "application/json", "json"),
        (b"[]", "application/json", "json"),
        (b"Access denied", "text/calendar", "other"),
    ],
    ids=["html login page", "html captcha", "json object", "json list", "plain text"],
)
def test_a_200_that_is_not_a_calendar_is_refused(
    httpserver: HTTPServer, body: bytes, content_type: str, looks_like: str
) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(body, content_type=content_type)

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert (error.code, error.permanent) == ("not_ical", True)
    assert error.params == {"content_type": content_type, "looks_like": looks_like}


# --------------------------------------------------------------------------- size and time


def test_urllib3_has_the_decompression_bomb_fixes() -> None:
    assert Version(urllib3.__version__) >= Version("2.6.3")


def test_a_declared_content_length_over_the_limit_is_refused_before_reading(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(CALENDAR * 10)

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True, max_bytes=100)

    assert (error.code, error.params, error.permanent) == ("too_large", {"limit": 100}, False)


def test_an_endless_stream_is_cut_at_the_size_limit(httpserver: HTTPServer) -> None:
    def endless():
        yield CALENDAR
        for _ in range(1000):  # 64 MiB if nobody stops reading
            yield b"X" * 65536

    httpserver.expect_request("/feed.ics").respond_with_response(
        Response(endless(), content_type="text/calendar")
    )

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True, max_bytes=MIB)

    assert (error.code, error.params) == ("too_large", {"limit": MIB})


def test_a_gzip_bomb_is_cut_off_quickly_without_ballooning_memory(
    httpserver: HTTPServer, gzip_bomb: bytes
) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(
        gzip_bomb, content_type="text/calendar", headers={"Content-Encoding": "gzip"}
    )
    rss_before = max_rss_mib()
    started = time.monotonic()

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert (error.code, error.params) == ("too_large", {"limit": 5 * MIB})
    assert time.monotonic() - started < 2
    assert max_rss_mib() - rss_before < 100


@pytest.mark.parametrize("framing", list(DRIP_HEADERS))
def test_a_server_that_drips_its_body_is_cut_at_the_deadline(framing: str) -> None:
    with raw_server(drip_body(framing)) as port:
        started = time.monotonic()
        error = fetch_error(f"http://127.0.0.1:{port}/feed.ics", allow_loopback=True, deadline=1.5)
        elapsed = time.monotonic() - started

    assert (error.code, error.permanent) == ("timeout", False)
    assert error.params == {"deadline": 1.5}
    assert 1.4 < elapsed < 2.5


def test_a_server_that_drips_its_headers_is_cut_at_the_deadline() -> None:
    with raw_server(drip_headers) as port:
        started = time.monotonic()
        error = fetch_error(f"http://127.0.0.1:{port}/feed.ics", allow_loopback=True, deadline=1.5)
        elapsed = time.monotonic() - started

    assert error.code == "timeout"
    assert 1.4 < elapsed < 2.5


def test_a_server_that_never_answers_times_out_on_read() -> None:
    # The kernel completes the handshake for a listening socket nobody accepts from.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        started = time.monotonic()
        error = fetch_error(
            f"http://127.0.0.1:{silent.getsockname()[1]}/feed.ics",
            allow_loopback=True,
            read_timeout=1,
        )
        elapsed = time.monotonic() - started

    assert (error.code, error.permanent) == ("timeout", False)
    assert 0.9 < elapsed < 2.5


def test_a_server_that_stalls_mid_body_times_out_on_read() -> None:
    with raw_server(stall_mid_body) as port:
        started = time.monotonic()
        error = fetch_error(
            f"http://127.0.0.1:{port}/feed.ics", allow_loopback=True, read_timeout=0.5
        )
        elapsed = time.monotonic() - started

    assert (error.code, error.params) == ("timeout", {"host": "127.0.0.1"})
    assert 0.4 < elapsed < 2


def test_a_closed_port_is_a_connect_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]

    error = fetch_error(f"http://127.0.0.1:{port}/feed.ics", allow_loopback=True)

    assert (error.code, error.permanent) == ("connect", False)
    assert error.params == {"host": "127.0.0.1", "error": "ConnectionRefusedError"}


def test_https_to_a_plain_http_server_is_a_tls_error(httpserver: HTTPServer) -> None:
    error = fetch_error(f"https://127.0.0.1:{httpserver.port}/feed.ics", allow_loopback=True)

    assert (error.code, error.params, error.permanent) == ("tls", {"host": "127.0.0.1"}, False)


def test_a_name_that_does_not_resolve_is_a_dns_error(network: Network) -> None:
    error = fetch_error("https://no-such-portal.test/feed.ics")

    assert (error.code, error.params, error.permanent) == (
        "dns",
        {"host": "no-such-portal.test"},
        False,
    )
    assert network.connects == []


def test_a_host_name_that_cannot_be_encoded_is_an_invalid_url(network: Network) -> None:
    error = fetch_error("https://cal\N{GRINNING FACE}.example.com/feed.ics")

    assert (error.code, error.params, error.permanent) == ("invalid_url", {"reason": "host"}, True)
    assert network.lookups == []


# --------------------------------------------------------------------------- redirects


def redirect_chain(httpserver: HTTPServer, hops: int) -> str:
    """/r0 -> /r1 -> ... -> /r{hops} which serves the calendar; returns the first URL."""
    for hop in range(hops):
        httpserver.expect_request(f"/r{hop}").respond_with_data(
            b"", status=302, headers={"Location": f"/r{hop + 1}?t={SECRET}"}
        )
    httpserver.expect_request(f"/r{hops}").respond_with_data(CALENDAR)
    return httpserver.url_for("/r0")


def test_up_to_three_redirects_are_followed(httpserver: HTTPServer) -> None:
    result = fetch_feed(redirect_chain(httpserver, 3), allow_loopback=True)

    assert result.body == CALENDAR
    assert result.final_url == httpserver.url_for(f"/r3?t={SECRET}")


def test_a_chain_of_four_redirects_is_refused(httpserver: HTTPServer) -> None:
    error = fetch_error(redirect_chain(httpserver, 4), allow_loopback=True)

    assert (error.code, error.permanent) == ("invalid_url", False)
    assert error.params == {"reason": "too_many_redirects", "limit": 3}
    assert len(httpserver.log) == 4  # the fourth redirect's target was never requested


@pytest.mark.parametrize(
    "location",
    [
        "http://10.0.0.1/feed.ics",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://0/",
        "http://internal.test/feed.ics",
        "http://metadata.test/latest/meta-data/",
        "http://nat64.test/",
    ],
)
def test_a_redirect_to_a_private_address_is_blocked_even_with_loopback_allowed(
    httpserver: HTTPServer, network: Network, location: str
) -> None:
    network.answer("internal.test", ["10.1.2.3"])
    network.answer("metadata.test", ["169.254.169.254"])
    network.answer("nat64.test", ["64:ff9b::a9fe:a9fe"])
    httpserver.expect_request("/feed.ics").respond_with_data(
        b"", status=302, headers={"Location": location}
    )

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert (error.code, error.permanent) == ("blocked_address", True)
    assert network.remote_connects == []


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "ftp://ftp.example.com/feed.ics",
        "dict://127.0.0.1:11211/stat",
        "data:text/calendar,BEGIN:VCALENDAR",
        "javascript:alert(1)",
    ],
)
def test_a_redirect_to_another_scheme_is_refused(httpserver: HTTPServer, location: str) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(
        b"", status=301, headers={"Location": location}
    )

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert (error.code, error.params["reason"]) == ("invalid_url", "scheme")
    assert len(httpserver.log) == 1


def test_with_loopback_allowed_only_loopback_may_use_other_ports(
    httpserver: HTTPServer, network: Network
) -> None:
    network.answer("public.test", [PUBLIC_IP])
    httpserver.expect_request("/feed.ics").respond_with_data(
        b"", status=302, headers={"Location": "http://public.test:6379/"}
    )

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert error.code == "blocked_address"
    assert network.remote_connects == []


@pytest.mark.parametrize(
    ("status", "headers"),
    [(300, {"Location": "/other"}), (305, {"Location": "/proxy"}), (302, {})],
    ids=["300 multiple choices", "305 use proxy", "302 without Location"],
)
def test_a_redirect_we_may_not_follow_is_refused(
    httpserver: HTTPServer, status: int, headers: dict
) -> None:
    httpserver.expect_request("/feed.ics").respond_with_data(b"", status=status, headers=headers)

    error = fetch_error(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert error.code == "invalid_url"
    assert error.params == {"reason": "unsupported_redirect", "status": status}
    assert len(httpserver.log) == 1


def test_a_redirect_body_is_never_read(httpserver: HTTPServer, gzip_bomb: bytes) -> None:
    # requests' own redirect handling would decode this body in full (resp.content).
    httpserver.expect_request("/feed.ics").respond_with_data(
        gzip_bomb, status=302, headers={"Location": "/real.ics", "Content-Encoding": "gzip"}
    )
    httpserver.expect_request("/real.ics").respond_with_data(CALENDAR)
    rss_before = max_rss_mib()
    started = time.monotonic()

    result = fetch_feed(httpserver.url_for("/feed.ics"), allow_loopback=True)

    assert result.body == CALENDAR
    assert time.monotonic() - started < 2
    assert max_rss_mib() - rss_before < 100


# --------------------------------------------------------------------------- SSRF


@pytest.mark.parametrize("url", LITERAL_URLS)
def test_a_blocked_literal_is_refused_before_any_lookup_or_connection(
    network: Network, url: str
) -> None:
    error = fetch_error(url)

    assert (error.code, error.permanent) == ("blocked_address", True)
    assert network.lookups == []
    assert network.connects == []


@pytest.mark.parametrize("url", LITERAL_URLS)
def test_the_connect_time_check_alone_blocks_every_literal(
    monkeypatch: pytest.MonkeyPatch, network: Network, url: str
) -> None:
    # Skip the string-level check to prove the check on the resolved address stands alone.
    monkeypatch.setattr(fetch, "validate_url", lambda url, **_: url)

    error = fetch_error(url)

    assert (error.code, error.permanent) == ("blocked_address", True)
    assert len(network.lookups) == 1
    assert network.connects == []


@pytest.mark.parametrize("address", BLOCKED_ADDRESSES)
def test_a_name_resolving_to_a_blocked_address_is_refused(network: Network, address: str) -> None:
    network.answer("evil.test", [address])

    error = fetch_error(f"https://evil.test/calendar.ics?t={SECRET}")

    assert (error.code, error.params, error.permanent) == (
        "blocked_address",
        {"host": "evil.test"},
        True,
    )
    assert network.lookups == ["evil.test"]
    assert network.connects == []


@pytest.mark.parametrize("address", [a for a in BLOCKED_ADDRESSES if a not in LOOPBACK_ADDRESSES])
def test_allowing_loopback_opens_no_other_private_range(network: Network, address: str) -> None:
    network.answer("evil.test", [address])

    error = fetch_error("http://evil.test/calendar.ics", allow_loopback=True)

    assert error.code == "blocked_address"
    assert network.connects == []


@pytest.mark.parametrize("allow_loopback", [False, True])
def test_dns_rebinding_is_defeated_by_resolving_once_and_pinning(
    network: Network, allow_loopback: bool
) -> None:
    network.answer("rebind.test", [PUBLIC_IP], ["127.0.0.1"])

    error = fetch_error("http://rebind.test/feed.ics", allow_loopback=allow_loopback)

    # The guard refused the public address, so the fetch fails to connect: nothing left.
    assert error.code == "connect"
    assert network.lookups.count("rebind.test") == 1
    assert network.connects == [(PUBLIC_IP, 80)]


def test_mixed_answers_use_only_the_checked_first_address(network: Network) -> None:
    network.answer("mixed.test", [PUBLIC_IP, "10.0.0.1"])

    fetch_error("http://mixed.test/feed.ics")

    assert network.connects == [(PUBLIC_IP, 80)]


def test_mixed_answers_with_a_private_first_address_are_blocked(network: Network) -> None:
    network.answer("mixed.test", ["10.0.0.1", PUBLIC_IP])

    assert fetch_error("http://mixed.test/feed.ics").code == "blocked_address"
    assert network.connects == []


def test_an_inherited_proxy_is_ignored(
    monkeypatch: pytest.MonkeyPatch, network: Network, httpserver: HTTPServer
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        dead_proxy = f"http://127.0.0.1:{probe.getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    network.answer("public.test", [PUBLIC_IP])
    httpserver.expect_request("/feed.ics").respond_with_data(CALENDAR)

    assert fetch_feed(httpserver.url_for("/feed.ics"), allow_loopback=True).body == CALENDAR
    fetch_error("https://public.test/feed.ics")

    # Straight to the pinned target both times, never to the proxy.
    assert network.connects == [("127.0.0.1", httpserver.port), (PUBLIC_IP, 443)]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://localhost/feed.ics", "blocked_address"),
        ("https://calendar.localhost/feed.ics", "blocked_address"),
        ("https://www.example.com:6379/feed.ics", "invalid_url"),
        ("https://www.example.com:22/", "invalid_url"),
        ("https://user:pass@www.example.com/feed.ics", "invalid_url"),
        ("http://redis/", "invalid_url"),
        ("ftp://www.example.com/feed.ics", "invalid_url"),
    ],
)
def test_fetch_refuses_what_the_form_refuses(network: Network, url: str, code: str) -> None:
    assert fetch_error(url).code == code
    assert network.lookups == []
    assert network.connects == []


# --------------------------------------------------------------------------- URL helpers


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("webcal://www.airbnb.com/calendar/ical/1.ics?s=Ab", "https://www.airbnb.com/calendar/ical/1.ics?s=Ab"),
        ("webcals://p.example.com/a.ics", "https://p.example.com/a.ics"),
        ("WEBCAL://p.example.com/A.ics", "https://p.example.com/A.ics"),
        ("  https://p.example.com/a.ics\n", "https://p.example.com/a.ics"),
        ("http://p.example.com:80/a.ics", "http://p.example.com:80/a.ics"),
        ("https://P.Example.com:443/Feed?T=CaSe#frag", "https://P.Example.com:443/Feed?T=CaSe#frag"),
        ("http://localhost/", "http://localhost/"),
        ("http://[2606:4700::1111]/a.ics", "http://[2606:4700::1111]/a.ics"),
    ],
)  # fmt: skip
def test_normalise_url_rewrites_webcal_and_keeps_the_rest_verbatim(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://www.example.com/feed.ics", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://www.example.com:70/", "scheme"),
        ("data:text/calendar,BEGIN:VCALENDAR", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("www.airbnb.com/calendar/ical/1.ics", "scheme"),
        ("https://user:pass@www.example.com/feed.ics", "credentials"),
        ("https://user@www.example.com/feed.ics", "credentials"),
        ("https://@www.example.com/feed.ics", "credentials"),
        ("https://www.example.com:6379/", "port"),
        ("https://www.example.com:5432/", "port"),
        ("https://www.example.com:22/", "port"),
        ("https://www.example.com:8080/", "port"),
        ("https://www.example.com:99999/", "syntax"),
        ("https://[::1/", "syntax"),
        ("http://redis/", "single_label_host"),
        ("http://db:5432/", "port"),
        ("http://redis./", "single_label_host"),
        ("https:///feed.ics", "host"),
        ("https://www.example.com/a b.ics", "characters"),
        ("https://www.example.com/a\x00.ics", "characters"),
    ],
)
def test_normalise_url_rejects_what_a_feed_url_cannot_be(url: str, reason: str) -> None:
    with pytest.raises(FetchError) as info:
        normalise_url(url)

    assert (info.value.code, info.value.params["reason"], info.value.permanent) == (
        "invalid_url",
        reason,
        True,
    )


def test_normalise_url_allows_other_ports_when_asked() -> None:
    url = "https://cal.example.com:8443/feed.ics"

    assert normalise_url(url, allow_any_port=True) == url


@pytest.mark.parametrize("url", LITERAL_URLS)
def test_validate_url_blocks_ip_literals_in_any_spelling_without_dns(
    network: Network, url: str
) -> None:
    with pytest.raises(FetchError) as info:
        validate_url(url)

    assert (info.value.code, info.value.permanent) == ("blocked_address", True)
    assert network.lookups == []


@pytest.mark.parametrize(
    "url",
    [
        "https://www.airbnb.com/calendar/ical/12345678.ics?s=0123456789abcdef",
        "https://ical.booking.com/v1/export?t=2f1e0c8a-1b2c",
        "webcal://calendar.google.com/calendar/ical/x%40group.calendar.google.com/private-ab/basic.ics",
        "http://8.8.8.8/feed.ics",
        "https://[2606:4700::1111]/feed.ics",
    ],
)
def test_validate_url_accepts_public_feed_urls_without_dns(network: Network, url: str) -> None:
    assert validate_url(url).startswith(("https://", "http://"))
    assert network.lookups == []


def test_validate_url_allows_loopback_only_when_asked() -> None:
    assert validate_url("http://127.0.0.1:8000/x", allow_loopback=True, allow_any_port=True)
    assert validate_url("http://localhost/x", allow_loopback=True)
    for url in ("http://10.0.0.1/x", "http://0.0.0.0/x", "http://[fe80::1]/x"):
        with pytest.raises(FetchError, match="blocked_address"):
            validate_url(url, allow_loopback=True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://www.airbnb.com/calendar/ical/1234a1b2.ics?s=" + SECRET, "https://www.airbnb.com/…a1b2.ics"),
        ("https://ical.booking.com/v1/export?t=" + SECRET, "https://ical.booking.com/…port"),
        (
            f"https://calendar.google.com/calendar/ical/x%40group.calendar.google.com/private-{SECRET}/basic.ics",
            "https://calendar.google.com/…asic.ics",
        ),
        (f"http://www.vrbo.com/icalendar/{SECRET}.ics", "http://www.vrbo.com/…0ken.ics"),
        (f"https://user:{SECRET}@cal.example.com:8443/f/{SECRET}", "https://cal.example.com:8443/…0ken"),
        (f"https://[2606:4700::1111]/x?{SECRET}", "https://[2606:4700::1111]/…x"),
        ("https://cal.example.com/", "https://cal.example.com/"),
        ("https://[::1/broken", "…"),
    ],
)  # fmt: skip
def test_mask_url_hides_the_query_and_most_of_the_path(url: str, expected: str) -> None:
    masked = mask_url(url)

    assert masked == expected
    assert SECRET not in masked


# --------------------------------------------------------------------------- the error object


def test_no_error_reveals_the_url_path_or_query(
    httpserver: HTTPServer, network: Network, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    network.answer("evil.test", ["10.0.0.1"])
    httpserver.expect_request(f"/{SECRET}/404.ics").respond_with_data(b"", status=404)
    httpserver.expect_request(f"/{SECRET}/html.ics").respond_with_data(b"<html>", status=200)
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed = probe.getsockname()[1]
    urls = [
        httpserver.url_for(f"/{SECRET}/404.ics?t={SECRET}"),
        httpserver.url_for(f"/{SECRET}/html.ics?t={SECRET}"),
        f"https://127.0.0.1:{httpserver.port}/{SECRET}.ics?t={SECRET}",  # tls
        f"http://127.0.0.1:{closed}/{SECRET}.ics?t={SECRET}",  # connect
        f"http://evil.test/{SECRET}.ics?t={SECRET}",  # blocked at connect time
        f"http://no-such.test/{SECRET}.ics?t={SECRET}",  # dns
    ]
    errors = [fetch_error(url, allow_loopback=True) for url in urls]

    assert [e.code for e in errors] == [
        "http_4xx",
        "not_ical",
        "tls",
        "connect",
        "blocked_address",
        "dns",
    ]
    for error in errors:
        shown = [str(error), repr(error), repr(error.params), *traceback.format_exception(error)]
        assert not [text for text in shown if SECRET in text]
    # werkzeug's access log is the portal's log, not ours. (urllib3 logs the path at DEBUG:
    # production logging must keep urllib3 at INFO or above.)
    ours = [r for r in caplog.records if r.name != "werkzeug"]
    assert ours
    assert not [r for r in ours if SECRET in r.getMessage()]


def test_a_fetch_error_survives_pickling() -> None:
    error = FetchError("rate_limited", params={"status": 429}, retry_after=60)

    copy = pickle.loads(pickle.dumps(error))

    assert (copy.code, copy.params, copy.permanent, copy.retry_after) == (
        "rate_limited",
        {"status": 429},
        False,
        60,
    )
    assert str(copy) == "rate_limited {'status': 429}"


def test_a_fetch_result_is_immutable() -> None:
    result = FetchResult("ok", 200, b"", None, None, "https://x.example/", None, 0.1, 0)

    with pytest.raises(AttributeError):
        result.body = b"changed"  # type: ignore[misc]


# --------------------------------------------------------------------------- kept-alive connections


@dataclass
class KeepAliveServer:
    """An HTTP/1.1 portal on 127.0.0.1 that keeps connections open, as real portals do, and
    answers its n-th request with ``answers[n]`` (a function of the socket and the request)."""

    answers: list
    connections: int = 0
    closed_by_client: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0


@contextlib.contextmanager
def keep_alive_server(*answers):
    server = KeepAliveServer(list(answers))
    listener = socket.create_server(("127.0.0.1", 0))
    server.port = listener.getsockname()[1]
    stop = threading.Event()

    def serve_connection(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            pending = b""
            while not stop.is_set():
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(65536)
                    if not data:
                        server.closed_by_client += 1
                        return
                    pending += data
                request, _, pending = pending.partition(b"\r\n\r\n")
                server.requests.append(request)
                server.answers.pop(0)(conn, request)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while not stop.is_set():
                conn, _ = listener.accept()
                server.connections += 1
                threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        close_kept_connections()  # ends the connection threads, which wait for a next request
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
        listener.close()
        thread.join(5)


def calendar_answer(*, etag: str = '"v1"', extra: bytes = b""):
    def answer(conn: socket.socket, request: bytes) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/calendar\r\nETag: " + etag.encode()
            + b"\r\n" + extra + b"Content-Length: " + str(len(CALENDAR)).encode() + b"\r\n\r\n"
            + CALENDAR
        )

    return answer


def not_modified_answer(conn: socket.socket, request: bytes) -> None:
    conn.sendall(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n')


def dripping_answer(conn: socket.socket, request: bytes) -> None:
    conn.sendall(DRIP_HEADERS["content-length"])
    for byte in CALENDAR:
        time.sleep(0.3)
        conn.sendall(bytes([byte]))


def test_polls_of_one_portal_reuse_one_kept_alive_connection() -> None:
    with keep_alive_server(calendar_answer(), not_modified_answer, calendar_answer()) as portal:
        url = f"http://127.0.0.1:{portal.port}/calendar/ical/1.ics?s={SECRET}"

        first = fetch_feed(url, allow_loopback=True)
        unchanged = fetch_feed(url, etag=first.etag, allow_loopback=True)
        again = fetch_feed(url.replace("1.ics", "2.ics"), allow_loopback=True)

    assert (first.body, unchanged.outcome, again.body) == (CALENDAR, "not_modified", CALENDAR)
    assert b'If-None-Match: "v1"' in portal.requests[1]
    assert b"If-None-Match" not in portal.requests[2]  # headers are per fetch, not per session
    assert portal.connections == 1


def test_closing_the_kept_connections_makes_the_next_poll_open_a_new_one() -> None:
    with keep_alive_server(calendar_answer(), calendar_answer()) as portal:
        url = f"http://127.0.0.1:{portal.port}/calendar/ical/1.ics?s={SECRET}"
        fetch_feed(url, allow_loopback=True)
        close_kept_connections()
        deadline = time.monotonic() + 5
        while not portal.closed_by_client and time.monotonic() < deadline:
            time.sleep(0.01)
        assert portal.closed_by_client == 1  # the portal's side stops waiting for a next request
        fetch_feed(url, allow_loopback=True)
    assert portal.connections == 2


def test_the_deadline_also_cuts_a_kept_alive_connection_that_starts_dripping() -> None:
    with keep_alive_server(calendar_answer(), dripping_answer, calendar_answer()) as portal:
        url = f"http://127.0.0.1:{portal.port}/feed.ics"
        fetch_feed(url, allow_loopback=True)

        started = time.monotonic()
        error = fetch_error(url, allow_loopback=True, deadline=1.5)
        elapsed = time.monotonic() - started
        after = fetch_feed(url, allow_loopback=True)

    assert error.code == "timeout"
    assert 1.4 < elapsed < 2.5
    # The cut connection was dropped; the next poll opened a new one and got its calendar.
    assert after.body == CALENDAR
    assert portal.connections == 2


def test_a_cookie_set_by_a_portal_is_never_sent_with_a_later_fetch() -> None:
    cookie = b"Set-Cookie: session=operator-a; Path=/\r\n"
    with keep_alive_server(calendar_answer(extra=cookie), calendar_answer()) as portal:
        url = f"http://127.0.0.1:{portal.port}/feed.ics"
        fetch_feed(url, allow_loopback=True)
        fetch_feed(url, allow_loopback=True)

    assert not [request for request in portal.requests if b"operator-a" in request]


def test_a_connection_cut_at_the_size_limit_is_not_reused() -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n" + b"BEGIN:VCALENDAR\r\n".ljust(4096, b"x")
    with keep_alive_server(lambda conn, request: conn.sendall(big), calendar_answer()) as portal:
        url = f"http://127.0.0.1:{portal.port}/feed.ics"
        error = fetch_error(url, allow_loopback=True, max_bytes=1000)
        after = fetch_feed(url, allow_loopback=True)

    assert error.code == "too_large"
    assert after.body == CALENDAR
    assert portal.connections == 2


def test_threads_of_one_process_share_their_kept_alive_connections() -> None:
    with keep_alive_server(calendar_answer(), not_modified_answer, not_modified_answer) as portal:
        url = f"http://127.0.0.1:{portal.port}/calendar/ical/1.ics?s={SECRET}"
        results = []
        for _ in range(3):  # one after another, each in a thread of its own
            worker = threading.Thread(target=lambda: results.append(fetch_feed(url, etag='"v0"', allow_loopback=True)))
            worker.start()
            worker.join(10)

    assert [result.status for result in results] == [200, 304, 304]
    assert portal.connections == 1
