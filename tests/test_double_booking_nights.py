"""A double booking is the nights that clash, the same in every place that shows it.

Two properties at opposite ends of the day (Pacific/Kiritimati, UTC+14, and America/Adak,
UTC-10 in winter) read the same two portal feeds, whose stays are written in UTC date-times.
Each property turns them into its own nights (docs: "Date-times are converted to the property's
time zone first"), so the same feeds clash on different nights in each. The nights expected are
worked out here by hand from that rule; the overview, the property's calendar, the timeline,
the checklist, the digest email, the webhook and the activity log must all say exactly those.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from syncs.conflicts import (
    Stay,
    clash_of,
    conflict_fingerprint,
    conflict_key,
    double_booking_mark_handled,
    property_conflicts,
)
from syncs.digests import digests_send
from syncs.engine.fetch import close_kept_connections
from syncs.engine.task import connection_sync_leased
from syncs.models import PauseEpisode, WebhookDelivery
from syncs.troubleshooting import run_step
from syncs.webhooks import scan_double_bookings, webhook_create, webhook_deliver
from tests.factories import (
    BlockFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    portal,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 11, 20, 12, 0, tzinfo=UTC)

# Airbnb's guest: 10 Dec 15:00 UTC to 14 Dec 10:00 UTC. Vrbo's: 12 Dec 09:00 UTC to 16 Dec 10:00 UTC.
AIRBNB = ("20271210T150000Z", "20271214T100000Z")
VRBO = ("20271212T090000Z", "20271216T100000Z")

# By hand. Kiritimati (UTC+14): Airbnb from 11 Dec 05:00 to 15 Dec 00:00, nights 11-14; Vrbo from
# 12 Dec 23:00 to 17 Dec 00:00, nights 12-16. Both take the nights of 12, 13 and 14 December.
# Adak (UTC-10): Airbnb from 10 Dec 05:00 to 14 Dec 00:00, nights 10-13; Vrbo from 11 Dec 23:00
# to 16 Dec 00:00, nights 11-15. Both take the nights of 11, 12 and 13 December.
EXPECTED = {
    "Pacific/Kiritimati": {
        "nights": [date(2027, 12, 12), date(2027, 12, 13), date(2027, 12, 14)],
        "words": "3 nights, 12 December to 14 December 2027",
        "stays": [("Airbnb", "2027-12-11", "2027-12-15"), ("Vrbo", "2027-12-12", "2027-12-17")],
    },
    "America/Adak": {
        "nights": [date(2027, 12, 11), date(2027, 12, 12), date(2027, 12, 13)],
        "words": "3 nights, 11 December to 13 December 2027",
        "stays": [("Airbnb", "2027-12-10", "2027-12-14"), ("Vrbo", "2027-12-11", "2027-12-16")],
    },
}


def feed(prodid: str, uid: str, start: str, end: str, summary: str) -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{prodid}", "BEGIN:VEVENT", f"UID:{uid}",
             "DTSTAMP:20271101T000000Z", f"DTSTART:{start}", f"DTEND:{end}", f"SUMMARY:{summary}",
             "END:VEVENT", "END:VCALENDAR"]
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.fixture
def world(httpserver, settings, client, mailoutbox):
    """The owner (daily digest, a webhook told of double bookings), and the two properties,
    each synced from the two portals through the engine."""
    settings.FETCH_ALLOW_LOOPBACK = True
    settings.LANGUAGE_CODE = "en"
    with time_machine.travel(NOW, tick=False):
        owner = MembershipFactory(user__email="owner@example.com", email_digest=True, time_zone="UTC", language="en")
        httpserver.expect_request("/airbnb.ics").respond_with_data(
            feed("-//Airbnb Inc//Hosting Calendar 1.0//EN", "a1@airbnb.com", *AIRBNB, "Reserved"), content_type="text/calendar")
        httpserver.expect_request("/vrbo.ics").respond_with_data(
            feed("-//HomeAway.com, Inc.//EN", "v1", *VRBO, "Reserved - Tom"), content_type="text/calendar")
        httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
        webhook_create(user=owner.user, account=owner.account, url=httpserver.url_for("/hook"), events=["double_booking"],
                       slack_text=True)
        properties = {}
        for zone in EXPECTED:
            prop = PropertyFactory(account=owner.account, name=zone.split("/")[1], timezone=zone)
            for slug in ("airbnb", "vrbo"):
                sync = ConnectionFactory(property=prop, portal=portal(slug), import_url=httpserver.url_for(f"/{slug}.ics")
                                         + f"?p={prop.pk}")
                connection_sync_leased(connection_id=sync.pk, trigger="manual")
            properties[zone] = prop
        client.force_login(owner.user)
        yield owner, properties, httpserver
    close_kept_connections()


def iso(nights: list[date]) -> tuple[str, str, int]:
    return nights[0].isoformat(), nights[-1].isoformat(), len(nights)


def test_the_clashing_nights_are_the_same_everywhere_in_each_property_s_own_time_zone(world, client, mailoutbox):
    owner, properties, receiver = world
    with time_machine.travel(NOW, tick=False):
        # The overview: each double booking by its clashing nights, in words and for machines.
        overview = client.get(reverse("home")).content.decode()
        for zone, prop in properties.items():
            expected = EXPECTED[zone]
            item = re.search(rf'<li class="conflict-item" data-property="{prop.name}"(.*?)</li>', overview, re.DOTALL)
            assert item, f"{prop.name} is not listed"
            first, last, count = iso(expected["nights"])
            assert f'data-first-night="{first}" data-last-night="{last}" data-nights="{count}"' in item.group(1)
            assert expected["words"] in item.group(1)
            assert "?month=2027-12#calendar" in item.group(1)

            # The property's calendar marks exactly those nights, and both stays on each.
            calendar = client.get(reverse("property-detail", args=[prop.pk]), {"month": "2027-12"}).content.decode()
            marked = re.findall(r'<td class="day taken conflict"[^>]*>\s*<button[^>]*aria-describedby="night-([\d-]+)"', calendar)
            assert marked == [night.isoformat() for night in expected["nights"]]
            assert calendar.count('class="night portal-airbnb conflict"') == 3
            assert calendar.count('class="night portal-vrbo conflict"') == 3

            # The timeline, from 1 December: its night columns of the property's row.
            timeline = client.get(reverse("timeline"), {"from": "2027-12-01", "nights": 30}).content.decode()
            row = re.search(rf'<tr id="tl-property-{prop.pk}".*?</tr>', timeline, re.DOTALL).group(0)
            cells = re.findall(r'<td class="(tl-night[^"]*)"', row)
            hatched = [date(2027, 12, 1) + timedelta(days=n) for n, classes in enumerate(cells) if " conflict" in classes]
            assert hatched == expected["nights"]

            # The checklist's review of what changed while a sync was paused.
            sync = prop.connections.get(portal__slug="vrbo")
            PauseEpisode.objects.create(connection=sync, started_at=NOW - timedelta(hours=1), reason="timeout")
            report = run_step(connection=sync, step="changes", user=owner.user)
            assert f"Possible double booking, {expected['words']}: Airbnb, Vrbo" in [f.text for f in report.findings]

        # The daily digest email, in both of its parts.
        assert digests_send(now=NOW.replace(hour=9) + timedelta(days=1)) == 1
        [digest] = mailoutbox
        html = digest.alternatives[0][0]
        for zone, prop in properties.items():
            assert f"- {prop.name}: {EXPECTED[zone]['words']} (Airbnb, Vrbo)" in digest.body
            assert f"{prop.name}: {EXPECTED[zone]['words']} (Airbnb, Vrbo)" in html

        # The webhook: the clash, and each stay's own dates named as such, as sent.
        assert scan_double_bookings(now=NOW) == 2
        for delivery in WebhookDelivery.objects.all():
            assert webhook_deliver(delivery_id=delivery.pk) == "delivered"
        bodies = {body["property"]: body for body in (json.loads(request.get_data()) for request, _ in receiver.log
                                                      if request.path == "/hook")}
        for zone, prop in properties.items():
            body, expected = bodies[prop.name], EXPECTED[zone]
            first, last, count = iso(expected["nights"])
            assert body["clash"] == {"first_night": first, "last_night": last, "nights": count}
            assert [(s["source"], s["first_night"], s["check_out"]) for s in body["stays"]] == expected["stays"]
            # The keys integrations read before stay what they were: the stays' first night and last check-out.
            assert (body["first_night"], body["checkout"]) == (expected["stays"][0][1], expected["stays"][1][2])
            assert f"Possible double booking at {prop.name}: {expected['words']}, booked on Airbnb, Vrbo." in body["text"]

        # The activity log, once marked handled.
        for prop in properties.values():
            [conflict] = property_conflicts(property_ids=[prop.pk])
            double_booking_mark_handled(user=owner.user, property=prop, key=conflict_key(conflict),
                                        fingerprint=conflict_fingerprint(conflict), note="checked")
        activity = client.get(reverse("activity")).content.decode()
        for zone in EXPECTED:
            assert EXPECTED[zone]["words"] in activity


def test_a_double_booking_whose_nights_are_over_in_its_property_s_own_day_is_gone_where_the_day_is_behind_it_is_not(client):
    """At 11:00 UTC on 13 December it is already the 14th in Kiritimati and still the 13th in
    Adak: two stays leaving on the 14th clash on the night of the 13th, which is over in
    Kiritimati and is tonight in Adak."""
    with time_machine.travel(datetime(2027, 12, 13, 11, 0, tzinfo=UTC), tick=False):
        owner = MembershipFactory()
        for zone in EXPECTED:
            prop = PropertyFactory(account=owner.account, name=zone.split("/")[1], timezone=zone)
            for slug, first in (("airbnb", date(2027, 12, 10)), ("vrbo", date(2027, 12, 13))):
                BlockFactory(property=prop, source=ConnectionFactory(property=prop, portal=portal(slug)), kind="reserved",
                             start_date=first, end_date=date(2027, 12, 14))
        client.force_login(owner.user)
        overview = client.get(reverse("home")).content.decode()
    assert 'data-property="Adak" data-first-night="2027-12-13" data-last-night="2027-12-13" data-nights="1"' in overview
    assert "the night of 13 December 2027" in overview
    assert 'data-property="Kiritimati"' not in overview


@pytest.mark.parametrize(
    ("stays", "runs"),
    [
        # Touching at the check-out day: no night in common.
        ([(1, "a", 1, 4), (2, "b", 4, 6)], []),
        # One night in common.
        ([(1, "a", 1, 4), (2, "b", 3, 6)], [(3, 4)]),
        # A long stay of one source against two stays of another, apart: two runs of nights.
        ([(1, "a", 1, 20), (2, "b", 3, 5), (3, "b", 10, 11)], [(3, 5), (10, 11)]),
        # Two stays of one source overlapping each other never clash with each other.
        ([(1, "a", 1, 5), (2, "a", 3, 8), (3, "b", 7, 9)], [(7, 8)]),
        # Every stay made here is one source: two of them never clash; with a portal's, they do.
        ([(1, None, 1, 5), (2, None, 3, 8)], []),
        ([(1, None, 1, 5), (2, None, 3, 8), (3, "b", 4, 6)], [(4, 6)]),
    ],
)
def test_the_nights_that_clash_are_those_two_sources_both_take(stays, runs):
    day = date(2027, 12, 1)

    def night(n: int) -> date:
        return day + timedelta(days=n)

    stays = [Stay(pk, source, night(first), night(checkout), "reserved") for pk, source, first, checkout in stays]
    if not runs:
        with pytest.raises(ValueError, match="do not clash"):
            clash_of(stays)
        return
    clash = clash_of(stays)
    nights = [night(n) for start, end in runs for n in range(start, end)]
    assert (clash.first_night, clash.last_night, clash.nights) == (nights[0], nights[-1], len(nights))
    assert [n for n in (night(k) for k in range(0, 25)) if n in clash] == nights
