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
from tests.helpers import d

pytestmark = pytest.mark.django_db

UID = re.compile(rb"UID:([0-9a-f]{24})@localhost\r\n")



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
    # The clock stands still: the calendar's Last-Modified and DTSTAMP are the moment its blocks
    # were written, which a loaded machine would otherwise put a second after NOW.
    clock.move_to(NOW, tick=False)
    settings.EXPORT_UID_DOMAIN = "localhost"
    prop = PropertyFactory(name="Casa Azul", timezone="Europe/Lisbon")
    airbnb = ConnectionFactory(property=prop, portal=portal("airbnb"))
    vrbo = ConnectionFactory(property=prop, portal=portal("vrbo"))
    Connection.objects.filter(pk=vrbo.pk).update(export_summary="Ocupado")
    for source, start, end in ((airbnb, -5, -2), (airbnb, -4, -1), (airbnb, -2, 1), (airbnb, 3, 6), (None, 6, 8), (vrbo, 7, 10),
                               (vrbo, 20, 21), (airbnb, 729, 731), (airbnb, 730, 735)):
        BlockFactory(property=prop, source=source, start_date=d(start), end_date=d(end))

    wide = client.get(path(prop))
    stamp = "20270110T120000Z"  # the calendar last changed when the clock started (NOW)
    assert wide["Last-Modified"] == "Sun, 10 Jan 2027 12:00:00 GMT"
    # Yesterday onwards (stays that checked out yesterday or before are over); touching and overlapping
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


def test_another_property_s_nights_are_never_in_an_export(client, clock):
    ours = PropertyFactory(name="Casa Azul")
    other = PropertyFactory(name="Villa Outra")  # another account's
    BlockFactory(property=ours, start_date=d(3), end_date=d(5))
    BlockFactory(property=other, start_date=d(10), end_date=d(12))
    assert UID.sub(b"UID:<uid>\r\n", client.get(path(ours)).content) == reference(
        "Casa Azul", "Not available", "20270110T120000Z", [(d(3), d(5))]
    )


def test_yesterday_and_midnight_are_the_property_s_own(client, clock, settings):
    """Kiritimati is 14 hours ahead of UTC: at 12:00 UTC on 10 January it is already 02:00 on
    the 11th there, so "yesterday" is the 10th, and the calendar is new from 10:00 UTC on the 10th."""
    settings.EXPORT_UID_DOMAIN = "localhost"
    prop = PropertyFactory(name="Atoll", timezone="Pacific/Kiritimati")
    BlockFactory(property=prop, start_date=date(2027, 1, 7), end_date=date(2027, 1, 10))  # checked out on the 10th
    BlockFactory(property=prop, start_date=date(2027, 1, 8), end_date=date(2027, 1, 11))  # checks out on the 11th
    first = client.get(path(prop))
    assert UID.sub(b"UID:<uid>\r\n", first.content) == reference(
        "Atoll", "Not available", "20270110T120000Z", [(date(2027, 1, 8), date(2027, 1, 11))]
    )
    clock.shift(timedelta(days=1))  # 12:00 UTC on the 11th: the 12th in Kiritimati since 10:00 UTC
    later = client.get(path(prop))
    assert later["Last-Modified"] == "Mon, 11 Jan 2027 10:00:00 GMT"
    assert b"BEGIN:VEVENT" not in later.content
