"""Several pause/restore cycles of one sync in a row, driven through the real engine and notifier
against a portal played on 127.0.0.1: each pause is an episode of its own, with its own "Paused"
and "Restored" emails, webhook events and activity lines (README: "the operator is told once per
episode"; a pause soon after a restore, before "Restored" went out, continues the same one)
(issue 33)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from syncs.engine.task import connection_sync_leased
from syncs.models import Activity, Membership, PauseEpisode, SyncRun, WebhookDelivery
from syncs.notifications import send_pause_notifications
from syncs.webhooks import webhook_create
from tests import feeds
from tests.factories import ConnectionFactory, MembershipFactory, PropertyFactory, portal
from tests.helpers import answer as shared_answer

pytestmark = pytest.mark.django_db

FEED = "/calendar/ical/31.ics"


@pytest.fixture
def clock():
    """Time that moves when a test says so, from now (the emails' words use today's dates)."""
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        yield traveller


@pytest.fixture
def server(httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    return httpserver


@pytest.fixture
def owner():
    return MembershipFactory(role=Membership.Role.OWNER, user__email="owner@example.com")


@pytest.fixture
def sync(owner, server):
    prop = PropertyFactory(account=owner.account, name="Casa Azul")
    webhook_create(user=owner.user, account=owner.account, url="http://127.0.0.1:9/hook",
                   events=["paused", "restored"], slack_text=False)
    return ConnectionFactory(property=prop, portal=portal("airbnb"), import_url=server.url_for(FEED))



def answer(server, body: bytes, status: int = 200, content_type: str = "text/calendar") -> None:
    shared_answer(server, body, status, path=FEED, content_type=content_type)


def run(sync) -> SyncRun:
    return connection_sync_leased(connection_id=sync.pk, trigger=SyncRun.Trigger.MANUAL)


def automatic_lines(sync) -> list[str]:
    return list(Activity.objects.filter(connection_id=sync.pk, user=None).order_by("created_at", "pk")
                .values_list("action", flat=True))


def test_three_pauses_a_day_apart_are_three_episodes_each_told_and_restored(clock, server, sync, mailoutbox):
    today = timezone.localdate()
    stay = ("s1", today + timedelta(days=3), today + timedelta(days=5))
    for _cycle in range(3):
        answer(server, b"gone", status=404, content_type="text/plain")
        run(sync)  # a 404 pauses at once
        send_pause_notifications()
        answer(server, feeds.airbnb(stay))
        run(sync)  # works: the pause ends
        clock.shift(timedelta(minutes=30))  # past the settling time: "Restored" goes out
        send_pause_notifications()
        clock.shift(timedelta(hours=24))

    assert [m.subject for m in mailoutbox] == ["Paused: Airbnb sync of Casa Azul", "Restored: Airbnb sync of Casa Azul"] * 3
    episodes = list(PauseEpisode.objects.filter(connection=sync).order_by("started_at"))
    assert len(episodes) == 3
    assert all(e.ended_at and e.notified_at and e.restored_notified_at for e in episodes)
    assert len({e.started_at for e in episodes}) == 3
    assert list(WebhookDelivery.objects.filter(connection=sync).order_by("pk").values_list("event", flat=True)) == [
        "paused", "restored"
    ] * 3
    assert automatic_lines(sync) == ["paused", "pause_email_sent", "resumed", "restored_email_sent"] * 3


def test_a_pause_before_restored_went_out_continues_the_episode_then_a_later_one_is_new(
    clock, server, sync, mailoutbox
):
    today = timezone.localdate()
    stay = ("s1", today + timedelta(days=3), today + timedelta(days=5))
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)
    send_pause_notifications()
    answer(server, feeds.airbnb(stay))
    run(sync)
    clock.shift(timedelta(minutes=3))
    send_pause_notifications()  # too soon for "Restored"
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)  # paused again: the same episode, still told
    clock.shift(timedelta(hours=1))
    send_pause_notifications()
    assert [m.subject for m in mailoutbox] == ["Paused: Airbnb sync of Casa Azul"]
    assert PauseEpisode.objects.filter(connection=sync).count() == 1

    answer(server, feeds.airbnb(stay))
    run(sync)
    clock.shift(timedelta(minutes=30))
    send_pause_notifications()
    clock.shift(timedelta(days=2))
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)  # after "Restored" went out: a new episode, told again
    send_pause_notifications()
    assert [m.subject for m in mailoutbox] == [
        "Paused: Airbnb sync of Casa Azul", "Restored: Airbnb sync of Casa Azul", "Paused: Airbnb sync of Casa Azul",
    ]
    assert PauseEpisode.objects.filter(connection=sync).count() == 2
    assert list(WebhookDelivery.objects.filter(connection=sync).order_by("pk").values_list("event", flat=True)) == [
        "paused", "restored", "paused",
    ]
