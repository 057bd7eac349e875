"""What we know about each booking portal's iCal feeds.

Pure data (gettext_noop only marks a name for the catalogues): the parser reads it to recognise a
feed and label its events, the data migration seeds the ``Portal`` table from it, forms use the
host patterns to recognise a pasted URL, and every page draws a portal's nights in its one colour
(LOOKS, also written into the stylesheet). Figures come from ``docs/domain.md`` (published or
measured pick-up delays).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from django.utils.translation import gettext_noop

RESERVED = "reserved"
BLOCKED = "blocked"
TENTATIVE = "tentative"
KINDS = (RESERVED, BLOCKED, TENTATIVE)


@dataclass(frozen=True)
class PortalInfo:
    slug: str
    name: str
    # Shell-style patterns matched against the feed URL's host name.
    host_patterns: tuple[str, ...] = ()
    # Substrings of PRODID that identify feeds produced by this portal.
    prodid_markers: tuple[str, ...] = ()
    # Summary prefixes (case-insensitive) that mean each kind; unknown summaries block.
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # How long the portal typically takes to pick up a change in our feed, in minutes.
    pickup_delay_min_minutes: int | None = None
    pickup_delay_max_minutes: int | None = None

    def labels_as_lists(self) -> dict[str, list[str]]:
        return {kind: list(self.labels.get(kind, ())) for kind in KINDS}


CATALOGUE: tuple[PortalInfo, ...] = (
    PortalInfo(
        slug="airbnb",
        name="Airbnb",
        host_patterns=("airbnb.*", "*.airbnb.*", "airbnb.co.*", "*.airbnb.co.*"),
        prodid_markers=("Airbnb Inc",),
        labels={
            RESERVED: ("Reserved",),
            BLOCKED: ("Airbnb (Not available)", "Not available"),
        },
        pickup_delay_min_minutes=120,
        pickup_delay_max_minutes=180,
    ),
    PortalInfo(
        slug="booking",
        name="Booking.com",
        host_patterns=("booking.com", "*.booking.com"),
        prodid_markers=("admin.booking.com", "booking.com"),
        labels={BLOCKED: ("CLOSED", "Not available")},
        pickup_delay_min_minutes=60,
        pickup_delay_max_minutes=240,
    ),
    PortalInfo(
        slug="vrbo",
        name="Vrbo",
        host_patterns=(
            "vrbo.com", "*.vrbo.com", "homeaway.*", "*.homeaway.*", "abritel.fr", "*.abritel.fr",
            "fewo-direkt.de", "*.fewo-direkt.de",
        ),
        prodid_markers=("HomeAway", "Vrbo", "Abritel"),
        labels={
            RESERVED: ("Reserved", "Réservée", "Reservado", "Reservada", "Gebucht"),
            TENTATIVE: ("Provisoire", "Tentative", "Provisional", "Vorläufig"),
            BLOCKED: ("Blocked", "Indisponible", "No está disponible", "Unavailable", "Nicht verfügbar"),
        },
        pickup_delay_min_minutes=60,
        pickup_delay_max_minutes=720,
    ),
    PortalInfo(
        slug="expedia",
        name="Expedia",
        host_patterns=("expedia.*", "*.expedia.*", "*.expediapartnercentral.com"),
        prodid_markers=("Expedia",),
        labels={
            RESERVED: ("Reserved on Expedia",),
            BLOCKED: ("Unavailable on Expedia", "Closed Period"),
        },
    ),
    PortalInfo(
        slug="tripadvisor",
        name="TripAdvisor",
        host_patterns=("tripadvisor.*", "*.tripadvisor.*", "*.flipkey.com", "flipkey.com"),
        prodid_markers=("TripAdvisor", "FlipKey"),
        labels={RESERVED: ("Reserved", "Booked"), BLOCKED: ("Blocked", "Unavailable")},
        pickup_delay_min_minutes=1440,
        pickup_delay_max_minutes=1440,
    ),
    PortalInfo(
        slug="google",
        name="Google Calendar",
        host_patterns=("calendar.google.com", "*.calendar.google.com", "www.google.com"),
        prodid_markers=("Google Inc//Google Calendar", "Google Calendar"),
        labels={},
        pickup_delay_min_minutes=480,
        pickup_delay_max_minutes=1440,
    ),
    # The only portal name that is not a proper name: translated where shown (Portal.display_name).
    PortalInfo(slug="other", name=gettext_noop("Other"), labels={}),
)

BY_SLUG: dict[str, PortalInfo] = {p.slug: p for p in CATALOGUE}


def portal_for_prodid(prodid: str | None) -> PortalInfo | None:
    """The portal whose feeds carry this PRODID, if we recognise it."""
    if not prodid:
        return None
    lowered = prodid.lower()
    for portal in CATALOGUE:
        if any(marker.lower() in lowered for marker in portal.prodid_markers):
            return portal
    return None


def portal_for_host(host: str | None) -> PortalInfo | None:
    """The portal whose feed URLs live on this host name, if we recognise it."""
    if not host:
        return None
    host = host.lower().rstrip(".")
    for portal in CATALOGUE:
        if any(fnmatch.fnmatchcase(host, pattern) for pattern in portal.host_patterns):
            return portal
    return None


def classify_summary(summary: str | None, labels: dict[str, list[str]] | dict[str, tuple[str, ...]] | None) -> str:
    """The kind of block a feed event means, from its SUMMARY and the portal's labels.

    The longest matching label prefix wins, so "Airbnb (Not available)" is a block even though
    "Reserved"-style prefixes exist too. Anything we do not recognise blocks: a night wrongly
    closed costs far less than a night sold twice.
    """
    text = " ".join((summary or "").split()).casefold()
    best_kind, best_len = BLOCKED, 0
    for kind in KINDS:
        for label in (labels or {}).get(kind, ()):
            prefix = " ".join(label.split()).casefold()
            if prefix and text.startswith(prefix) and len(prefix) > best_len:
                best_kind, best_len = kind, len(prefix)
    return best_kind


# --------------------------------------------------------------------------- how each portal looks

@dataclass(frozen=True)
class Look:
    """How a source of nights is drawn, the same on every page (the calendar's cells and legend,
    the lists, the timeline): its colour, the ink written on it, and a short mark for cells too
    small for a name, so that no night is told by its colour alone."""

    background: str
    ink: str
    short: str


# One colour per portal, whatever the number of its syncs: two syncs of one portal are told apart
# by their labels ("Airbnb 2"), never by a second colour. Every ink on its background has a
# contrast of at least 4.5:1 (WCAG AA for text; tests/test_portal_looks.py measures it).
LOOKS: dict[str, Look] = {
    "airbnb": Look("#c8364a", "#ffffff", "AB"),
    "booking": Look("#003580", "#ffffff", "BK"),
    "vrbo": Look("#0b6b73", "#ffffff", "VR"),
    "expedia": Look("#fbcb3f", "#1d2330", "EX"),
    "tripadvisor": Look("#34e0a1", "#10231a", "TA"),
    "google": Look("#6b3fc0", "#ffffff", "GC"),
    "other": Look("#5c6675", "#ffffff", "•"),
}
# Nights closed here (manual blocks, direct bookings, the checklist's test night).
HERE_LOOK = Look("#1d2330", "#ffffff", "★")
# A portal added to the table but not (yet) to LOOKS is drawn as "other".
DEFAULT_LOOK = LOOKS["other"]


def look_for(slug: str | None) -> Look:
    return HERE_LOOK if slug is None else LOOKS.get(slug, DEFAULT_LOOK)


CSS_BEGIN = "/* portal colours (issue 20 owns these) */"
CSS_END = "/* end of portal colours */"


def portal_css() -> str:
    """The stylesheet's rules for these looks, between CSS_BEGIN and CSS_END in static/css/app.css
    (written there by `manage.py portal_colours`; a test checks that they match). Every element
    showing a source's nights carries ``night portal-<slug>`` or ``night here``."""
    lines = [CSS_BEGIN]
    for slug, look in LOOKS.items():
        lines.append(f".portal-{slug} {{ background-color: {look.background}; color: {look.ink}; }}")
    lines.append(f".night.here, .swatch.here {{ background-color: {HERE_LOOK.background}; color: {HERE_LOOK.ink}; }}")
    lines.append(CSS_END)
    return "\n".join(lines) + "\n"
