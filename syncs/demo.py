"""Demo portal feeds, served by the app itself under /demo/portal/ when DEMO_MODE is on.

Each feed imitates what the real portal sends (see the real samples in tests/fixtures/feeds):
Airbnb's PRODID with a parameter and guest details in DESCRIPTION, Booking.com's CLOSED events
and its 0-byte empty calendar, Vrbo's LF-only lines and localised labels. Dates are laid out
from today with a generator seeded by the property, so a feed stays the same all day (the
engine sees it as unchanged) and moves forward with the calendar.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from icalendar import Calendar, Event

# key -> (portal slug, what the feed does). "missing" answers 404: a revoked calendar link.
DEMO_FEEDS: dict[str, str] = {
    "casa-do-rio-airbnb": "airbnb",
    "casa-do-rio-booking": "booking",
    "casa-do-rio-vrbo": "vrbo",
    "apartamento-sol-airbnb": "airbnb",
    "apartamento-sol-booking": "booking",
    "apartamento-sol-vrbo": "missing",
    "beach-loft-airbnb": "airbnb",
    "beach-loft-booking": "booking-empty",
    "beach-loft-vrbo": "vrbo",
}

GUEST_NAMES = ("Marta", "João", "Lucía", "Pierre", "Anna", "Tom", "Inês", "Carlos")


@dataclass(frozen=True)
class DemoStay:
    start: date
    end: date
    label: str
    uid: str


# Each demo property has one timeline of stays dealt out to its portals in turn, as a well-run
# channel manager would have them: no two portals sell the same night...
PORTAL_ORDER = ("airbnb", "booking", "vrbo")
# ...except one deliberate double booking, so the demo shows what a conflict looks like.
DOUBLE_BOOKED = "beach-loft-vrbo"


def _timeline(property_key: str, today: date) -> list[DemoStay]:
    rng = random.Random(hashlib.sha256(property_key.encode()).digest())
    day = today + timedelta(days=rng.randint(1, 4))
    stays = []
    for index in range(12):
        length = rng.randint(2, 7)
        stays.append(
            DemoStay(
                start=day,
                end=day + timedelta(days=length),
                label=rng.choice(GUEST_NAMES),
                uid=hashlib.sha1(f"{property_key}:{index}".encode()).hexdigest(),
            )
        )
        day += timedelta(days=length + rng.randint(1, 6))
    return stays


def _stays(key: str, today: date) -> list[DemoStay]:
    """The stays of the feed ``key`` ("<property>-<portal>"): its share of the property's timeline."""
    property_key, _, portal = key.rpartition("-")
    timeline = _timeline(property_key, today)
    stays = [stay for index, stay in enumerate(timeline) if PORTAL_ORDER[index % len(PORTAL_ORDER)] == portal]
    if key == DOUBLE_BOOKED:
        taken = timeline[0]  # Airbnb's first stay, sold again here
        stays.append(DemoStay(taken.start + timedelta(days=1), taken.end + timedelta(days=1), "Tom", taken.uid[::-1]))
    return stays


def _calendar(prodid: str, **extra: str) -> Calendar:
    cal = Calendar()
    cal.add("prodid", prodid)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    for name, value in extra.items():
        cal.add(name, value)
    return cal


def _event(stay: DemoStay, summary: str, uid: str, stamp: datetime, **extra: str) -> Event:
    event = Event()
    event.add("dtstamp", stamp)
    event.add("dtstart", stay.start)
    event.add("dtend", stay.end)
    event.add("summary", summary)
    event.add("uid", uid)
    for name, value in extra.items():
        event.add(name, value)
    return event


def _airbnb(key: str, today: date, stamp: datetime) -> bytes:
    cal = _calendar("-//Airbnb Inc//Hosting Calendar 1.0//EN")
    cal["prodid"].params["X-RICAL-TZSOURCE"] = "TZINFO"
    for index, stay in enumerate(_stays(key, today)):
        if index % 3 == 2:
            cal.add_component(_event(stay, "Airbnb (Not available)", f"{stay.uid[:12]}-{stay.uid}@airbnb.com", stamp))
            continue
        description = (
            f"Reservation URL: https://www.airbnb.com/hosting/reservations/details/HM{stay.uid[:8].upper()}\n"
            f"Phone Number (Last 4 Digits): {int(stay.uid[:4], 16) % 10000:04d}"
        )
        cal.add_component(
            _event(stay, "Reserved", f"{stay.uid[:12]}-{stay.uid}@airbnb.com", stamp, description=description)
        )
    return cal.to_ical()


def _booking(key: str, today: date, stamp: datetime) -> bytes:
    cal = _calendar("-//admin.booking.com, b.v.//NONSGML v1.0//EN", method="PUBLISH")
    for stay in _stays(key, today):
        cal.add_component(
            _event(stay, "CLOSED - Not available", f"{stay.uid}@booking.com", stamp, organizer="mailto:noreply@booking.com")
        )
    return cal.to_ical()


def _vrbo(key: str, today: date, stamp: datetime) -> bytes:
    cal = _calendar("-//HomeAway.com, Inc.//EN")
    for index, stay in enumerate(_stays(key, today)):
        summary = "Blocked" if index == 2 else f"Reserved - {stay.label}"
        cal.add_component(_event(stay, summary, stay.uid, stamp))
    # Vrbo serves bare LF line endings.
    return cal.to_ical().replace(b"\r\n", b"\n")


def demo_feed(key: str, *, today: date | None = None) -> bytes | None:
    """The body of demo feed ``key``, or None when that feed answers 404 (or does not exist)."""
    behaviour = DEMO_FEEDS.get(key)
    if behaviour is None or behaviour == "missing":
        return None
    now = datetime.now(UTC)
    today = today or now.date()
    stamp = now.replace(microsecond=0)
    if behaviour == "booking-empty":
        return b""  # Booking.com's empty calendar is a 0-byte body.
    builders = {"airbnb": _airbnb, "booking": _booking, "vrbo": _vrbo}
    return builders[behaviour](key, today, stamp)

