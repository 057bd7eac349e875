"""Bulk actions: one POST, account-scoped, one activity entry, syncs queued (never run here)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import formats, timezone, translation

from syncs import jobs
from syncs.bulk import STALLED_AFTER
from syncs.models import Activity, BulkAction, Connection, Job, Membership
from syncs.sync_state import state_record
from tests.factories import (
    BlockFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    portal,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(client):
    membership = MembershipFactory(role=Membership.Role.MANAGER)
    client.force_login(membership.user)
    return membership


def test_sync_now_of_many_syncs_is_queued_recorded_once_and_shows_progress(client, manager):
    prop = PropertyFactory(account=manager.account)
    mine = ConnectionFactory.create_batch(5, property=prop)
    theirs = ConnectionFactory(property=PropertyFactory(account=MembershipFactory().account))
    response = client.post(reverse("bulk-action"), {"action": "sync_now", "connection": [c.pk for c in mine] + [theirs.pk]})
    action = BulkAction.objects.get()
    assert response.status_code == 302 and response["Location"].startswith(reverse("bulk-detail", args=[action.pk]))
    assert sorted(action.connection_ids) == sorted(c.pk for c in mine)
    assert Connection.objects.filter(sync_requested_at__isnull=False).count() == 5  # written first; no run here
    assert not Connection.objects.get(pk=theirs.pk).sync_requested_at  # another account's sync is untouched
    assert not Connection.objects.filter(last_attempt_at__isnull=False).exists()
    entry = Activity.objects.get()
    assert (entry.action, entry.params["count"]) == ("bulk_sync_requested", 5)
    page = client.get(reverse("bulk-detail", args=[action.pk])).content.decode()
    assert "0 of 5 finished" in page
    Connection.objects.filter(pk__in=[c.pk for c in mine[:3]]).update(sync_requested_at=None, last_success_at=timezone.now())
    state_record([c.pk for c in mine[:3]])  # as the record of those syncs decides their state
    progress = client.get(reverse("bulk-progress", args=[action.pk]))
    assert progress.status_code == 200 and "3 of 5 finished" in progress.content.decode()
    Connection.objects.update(sync_requested_at=None)
    assert client.get(reverse("bulk-progress", args=[action.pk])).status_code == 286  # htmx stops polling


def test_all_matching_the_filter_switches_off_exactly_the_matching_syncs(client, manager):
    paused = ConnectionFactory(property=PropertyFactory(account=manager.account), paused_at=timezone.now(), pause_reason="timeout")
    working = ConnectionFactory(property=PropertyFactory(account=manager.account), last_success_at=timezone.now())
    client.post(reverse("bulk-action"), {"action": "switch_off", "all": "1", "state": "paused", "next": "/timeline/"})
    assert not Connection.objects.get(pk=paused.pk).enabled
    assert Connection.objects.get(pk=working.pk).enabled
    assert Activity.objects.get().params["count"] == 1


def test_viewers_cannot_act_in_bulk(client):
    viewer = MembershipFactory(role=Membership.Role.VIEWER)
    connection = ConnectionFactory(property=PropertyFactory(account=viewer.account))
    client.force_login(viewer.user)
    assert client.post(reverse("bulk-action"), {"action": "switch_off", "connection": [connection.pk]}).status_code == 403
    assert Connection.objects.get(pk=connection.pk).enabled


def test_the_timeline_reads_the_same_number_of_queries_for_few_or_many_properties(
    client, manager, django_assert_max_num_queries
):
    def page() -> None:
        assert client.get(reverse("timeline")).status_code == 200

    ConnectionFactory(property=PropertyFactory(account=manager.account))
    with django_assert_max_num_queries(40) as few:
        page()
    for _ in range(30):
        prop = PropertyFactory(account=manager.account)
        ConnectionFactory.create_batch(3, property=prop, paused_at=timezone.now(), pause_reason="timeout")
    with django_assert_max_num_queries(len(few.captured_queries)):
        page()


def test_the_timeline_says_each_taken_night_with_its_date_and_portal_in_the_reader_language(client, manager):
    prop = PropertyFactory(account=manager.account)
    other = ConnectionFactory(property=prop, portal=portal("other"), import_url="https://example.org/calendar.ics")
    first = timezone.localdate() + timedelta(days=3)
    BlockFactory(property=prop, source=other, start_date=first, end_date=first + timedelta(days=2))
    page = client.get(reverse("timeline"), HTTP_ACCEPT_LANGUAGE="pt").content.decode()
    with translation.override("pt"):
        said = [f"{formats.date_format(first + timedelta(days=n), 'DATE_FORMAT')}: Outro" for n in (0, 1)]
    for words in said:  # each taken night, in Portuguese: its own date, the portal's name
        assert f'<span class="visually-hidden">{words}</span>' in page
    assert 'title="Other"' not in page
    # The legend, the portal filter and the sync's own chip name it in Portuguese too.
    assert ">Other<" not in page and page.count("Outro<") >= 3


def test_two_syncs_of_one_portal_are_told_apart_on_the_timeline_and_their_clash_is_marked(client, manager):
    prop = PropertyFactory(account=manager.account, name="Two listings")
    first, second = ConnectionFactory.create_batch(2, property=prop, portal=portal("airbnb"))
    night = timezone.localdate() + timedelta(days=4)
    for source in (first, second):
        BlockFactory(property=prop, source=source, start_date=night, end_date=night + timedelta(days=1), kind="reserved")
    page = client.get(reverse("timeline"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    day = formats.date_format(night, "DATE_FORMAT")
    assert f'<span class="visually-hidden">{day}: Airbnb 1, Airbnb 2 — possible double booking</span>' in page
    assert "Select the Airbnb 1 sync of Two listings" in page and "Select the Airbnb 2 sync of Two listings" in page


def test_accepting_held_removals_in_bulk_accepts_the_answers_seen_and_asks_a_worker_for_each(client, manager):
    prop = PropertyFactory(account=manager.account)
    held = ConnectionFactory.create_batch(2, property=prop, held_answer="answer-a", held_removals=4, held_since=timezone.now())
    nothing_held = ConnectionFactory(property=prop)
    response = client.post(reverse("bulk-action"), {"action": "accept_held", "connection": [c.pk for c in [*held, nothing_held]]})
    action = BulkAction.objects.get()
    assert response["Location"].startswith(reverse("bulk-detail", args=[action.pk]))
    assert sorted(action.awaited_ids) == sorted(c.pk for c in held)
    for connection in held:
        connection.refresh_from_db()
        assert (connection.held_accepted_answer, connection.sync_requested_at is not None) == ("answer-a", True)
    # Each sync asked for is a durable job, written with the action (handed over after the commit).
    assert sorted(Job.objects.values_list("args", flat=True)) == sorted([c.pk, "manual"] for c in held)
    assert not Connection.objects.get(pk=nothing_held.pk).sync_requested_at


def test_the_progress_page_ends_saying_so_when_no_worker_takes_the_syncs(client, manager):
    connection = ConnectionFactory(property=PropertyFactory(account=manager.account))
    client.post(reverse("bulk-action"), {"action": "sync_now", "connection": [connection.pk]})
    action = BulkAction.objects.get()
    progress = client.get(reverse("bulk-progress", args=[action.pk]))
    assert progress.status_code == 200 and "Running…" in progress.content.decode()
    with time_machine.travel(timezone.now() + STALLED_AFTER):
        progress = client.get(reverse("bulk-progress", args=[action.pk]))
        page = client.get(reverse("bulk-detail", args=[action.pk])).content.decode()
    assert progress.status_code == 286  # htmx stops polling
    assert "Nothing has moved for 5 minutes: no worker is taking these syncs" in progress.content.decode()
    assert "Waiting for a worker." in page and 'hx-trigger="every 2s"' not in page


def test_the_progress_page_keeps_waiting_while_a_worker_has_taken_one_of_the_syncs(client, manager):
    first, second = ConnectionFactory.create_batch(2, property=PropertyFactory(account=manager.account))
    client.post(reverse("bulk-action"), {"action": "sync_now", "connection": [first.pk, second.pk]})
    action = BulkAction.objects.get()
    later = timezone.now() + STALLED_AFTER - timedelta(seconds=30)
    job = Job.objects.get(args=[first.pk, "manual"])
    with time_machine.travel(later, tick=False):
        assert jobs.job_start(job_id=job.pk, holder="job-x")  # a worker took it, and runs it
    with time_machine.travel(timezone.now() + STALLED_AFTER + timedelta(seconds=10)):
        assert client.get(reverse("bulk-progress", args=[action.pk])).status_code == 200


def test_sync_now_of_many_syncs_asks_for_them_in_as_many_statements_as_for_a_few(client, manager, django_assert_max_num_queries):
    def press(connections) -> None:
        client.post(reverse("bulk-action"), {"action": "sync_now", "connection": [c.pk for c in connections]})

    prop = PropertyFactory(account=manager.account)
    few = ConnectionFactory.create_batch(2, property=prop)
    with django_assert_max_num_queries(40) as counted:
        press(few)
    many = ConnectionFactory.create_batch(40, property=prop)
    with django_assert_max_num_queries(len(counted.captured_queries)):
        press(many)
    assert Job.objects.count() == 42
