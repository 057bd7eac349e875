"""A portal for the sync benchmark: any number of Airbnb-shaped feeds on 127.0.0.1.

Run as its own process (``python bench/feeds_server.py --events 50``) so that serving feeds does
not compete for the benchmark's GIL; it prints ``PORT <n>`` on its first line once it listens.

* ``GET /calendar/ical/<n>.ics?s=<token>``: feed ``n`` (any n >= 0), with an ETag; answers 304
  to a matching If-None-Match while ETags are on.
* ``GET /_control?version=<v>&etag=<0|1>``: what every feed says from now on. Version ``v``
  moves one stay (which one and by how much depend on ``v``, so no two versions are alike);
  with ``etag=0`` the ETag is still sent but If-None-Match is ignored (always 200), so only
  the engine's body fingerprint can notice that nothing changed.

Loopback only, no state but those two switches, and nothing here imports Django.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STAY_NIGHTS = 3
# A stay every week: 3 nights booked, 4 free, so a moved stay never runs into the next one.
STAY_EVERY_DAYS = 7
# Every fifth event is a host block, as in real Airbnb feeds; the rest are reservations.
BLOCK_EVERY = 5
FEED_PATH = "/calendar/ical/"


def _ical_date(day: date) -> str:
    return day.strftime("%Y%m%d")


def _uid(feed: int, index: int) -> str:
    # Airbnb UIDs are long hex strings; stable per (feed, stay) so a moved stay is an update.
    return hashlib.md5(f"{feed}:{index}".encode(), usedforsecurity=False).hexdigest()


def stay_dates(index: int, *, first_day: date, events: int, version: int) -> tuple[date, date]:
    """The nights of stay ``index`` in ``version``: version 0 moves nothing; version v moves
    stay ``v % events`` later by ``1 + v // events`` days (injective in v, so each bump of the
    version is a change for every feed, whichever version a connection saw last)."""
    start = first_day + timedelta(days=index * STAY_EVERY_DAYS)
    if version and index == version % events:
        start += timedelta(days=1 + version // events)
    return start, start + timedelta(days=STAY_NIGHTS)


def render_feed(feed: int, *, events: int, version: int, first_day: date) -> bytes:
    """One Airbnb-shaped calendar: CRLF, date-only events, guest details in a folded DESCRIPTION."""
    lines = [
        "BEGIN:VCALENDAR",
        "PRODID;X-RICAL-TZSOURCE=TZINFO:-//Airbnb Inc//Hosting Calendar 0.8.8//EN",
        "CALSCALE:GREGORIAN",
        "VERSION:2.0",
    ]
    for index in range(events):
        start, end = stay_dates(index, first_day=first_day, events=events, version=version)
        lines += [
            "BEGIN:VEVENT",
            "DTSTAMP:20261124T101010Z",
            f"DTEND;VALUE=DATE:{_ical_date(end)}",
            f"DTSTART;VALUE=DATE:{_ical_date(start)}",
            f"UID:{_uid(feed, index)}@airbnb.com",
        ]
        if index % BLOCK_EVERY == BLOCK_EVERY - 1:
            lines.append("SUMMARY:Airbnb (Not available)")
        else:
            lines += [
                "DESCRIPTION:Reservation URL: https://www.airbnb.com/hosting/reservations/de",
                f" tails/HM{feed:05d}{index:03d}\\nPhone Number (Last 4 Digits): {index % 10000:04d}",
                "SUMMARY:Reserved",
            ]
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


class FeedState:
    """The two switches, and the bodies of the current version (rendered once per feed)."""

    def __init__(self, *, events: int, first_day: date):
        self.events = events
        self.first_day = first_day
        self.version = 0
        self.etags = True
        self._bodies: dict[tuple[int, int], bytes] = {}
        self._lock = threading.Lock()

    def set(self, *, version: int, etags: bool) -> None:
        with self._lock:
            if version != self.version:
                self._bodies.clear()  # only the current version is ever served again
            self.version, self.etags = version, etags

    def body(self, feed: int) -> tuple[bytes, str]:
        version = self.version
        key = (feed, version)
        body = self._bodies.get(key)
        if body is None:
            body = render_feed(feed, events=self.events, version=version, first_day=self.first_day)
            self._bodies[key] = body
        return body, f'"bench-{feed}-v{version}"'


class FeedHandler(BaseHTTPRequestHandler):
    server: FeedServer
    # HTTP/1.1 with keep-alive, as Airbnb, Booking.com and Vrbo answer: a client that keeps its
    # connection open skips the handshake on its next poll, one that does not pays for it.
    protocol_version = "HTTP/1.1"
    # As nginx's tcp_nodelay: without it a kept-alive answer written as headers then body waits
    # 40 ms for the client's delayed ACK (Nagle's algorithm).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/_control":
            self._control(parse_qs(parts.query))
        elif parts.path.startswith(FEED_PATH) and parts.path.endswith(".ics"):
            self._feed(parts.path[len(FEED_PATH) : -len(".ics")])
        else:
            self._send(404, b"not found", "text/plain")

    def _control(self, query: dict[str, list[str]]) -> None:
        state = self.server.state
        version = int(query.get("version", [state.version])[0])
        etags = query.get("etag", ["1" if state.etags else "0"])[0] == "1"
        state.set(version=version, etags=etags)
        self._send(200, f"version={version} etag={int(etags)}\n".encode(), "text/plain")

    def _feed(self, name: str) -> None:
        if not name.isdigit():
            self._send(404, b"not found", "text/plain")
            return
        state = self.server.state
        body, etag = state.body(int(name))
        # With ETags off the validator is still sent but never honoured, like a portal that
        # always answers 200: the engine keeps it, and only its body fingerprint sees no change.
        if state.etags and self.headers.get("If-None-Match") == etag:
            self._send(304, b"", None, etag=etag)
        else:
            self._send(200, body, "text/calendar; charset=utf-8", etag=etag)

    def _send(
        self, status: int, body: bytes, content_type: str | None, etag: str | None = None
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if etag:
            self.send_header("ETag", etag)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 304:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # thousands of requests: a line each would cost more than the answer


class FeedServer(ThreadingHTTPServer):
    daemon_threads = True
    # Two to a few dozen workers connect at once; the default backlog of 5 would drop SYNs.
    request_queue_size = 256

    def __init__(self, state: FeedState, port: int = 0):
        super().__init__(("127.0.0.1", port), FeedHandler)
        self.state = state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    # Stays start the day after tomorrow (UTC): inside every property's horizon, in the future.
    first_day = datetime.now(UTC).date() + timedelta(days=2)
    server = FeedServer(FeedState(events=args.events, first_day=first_day), port=args.port)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
