"""Each member's emails: all properties, only those assigned to them, none; a daily digest
instead of one email per pause; and a double booking marked handled until a stay changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from syncs.dashboard import dashboard_summary
from syncs.digests import digests_send
from syncs.models import Activity, Block, Connection, Membership, PauseEpisode
from syncs.notifications import pause_notifications_send
from syncs.sync_state import state_record
from tests.factories import (
    BlockFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    portal,
)

pytestmark = pytest.mark.django_db
Role = Membership.Role


def paused_sync(prop):
    connection = ConnectionFactory(property=prop, paused_at=timezone.now(), pause_reason="timeout")
    PauseEpisode.objects.create(connection=connection, reason="timeout")
    return connection


def test_members_get_pause_emails_about_all_their_assigned_or_no_properties(mailoutbox):
    owner = MembershipFactory(user__email="all@example.com")
    account = owner.account
    assigned = MembershipFactory(account=account, role=Role.MANAGER, user__email="mine@example.com", email_alerts="assigned")
    MembershipFactory(account=account, role=Role.MANAGER, user__email="none@example.com", email_alerts="none")
    casa, loft = PropertyFactory(account=account, name="Casa"), PropertyFactory(account=account, name="Loft")
    assigned.assigned_properties.add(casa)
    paused_sync(casa)
    pause_notifications_send()
    paused_sync(loft)
    pause_notifications_send()
    by_property = {("Casa" if "Casa" in m.subject else "Loft"): sorted(m.to) for m in mailoutbox}
    assert by_property == {"Casa": ["all@example.com", "mine@example.com"], "Loft": ["all@example.com"]}


def test_managers_assign_properties_to_a_member_on_the_properties_list(client):
    manager = MembershipFactory(role=Role.MANAGER)
    member = MembershipFactory(account=manager.account, role=Role.VIEWER)
    props = [PropertyFactory(account=manager.account) for _ in range(3)]
    client.force_login(manager.user)
    client.post(reverse("property-assign"), {"member": member.pk, "property": [p.pk for p in props[:2]], "assign": "1"})
    assert set(member.assigned_properties.all()) == set(props[:2])
    assert Activity.objects.get(action="properties_assigned").params["count"] == 2
    client.post(reverse("property-assign"), {"member": member.pk, "property": [props[0].pk], "assign": "0"})
    assert list(member.assigned_properties.all()) == [props[1]]


def test_a_digest_member_gets_one_email_a_day_instead_of_one_per_pause(mailoutbox, settings):
    owner = MembershipFactory(user__email="digest@example.com", email_digest=True, time_zone="UTC")
    prop = PropertyFactory(account=owner.account, name="Casa")
    paused_sync(prop)
    pause_notifications_send()
    assert mailoutbox == []  # no email per pause
    now = timezone.now().replace(hour=9)
    assert digests_send(now=now) == 1
    [digest] = mailoutbox
    assert digest.to == ["digest@example.com"] and "1 sync needs attention" in digest.subject
    assert "Casa" in digest.body and "Paused by errors" in digest.body
    assert digests_send(now=now + timedelta(hours=2)) == 0  # once a day
    assert digests_send(now=now + timedelta(days=1)) == 1


def test_members_choose_their_emails_on_their_alerts_page(client):
    member = MembershipFactory(role=Role.VIEWER)
    client.force_login(member.user)
    assert client.get(reverse("my-alerts")).status_code == 200
    client.post(reverse("my-alerts"), {"email_alerts": "assigned", "email_digest": "on", "language": "pt"})
    member.refresh_from_db()
    assert (member.email_alerts, member.email_digest, member.language) == ("assigned", True, "pt")


def test_a_double_booking_marked_handled_comes_back_when_a_stay_changes(client):
    manager = MembershipFactory(role=Role.MANAGER)
    prop = PropertyFactory(account=manager.account, name="Loft")
    BlockFactory(property=prop, source=ConnectionFactory(property=prop), kind="reserved")
    moving = BlockFactory(property=prop, source=ConnectionFactory(property=prop, portal=portal("vrbo")), kind="reserved")
    [conflict] = dashboard_summary(user=manager.user).conflicts
    from syncs.conflicts import conflict_fingerprint, conflict_key

    client.force_login(manager.user)
    client.post(reverse("double-booking-handle", args=[prop.pk]), {
        "key": conflict_key(conflict), "fingerprint": conflict_fingerprint(conflict), "note": "guest moved",
    })
    summary = dashboard_summary(user=manager.user)
    assert summary.conflicts == [] and summary.handled_conflicts[0].mark.note == "guest moved"
    assert Activity.objects.filter(action="double_booking_handled").count() == 1
    moving.start_date -= timedelta(days=1)
    moving.save()
    summary = dashboard_summary(user=manager.user)
    assert [c.property.name for c in summary.conflicts] == ["Loft"] and summary.handled_conflicts == []
    # A mark made on a page that is out of date is refused.
    response = client.post(reverse("double-booking-handle", args=[prop.pk]), {
        "key": conflict_key(conflict), "fingerprint": conflict_fingerprint(conflict), "note": "stale", "next": "/",
    }, follow=True)
    assert "changed since you opened the page" in response.content.decode()


def clash(prop, *, in_days: int):
    """A possible double booking of ``prop``: two portals' reservations of the same two nights."""
    first = timezone.localdate() + timedelta(days=in_days)
    for slug in ("airbnb", "vrbo"):
        source = ConnectionFactory(property=prop, portal=portal(slug), import_url=f"https://example.com/{prop.pk}-{in_days}-{slug}.ics")
        BlockFactory(property=prop, source=source, kind="reserved", start_date=first, end_date=first + timedelta(days=2))


def test_the_overview_finds_a_double_booking_behind_many_marked_handled(monkeypatch):
    """The overview reads the soonest double bookings first; when those are all marked handled
    it reads on, rather than say that none needs attention."""
    from syncs.conflicts import conflict_fingerprint, conflict_key, double_booking_mark_handled

    manager = MembershipFactory(role=Role.MANAGER)
    soon = [PropertyFactory(account=manager.account, name=f"Soon {n}") for n in range(3)]
    for n, prop in enumerate(soon):
        clash(prop, in_days=2 + n)
    for conflict in dashboard_summary(user=manager.user).conflicts:
        double_booking_mark_handled(user=manager.user, property=conflict.property, key=conflict_key(conflict),
                                    fingerprint=conflict_fingerprint(conflict), note="moved")
    clash(PropertyFactory(account=manager.account, name="Later"), in_days=40)
    summary = dashboard_summary(user=manager.user)
    assert [c.property.name for c in summary.conflicts] == ["Later"]
    assert not summary.nothing_needs_attention
    assert sorted(m.conflict.property.name for m in summary.handled_conflicts) == ["Soon 0", "Soon 1", "Soon 2"]


def test_the_overview_and_the_digest_count_every_double_booking_beyond_those_they_list(client, mailoutbox, monkeypatch):
    """With more double bookings than a page lists, the overview's heading counts them all and
    says how many more come later; those marked handled are counted apart, wherever they fall
    among the others; the digest says the same."""
    from syncs.conflicts import (
        conflict_fingerprint,
        conflict_key,
        double_booking_mark_handled,
        property_conflicts,
    )

    monkeypatch.setattr("syncs.conflicts.CONFLICTS_SHOWN", 3)
    owner = MembershipFactory(user__email="owner@example.com", email_digest=True, time_zone="UTC")
    flats = [PropertyFactory(account=owner.account, name=f"Flat {n}") for n in range(9)]
    for n, prop in enumerate(flats):
        clash(prop, in_days=2 + n)
    for prop in (flats[1], flats[5], flats[6], flats[7], flats[8]):  # one among the soonest, four later
        [conflict] = property_conflicts(property_ids=[prop.pk], today=timezone.localdate())
        double_booking_mark_handled(user=owner.user, property=prop, key=conflict_key(conflict),
                                    fingerprint=conflict_fingerprint(conflict), note="moved")
    summary = dashboard_summary(user=owner.user)
    assert [c.property.name for c in summary.conflicts] == ["Flat 0", "Flat 2", "Flat 3"]
    assert (summary.conflicts_total, summary.conflicts_more) == (4, 1)
    assert [m.conflict.property.name for m in summary.handled_conflicts] == ["Flat 1", "Flat 5", "Flat 6"]
    assert (summary.handled_total, summary.handled_more) == (5, 2)
    client.force_login(owner.user)
    page = client.get(reverse("home")).content.decode()
    assert "4 possible double bookings" in page and "and 1 more, later: the properties list marks" in page
    assert "5 double bookings marked handled" in page and "and 2 more, later</p>" in page

    assert digests_send(now=timezone.now().replace(hour=9)) == 1
    [digest] = mailoutbox
    assert "- Flat 3: " in digest.body and "- Flat 4: " not in digest.body and "and 1 more, later" in digest.body
    assert "- Flat 6: " in digest.body and "- Flat 7: " not in digest.body and "and 2 more, later" in digest.body


def test_a_direct_booking_made_here_is_named_in_its_double_booking_and_a_new_one_brings_it_back(client):
    """A portal's stay over nights taken by a direct booking made here is a double booking of
    both: the overview names "made here", and once marked handled it comes back when the direct
    booking is replaced by another over the same nights."""
    from syncs.blocks import block_create_manual, block_remove_manual
    from syncs.conflicts import conflict_fingerprint, conflict_key, double_booking_mark_handled

    manager = MembershipFactory(role=Role.MANAGER)
    prop = PropertyFactory(account=manager.account, name="Loft")
    first = timezone.localdate() + timedelta(days=3)
    BlockFactory(property=prop, source=ConnectionFactory(property=prop), kind="reserved", start_date=first,
                 end_date=first + timedelta(days=2))
    direct = block_create_manual(property=prop, start=first + timedelta(days=1), end=first + timedelta(days=4), kind="reserved")
    [conflict] = dashboard_summary(user=manager.user).conflicts
    assert conflict.sources == ["Airbnb", "made here"]
    assert (conflict.stays_first_night, conflict.stays_check_out) == (first, first + timedelta(days=4))
    assert (conflict.clash.first_night, conflict.clash.last_night, conflict.clash.nights) == (first + timedelta(days=1),) * 2 + (1,)
    client.force_login(manager.user)
    assert "booked on Airbnb, made here" in client.get(reverse("home")).content.decode()
    double_booking_mark_handled(user=manager.user, property=prop, key=conflict_key(conflict),
                                fingerprint=conflict_fingerprint(conflict), note="guest moved")
    assert dashboard_summary(user=manager.user).conflicts == []
    block_remove_manual(block=direct)
    block_create_manual(property=prop, start=first + timedelta(days=1), end=first + timedelta(days=4), kind="reserved")
    assert [c.sources for c in dashboard_summary(user=manager.user).conflicts] == [["Airbnb", "made here"]]
    # A closure made here is not a stay: no double booking.
    Block.objects.filter(source__isnull=True).update(kind="blocked")
    assert dashboard_summary(user=manager.user).conflicts == []


def test_an_assigned_member_digest_names_their_double_booking_behind_the_account_s_first(mailoutbox):
    owner = MembershipFactory(user__email="owner@example.com", time_zone="UTC")
    for n in range(25):  # the account's soonest double bookings, none of them this member's
        clash(PropertyFactory(account=owner.account, name=f"Other {n}"), in_days=2 + n % 5)
    mine = PropertyFactory(account=owner.account, name="Mine")
    clash(mine, in_days=60)
    member = MembershipFactory(account=owner.account, role=Role.VIEWER, user__email="member@example.com",
                               email_alerts="assigned", email_digest=True, time_zone="UTC")
    member.assigned_properties.add(mine)
    Membership.objects.exclude(pk=member.pk).update(email_digest=False)
    assert digests_send(now=timezone.now().replace(hour=9)) == 1
    [digest] = mailoutbox
    assert digest.to == ["member@example.com"] and "Other" not in digest.body
    assert "- Mine: " in digest.body and "(Airbnb, Vrbo)" in digest.body  # the double booking's line


def test_the_digest_lists_double_bookings_marked_handled_apart_and_alone_they_send_nothing(mailoutbox, monkeypatch):
    """A double booking marked handled is not among those to check, but is still listed, with who
    marked it and why; one needing attention behind the soonest handled ones is found; and when
    all there is to tell is handled ones, no digest goes out."""
    from syncs.conflicts import conflict_fingerprint, conflict_key, double_booking_mark_handled

    owner = MembershipFactory(user__email="owner@example.com", email_digest=True, time_zone="UTC")
    for n in range(2):
        clash(PropertyFactory(account=owner.account, name=f"Soon {n}"), in_days=2 + n)
    for conflict in dashboard_summary(user=owner.user).conflicts:
        double_booking_mark_handled(user=owner.user, property=conflict.property, key=conflict_key(conflict),
                                    fingerprint=conflict_fingerprint(conflict), note="guest moved to Loft 2")
    morning = timezone.now().replace(hour=9)
    working = {"direction": "import_only", "last_success_at": morning - timedelta(minutes=5)}  # every sync fine
    Connection.objects.update(**working)
    state_record(Connection.objects.values_list("pk", flat=True), now=morning)  # written raw: decided
    assert digests_send(now=morning) == 0 and mailoutbox == []

    clash(PropertyFactory(account=owner.account, name="Later"), in_days=30)
    Connection.objects.update(**working)
    state_record(Connection.objects.values_list("pk", flat=True), now=morning)
    Membership.objects.filter(pk=owner.pk).update(digest_sent_at=None)
    assert digests_send(now=morning) == 1
    [digest] = mailoutbox
    to_check, handled = digest.body.split("Marked handled (")
    assert "Possible double bookings:" in to_check and "- Later: " in to_check and "Soon" not in to_check
    assert "- Soon 0: " in handled and "- Soon 1: " in handled and "“guest moved to Loft 2”" in handled
    assert f"Marked handled by {owner.user.username}" in handled
    html = digest.alternatives[0][0]
    assert html.index("Later") < html.index("Marked handled (") < html.index("Soon 0")


def test_the_digest_lists_the_syncs_that_need_attention_in_the_overview_s_order(mailoutbox):
    owner = MembershipFactory(user__email="digest@example.com", email_digest=True, time_zone="UTC")
    now = timezone.now().replace(hour=9)
    # Made newest pause first: the database's own order would list it first.
    for name, paused_days in (("Recent", 1), ("Older", 3), ("Oldest", 6)):
        connection = paused_sync(PropertyFactory(account=owner.account, name=name))
        Connection.objects.filter(pk=connection.pk).update(paused_at=now - timedelta(days=paused_days))
        state_record([connection.pk])  # written raw: decided as the product's writes are
    overview = [s.connection.property.name for s in dashboard_summary(user=owner.user, now=now).attention]
    assert overview == ["Oldest", "Older", "Recent"]
    assert digests_send(now=now) == 1
    body = mailoutbox[0].body
    assert body.index("Oldest") < body.index("Older") < body.index("Recent")
