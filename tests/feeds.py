"""Feeds as the portals write them (see tests/fixtures/feeds for the real samples these follow)."""

from __future__ import annotations

from datetime import date


def _date(d: date) -> str:
    return d.strftime("%Y%m%d")


def airbnb(*stays: tuple[str, date, date], blocked: tuple[tuple[str, date, date], ...] = ()) -> bytes:
    """Airbnb: PRODID with a parameter, date-only events, guest details in DESCRIPTION, CRLF."""
    lines = ["BEGIN:VCALENDAR", "PRODID;X-RICAL-TZSOURCE=TZINFO:-//Airbnb Inc//Hosting Calendar 0.8.8//EN",
             "CALSCALE:GREGORIAN", "VERSION:2.0"]
    for uid, start, end in stays:
        lines += ["BEGIN:VEVENT", "DTSTAMP:20261124T101010Z", f"DTEND;VALUE=DATE:{_date(end)}",
                  f"DTSTART;VALUE=DATE:{_date(start)}", f"UID:{uid}@airbnb.com",
                  "DESCRIPTION:Reservation URL: https://www.airbnb.com/hosting/reservations/de",
                  " tails/HMYXB825YD\\nPhone Number (Last 4 Digits): 0882",
                  "SUMMARY:Reserved", "END:VEVENT"]
    for uid, start, end in blocked:
        lines += ["BEGIN:VEVENT", "DTSTAMP:20261124T101010Z", f"DTEND;VALUE=DATE:{_date(end)}",
                  f"DTSTART;VALUE=DATE:{_date(start)}", f"UID:{uid}@airbnb.com",
                  "SUMMARY:Airbnb (Not available)", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


def booking(*closures: tuple[str, date, date], stamp: str = "20261124T101010Z") -> bytes:
    """Booking.com: every event CLOSED, DTSTAMP is the fetch time, an empty calendar is 0 bytes."""
    if not closures:
        return b""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//admin.booking.com\\, b.v.//NONSGML v1.0//EN",
             "CALSCALE:GREGORIAN", "METHOD:PUBLISH"]
    for uid, start, end in closures:
        lines += ["BEGIN:VEVENT", f"DTSTAMP:{stamp}", f"DTSTART;VALUE=DATE:{_date(start)}",
                  f"DTEND;VALUE=DATE:{_date(end)}", f"UID:{uid}@booking.com",
                  "SUMMARY:CLOSED - Not available", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


def vrbo(*events: tuple[str, date, date, str]) -> bytes:
    """Vrbo: LF-only lines, UIDs without a domain, localised labels."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "CALSCALE:GREGORIAN", "PRODID:-//HomeAway.com, Inc.//EN"]
    for uid, start, end, summary in events:
        lines += ["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20261124T101010Z", f"DTSTART;VALUE=DATE:{_date(start)}",
                  f"DTEND;VALUE=DATE:{_date(end)}", f"SUMMARY:{summary}", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return ("\n".join(lines) + "\n").encode()


LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Log in | Airbnb</title></head><body>Log in</body></html>"
