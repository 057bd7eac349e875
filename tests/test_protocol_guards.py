"""The exported calendar's bytes against a reference written out here as the README and
docs/domain.md describe it (RFC 5545 date-only events, exclusive DTEND, CRLF, "Not available",
touching stays merged, from yesterday to the horizon), never built with the exporter's own code
(issue 33). UIDs are opaque (stable per first night, under our domain): matched, then compared
across reads."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from django.urls import reverse

from syncs.export_tokens import export_token_ensure, token_from_nonce
from syncs.models import Connection
from tests.conftest import NOW
from tests.factories import BlockFactory, ConnectionFactory, PropertyFactory, portal

pytestmark = pytest.mark.django_db

TODAY = NOW.date()
UID = re.compile(rb"UID:([0-9a-f]{24})@localhost\r\n")


def d(days: int) -> date:
    return TODAY + timedelta(days=days)


def path(prop, connection=None) -> str:
    token = export_token_ensure(property=prop, connection=connection)
    return reverse("export-feed", kwargs={"token": token_from_nonce(token.nonce)})


def reference(name: str, summary: str, stamp: str, nights: list[tuple[date, date]]) -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//channelmgr//iCal availability sync 1.0//EN",
             "CALSCALE:GREGORIAN", "METHOD:PUBLISH", f"X-WR-CALNAME:{name}"]
    for start, end in nights:
        lines += ["BEGIN:VEVENT", f"SUMMARY:{summary}", f"DTSTART;VALUE=DATE:{start:%Y%m%d}",
                  f"DTEND;VALUE=DATE:{end:%Y%m%d}", f"DTSTAMP:{stamp}", "UID:<uid>", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


def test_the_export_is_byte_for_byte_the_documented_calendar(client, clock, settings):
    settings.EXPORT_UID_DOMAIN = "localhost"
    prop = PropertyFactory(name="Casa Azul", timezone="Europe/Lisbon")
    airbnb = ConnectionFactory(property=prop, portal=portal("airbnb"))
    vrbo = ConnectionFactory(property=prop, portal=portal("vrbo"))
    Connection.objects.filter(pk=vrbo.pk).update(export_summary="Ocupado")
    for source, start, end in ((airbnb, -5, -2), (airbnb, -2, 1), (airbnb, 3, 6), (None, 6, 8), (vrbo, 7, 10),
                               (vrbo, 20, 21), (airbnb, 729, 731), (airbnb, 730, 735)):
        BlockFactory(property=prop, source=source, start_date=d(start), end_date=d(end))

    wide = client.get(path(prop))
    stamp = "20270110T120000Z"  # the calendar last changed when the clock started (NOW)
    assert wide["Last-Modified"] == "Sun, 10 Jan 2027 12:00:00 GMT"
    # Yesterday onwards (a stay that checked out yesterday is over); touching and overlapping
    # stays merged; nothing starting 730 days ahead or later.
    assert UID.sub(b"UID:<uid>\r\n", wide.content) == reference(
        "Casa Azul", "Not available", stamp, [(d(-2), d(1)), (d(3), d(10)), (d(20), d(21)), (d(729), d(731))]
    )
    assert len(set(UID.findall(wide.content))) == 4

    to_vrbo = client.get(path(prop, vrbo))  # its own nights are never sent back to it
    assert UID.sub(b"UID:<uid>\r\n", to_vrbo.content) == reference(
        "Casa Azul", "Ocupado", stamp, [(d(-2), d(1)), (d(3), d(8)), (d(729), d(731))]
    )
    # The same first night has the same UID in every calendar of the property.
    assert UID.findall(to_vrbo.content)[0] == UID.findall(wide.content)[0]
