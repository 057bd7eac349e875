"""The operator's pages: what is broken comes first, and every sync is one click from on/off."""

from __future__ import annotations

import functools
import socket
import time
from datetime import timedelta
from unittest import mock

import pytest
import time_machine
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from channelmgr.celery import app
from syncs import jobs, tasks
from syncs.models import Account, Activity, Block, Connection, Job, SyncRun
from syncs.sync_state import SyncState
from tests import feeds
from tests.factories import BlockFactory, ConnectionFactory, PropertyFactory, portal
from tests.jobs import recorded_hand_over
from tests.states import overview_tiles, sync_state_of

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def account(operator):
    return Account.of_user(operator)


@pytest.fixture
def no_broker():
    """Record what "Sync now" hands to the broker instead of publishing it."""
    with recorded_hand_over() as handed:
        yield handed


def test_the_overview_puts_a_paused_sync_first_with_its_reason_in_words(operator_client, account):
    prop = PropertyFactory(account=account, name="Casa Azul")
    ConnectionFactory(property=prop, last_success_at=timezone.now())
    broken = ConnectionFactory(
        property=prop, portal=portal("vrbo"), paused_at=timezone.now() - timedelta(hours=2),
        pause_reason="http_4xx", pause_params={"status": 404},
    )
    page = operator_client.get(reverse("home")).content.decode()
    assert "Vrbo answered 404: the calendar link no longer exists." in page
    assert f'id="attention-{broken.pk}"' in page
    assert reverse("connection-detail", args=[broken.pk]) in page
    assert "2\xa0hours ago" in page
    assert "All syncs are working" not in page


def test_a_sync_that_just_worked_or_paused_reads_less_than_a_minute_ago_not_0_minutes(operator_client, account):
    prop = PropertyFactory(account=account)
    just_worked = ConnectionFactory(property=prop, last_success_at=timezone.now() - timedelta(seconds=20))
    just_paused = ConnectionFactory(
        property=prop, portal=portal("vrbo"), paused_at=timezone.now(), pause_reason="http_4xx", pause_params={"status": 404},
    )
    pages = [
        operator_client.get(reverse("home")).content.decode(),
        operator_client.get(reverse("connection-detail", args=[just_worked.pk])).content.decode(),
        operator_client.get(reverse("connection-detail", args=[just_paused.pk])).content.decode(),
    ]
    for page in pages:
        assert "less than a minute ago" in page
        assert "0\xa0minutes" not in page
    assert "Paused less than a minute ago." in pages[2]


def test_the_overview_says_so_when_everything_works(operator_client, account):
    ConnectionFactory(property=PropertyFactory(account=account), last_success_at=timezone.now())
    page = operator_client.get(reverse("home")).content.decode()
    assert "All syncs are working; no double bookings." in page


def test_the_overview_counts_connections_by_state(operator_client, account):
    prop = PropertyFactory(account=account)
    now = timezone.now()
    ConnectionFactory.create_batch(2, property=prop, last_success_at=now)
    ConnectionFactory(property=prop, paused_at=now, pause_reason="timeout")
    ConnectionFactory(property=prop, enabled=False)
    ConnectionFactory(property=prop, last_success_at=now, held_removals=4, held_since=now)
    ConnectionFactory(property=prop, last_success_at=now - timedelta(hours=5))
    from syncs.dashboard import dashboard_summary

    counts = dashboard_summary(user=account.memberships.get().user).counts
    # Each sync in exactly one state: held and stale syncs are not also counted as working.
    assert (counts["working"], counts["paused"], counts["switched_off"], counts["held"], counts["stale"]) == (2, 1, 1, 1, 1)
    assert sum(counts.values()) == 6
    assert overview_tiles(operator_client) == {**dict.fromkeys(counts, 0), **{k: v for k, v in counts.items() if v}}


def test_a_possible_double_booking_is_listed_among_what_needs_attention_by_the_nights_that_clash(operator_client, account):
    prop = PropertyFactory(account=account, name="Casa Azul")
    airbnb = ConnectionFactory(property=prop, portal=portal("airbnb"), last_success_at=timezone.now())
    booking = ConnectionFactory(property=prop, portal=portal("booking"), last_success_at=timezone.now())
    start = timezone.localdate() + timedelta(days=10)
    # Airbnb: nights start to start+2; Booking.com: start+2 to start+4. Only start+2 clashes.
    BlockFactory(property=prop, source=airbnb, kind="reserved", start_date=start, end_date=start + timedelta(days=3))
    BlockFactory(property=prop, source=booking, kind="blocked", start_date=start + timedelta(days=2), end_date=start + timedelta(days=5))
    page = operator_client.get(reverse("home")).content.decode()
    attention = page[page.index('<section id="attention"'):page.index("</section>", page.index('<section id="attention"'))]
    assert 'id="conflicts"' in attention
    assert "booked on Airbnb, Booking.com" in attention
    night = start + timedelta(days=2)
    assert f"the night of {night.day} {night:%B %Y}" in attention
    assert f'data-first-night="{night}" data-last-night="{night}" data-nights="1"' in attention
    assert date_format(start, "DATE_FORMAT") not in page  # not the stays' span
    assert f"?month={night:%Y-%m}#calendar" in attention  # its action: the calendar of those nights
    assert "no double bookings" not in page


def test_a_portal_echoing_our_closures_is_not_a_double_booking(operator_client, account):
    prop = PropertyFactory(account=account)
    airbnb = ConnectionFactory(property=prop, portal=portal("airbnb"), last_success_at=timezone.now())
    vrbo = ConnectionFactory(property=prop, portal=portal("vrbo"), last_success_at=timezone.now())
    start = timezone.localdate() + timedelta(days=10)
    BlockFactory(property=prop, source=airbnb, kind="reserved", start_date=start, end_date=start + timedelta(days=3))
    BlockFactory(property=prop, source=vrbo, kind="blocked", start_date=start, end_date=start + timedelta(days=3))
    assert 'id="conflicts"' not in operator_client.get(reverse("home")).content.decode()


def test_the_double_booking_search_finds_exactly_the_stays_that_share_a_night_with_another_source(account, monkeypatch):
    """Against the rule said plainly (every pair compared): random stays of several properties, of
    two portals (one Booking.com, whose closures may be stays), made here, past, removed, of one
    night or many, overlapping or touching at the check-out day."""
    import random

    from syncs.conflicts import account_conflict_groups, conflicts_of, property_conflicts

    chance = random.Random(20261202)
    today = timezone.localdate()
    properties = [PropertyFactory(account=account, name=f"Flat {n}") for n in range(6)]
    stays = []
    for prop in properties:
        sources = [ConnectionFactory(property=prop, portal=portal(slug)) for slug in ("airbnb", "booking", "vrbo")] + [None]
        for n in range(40):
            start = today + timedelta(days=chance.randint(-10, 60))
            stays.append(Block(
                property=prop, source=chance.choice(sources), uid=f"{prop.pk}-{n}", start_date=start,
                end_date=start + timedelta(days=chance.choice((1, 1, 2, 3, 7))), kind=chance.choice(("reserved", "blocked")),
                removed_at=timezone.now() if chance.random() < 0.1 else None,
            ))
    Block.objects.bulk_create(stays)

    def may_be_a_stay(block):
        return block.kind == "reserved" or (block.source is not None and block.source.portal.slug == "booking")

    current = [b for b in Block.objects.select_related("source__portal") if b.removed_at is None and b.end_date > today
               and may_be_a_stay(b)]
    expected = {
        b.pk for b in current if any(
            other.pk != b.pk and other.property_id == b.property_id and other.source_id != b.source_id
            and other.start_date < b.end_date and other.end_date > b.start_date for other in current
        )
    }
    found = property_conflicts(property_ids=[p.pk for p in properties], today=today)
    assert expected and {stay[0] for c in found for stay in c.stays} == expected
    every = conflicts_of(account_conflict_groups(account=account, today=today))
    assert sorted(every, key=lambda c: (c.property.pk, c.clash.first_night)) == found
    soonest = [(c.clash.first_night, c.property.pk) for c in every]
    assert soonest == sorted(soonest)
    # Each double booking is the stays chained by shared nights, named by their sources.
    source_of = {b.pk: b.source.portal.name if b.source else "made here" for b in current}
    for conflict in found:
        assert conflict.stays_first_night == min(s[2] for s in conflict.stays)
        assert conflict.stays_check_out == max(s[3] for s in conflict.stays)
        # Its clashing nights: those two of its stays of different sources both take.
        nights = {
            night for a in conflict.stays for b in conflict.stays if a.source != b.source
            for night in (a.first_night + timedelta(days=n) for n in range((a.check_out - a.first_night).days))
            if b.first_night <= night < b.check_out
        }
        assert (conflict.clash.first_night, conflict.clash.last_night, conflict.clash.nights) == (min(nights), max(nights), len(nights))
        assert all(night in conflict.clash for night in nights)
        assert conflict.sources == list(dict.fromkeys(source_of[stay[0]] for stay in conflict.stays))
    # The worker's scan of every property, a few properties at a time, finds the same.
    monkeypatch.setattr("syncs.conflicts.PROPERTIES_PER_SEARCH", 4)
    assert property_conflicts(property_ids=None, today=today) == found


def test_the_overview_status_refreshes_itself_every_30_seconds(operator_client, account):
    page = operator_client.get(reverse("home")).content.decode()
    assert f'hx-get="{reverse("overview-status")}" hx-trigger="every 30s"' in page
    fragment = operator_client.get(reverse("overview-status"), **HTMX).content.decode()
    assert fragment.lstrip().startswith('<section id="status"')
    assert "<html" not in fragment


def test_switching_a_sync_off_and_on_swaps_only_its_row(operator_client, account):
    connection = ConnectionFactory(property=PropertyFactory(account=account), last_success_at=timezone.now())
    response = operator_client.post(reverse("connection-switch", args=[connection.pk]), {"enabled": "0"}, **HTMX)
    fragment = response.content.decode()
    assert fragment.lstrip().startswith(f'<tr id="connection-{connection.pk}"')
    assert "Switched off" in fragment
    assert "sync switched off" in fragment  # the toast, swapped out of band
    connection.refresh_from_db()
    assert not connection.enabled
    operator_client.post(reverse("connection-switch", args=[connection.pk]), {"enabled": "1"}, **HTMX)
    connection.refresh_from_db()
    assert connection.enabled
    actions = list(Activity.objects.filter(connection=connection).values_list("action", flat=True))
    assert actions == ["switched_on", "switched_off"]


def test_switching_works_without_javascript_too(operator_client, account):
    connection = ConnectionFactory(property=PropertyFactory(account=account))
    page = reverse("property-detail", args=[connection.property_id])
    response = operator_client.post(reverse("connection-switch", args=[connection.pk]), {"enabled": "0", "next": page}, follow=True)
    assert response.redirect_chain[-1][0] == page
    assert "sync switched off" in response.content.decode()


def test_switching_a_paused_sync_back_on_checks_it_at_once(operator_client, account, no_broker):
    connection = ConnectionFactory(property=PropertyFactory(account=account), paused_at=timezone.now(), pause_reason="http_4xx")
    with operator_client_on_commit():
        fragment = operator_client.post(reverse("connection-switch", args=[connection.pk]), {"enabled": "1"}, **HTMX)
    assert "checking its calendar now" in fragment.content.decode()
    assert sync_state_of(connection) == SyncState.CHECKING
    assert no_broker.syncs() == [connection.pk]  # the check is a sync run at once, not at the next turn


def test_sync_now_shows_progress_until_the_run_is_done(operator_client, account, no_broker, httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    today = timezone.localdate()
    httpserver.expect_request("/f.ics").respond_with_data(feeds.airbnb(("a", today + timedelta(days=2), today + timedelta(days=4))))
    connection = ConnectionFactory(property=PropertyFactory(account=account), import_url=httpserver.url_for("/f.ics"))
    with operator_client_on_commit():
        fragment = operator_client.post(reverse("connection-sync-now", args=[connection.pk]), **HTMX).content.decode()
    assert "Syncing…" in fragment
    assert 'hx-trigger="every 2s"' in fragment
    assert no_broker.syncs() == [connection.pk]
    # The worker runs the task it was handed.
    tasks.sync_connection(connection.pk, "manual")
    row = operator_client.get(reverse("connection-row", args=[connection.pk]), **HTMX).content.decode()
    assert "every 2s" not in row
    assert "Working" in row
    assert Block.objects.filter(source=connection).count() == 1


def test_the_connection_page_reloads_itself_when_its_sync_now_is_done(operator_client, account, no_broker, httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    today = timezone.localdate()
    httpserver.expect_request("/f.ics").respond_with_data(feeds.airbnb(("a", today + timedelta(days=2), today + timedelta(days=4))))
    connection = ConnectionFactory(property=PropertyFactory(account=account), import_url=httpserver.url_for("/f.ics"))
    page_url = reverse("connection-detail", args=[connection.pk])
    state_url = reverse("connection-sync-state", args=[connection.pk])
    with operator_client_on_commit():
        operator_client.post(reverse("connection-sync-now", args=[connection.pk]), {"next": page_url})

    page = operator_client.get(page_url).content.decode()
    assert "Syncing…" in page
    assert f'hx-get="{state_url}" hx-trigger="every 2s"' in page
    running = operator_client.get(state_url, **HTMX)
    assert running.status_code == 204 and "HX-Refresh" not in running

    tasks.sync_connection(connection.pk, "manual")  # the worker runs the task it was handed
    done = operator_client.get(state_url, **HTMX)
    assert done.status_code == 200 and done["HX-Refresh"] == "true"
    page = operator_client.get(page_url).content.decode()
    assert state_url not in page and "Syncing…" not in page
    assert "Working" in page and "less than a minute ago" in page


def operator_client_on_commit():
    """Run on_commit callbacks at once (tests run inside a transaction that never commits)."""
    from django.test import TestCase

    return TestCase.captureOnCommitCallbacks(execute=True)


def test_sync_now_returns_at_once_when_the_broker_hangs_and_the_sweeper_sends_it_again(operator_client, account):
    connection = ConnectionFactory(property=PropertyFactory(account=account))
    publisher = jobs._Publisher.instance().messages
    with socket.socket() as blackhole:  # accepts connections, never answers: a hung Redis
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)
        hung = app.connection_for_write(f"redis://127.0.0.1:{blackhole.getsockname()[1]}/0")
        publish = functools.partial(tasks.sync_connection.apply_async, connection=hung)
        with mock.patch.object(tasks.sync_connection, "apply_async", publish):
            started = time.monotonic()
            with operator_client_on_commit():  # the request, and its commit that hands the task over
                response = operator_client.post(reverse("connection-sync-now", args=[connection.pk]), **HTMX)
            elapsed = time.monotonic() - started
            assert publisher.unfinished_tasks == 1  # still waiting for the broker: the page did not
            blackhole.close()  # the broker goes away: the publisher gives up on it
            deadline = time.monotonic() + 15
            while publisher.unfinished_tasks and time.monotonic() < deadline:
                time.sleep(0.05)
    assert not publisher.unfinished_tasks
    assert response.status_code == 200
    assert elapsed < 1.0
    connection.refresh_from_db()
    assert connection.sync_requested_at is not None
    job = Job.objects.get()
    assert (job.args, job.started_at) == ([connection.pk, "manual"], None)  # written first, never lost
    with time_machine.travel(job.resend_at, tick=False), mock.patch.object(tasks.sync_connection, "apply_async") as send:
        jobs.resend_jobs()
    assert send.call_args.args == ([connection.pk, "manual"],)
    assert send.call_args.kwargs["task_id"].startswith(f"job-{job.pk}-")


def test_a_switched_off_sync_offers_no_sync_now_and_a_post_to_it_imports_nothing(
    operator_client, account, no_broker, httpserver, settings
):
    """The row says nothing is imported until it is switched on: the pages do not offer "Sync
    now" for it, and the server holds to the same rule, saying so."""
    settings.FETCH_ALLOW_LOOPBACK = True
    today = timezone.localdate()
    httpserver.expect_request("/f.ics").respond_with_data(feeds.airbnb(("a", today + timedelta(days=2), today + timedelta(days=4))))
    prop = PropertyFactory(account=account)
    off = ConnectionFactory(property=prop, import_url=httpserver.url_for("/f.ics"), enabled=False)
    on = ConnectionFactory(property=prop, portal=portal("vrbo"), import_url=httpserver.url_for("/f.ics"))
    sync_now = {c: reverse("connection-sync-now", args=[c.pk]) for c in (off, on)}
    for page in (reverse("property-detail", args=[prop.pk]), reverse("connection-detail", args=[off.pk])):
        html = operator_client.get(page).content.decode()
        assert f'action="{sync_now[off]}"' not in html, page
        assert "Switch on the Airbnb sync" in html and "nothing is imported or checked until you switch it on" in html
    assert f'action="{sync_now[on]}"' in operator_client.get(reverse("property-detail", args=[prop.pk])).content.decode()

    with operator_client_on_commit():
        fragment = operator_client.post(sync_now[off], **HTMX).content.decode()
        plain = operator_client.post(sync_now[off], follow=True).content.decode()
    for words in (fragment, plain):
        assert "The Airbnb sync is switched off, so it was not synced: nothing is imported until you switch it on." in words
        assert "Syncing" not in words
    off.refresh_from_db()
    assert off.sync_requested_at is None
    assert no_broker.syncs() == []
    assert not Activity.objects.filter(action=Activity.Action.SYNC_REQUESTED).exists()
    assert not SyncRun.objects.filter(connection=off).exists() and not Block.objects.filter(source=off).exists()
    assert httpserver.log == []


def test_a_sync_now_asked_before_the_sync_was_switched_off_is_dropped_by_the_worker(
    operator_client, account, no_broker, httpserver, settings
):
    settings.FETCH_ALLOW_LOOPBACK = True
    httpserver.expect_request("/f.ics").respond_with_data(feeds.airbnb())
    connection = ConnectionFactory(property=PropertyFactory(account=account), import_url=httpserver.url_for("/f.ics"))
    with operator_client_on_commit():
        operator_client.post(reverse("connection-sync-now", args=[connection.pk]), **HTMX)
        operator_client.post(reverse("connection-switch", args=[connection.pk]), {"enabled": "0"}, **HTMX)
    assert tasks.sync_connection(connection.pk, "manual") is None  # the worker takes the request
    connection.refresh_from_db()
    assert connection.sync_requested_at is None  # served: nothing more to hand out
    assert not SyncRun.objects.filter(connection=connection).exists()
    assert httpserver.log == []


def test_sync_now_for_many_syncs_leaves_the_switched_off_ones_alone_and_says_so(operator_client, account, no_broker):
    prop = PropertyFactory(account=account)
    off = ConnectionFactory(property=prop, enabled=False)
    on = ConnectionFactory(property=prop, portal=portal("vrbo"))
    with operator_client_on_commit():
        page = operator_client.post(
            reverse("bulk-action"), {"action": "sync_now", "connection": [off.pk, on.pk]}, follow=True
        ).content.decode()
    assert "1 sync queued to run now. 1 selected sync was not synced: it is switched off, or it only exports." in page
    assert no_broker.syncs() == [on.pk]
    off.refresh_from_db()
    assert off.sync_requested_at is None


def test_the_command_line_still_syncs_a_switched_off_sync_when_named(httpserver, settings):
    """An administrator's explicit `sync_connections --connection ID` reads it all the same."""
    import io

    from django.core.management import call_command

    settings.FETCH_ALLOW_LOOPBACK = True
    httpserver.expect_request("/f.ics").respond_with_data(feeds.airbnb())
    connection = ConnectionFactory(import_url=httpserver.url_for("/f.ics"), enabled=False)
    out = io.StringIO()
    call_command("sync_connections", "--connection", str(connection.pk), stdout=out)
    assert SyncRun.objects.filter(connection=connection).count() == 1, out.getvalue()


def test_the_property_page_shows_a_month_of_taken_nights_with_double_bookings_marked(operator_client, account):
    prop = PropertyFactory(account=account)
    airbnb = ConnectionFactory(property=prop, portal=portal("airbnb"))
    vrbo = ConnectionFactory(property=prop, portal=portal("vrbo"))
    month = (timezone.localdate().replace(day=1) + timedelta(days=40)).replace(day=1)
    BlockFactory(property=prop, source=airbnb, kind="reserved", start_date=month.replace(day=3), end_date=month.replace(day=6))
    BlockFactory(property=prop, source=vrbo, kind="reserved", start_date=month.replace(day=5), end_date=month.replace(day=8))
    page = operator_client.get(reverse("property-detail", args=[prop.pk]), {"month": month.strftime("%Y-%m")}).content.decode()
    assert month.strftime("%B %Y") in page
    calendar = page[page.index('<table class="month"'):page.index("</table>", page.index('<table class="month"'))]
    # Each night drawn by its portal's class (the colours of syncs/portals.py LOOKS).
    assert calendar.count('class="night portal-airbnb') == 3  # the 3rd to the 5th
    assert calendar.count('class="night portal-vrbo') == 3  # the 5th to the 7th
    # The 5th, booked on both: the cell and both of its sources marked.
    assert calendar.count('class="day taken conflict"') == 1
    assert calendar.count('class="night portal-airbnb conflict"') == 1
    assert calendar.count('class="night portal-vrbo conflict"') == 1
    assert "Airbnb" in page and "Vrbo" in page


def test_the_operator_closes_and_opens_nights_and_every_export_shows_it(operator_client, account, client):
    from syncs.export_tokens import export_token_ensure, token_from_nonce

    prop = PropertyFactory(account=account)
    connection = ConnectionFactory(property=prop)
    start = timezone.localdate() + timedelta(days=20)
    response = operator_client.post(
        reverse("property-block-add", args=[prop.pk]),
        {"start": start.isoformat(), "end": (start + timedelta(days=2)).isoformat(), "kind": "reserved", "summary": "Direct: Ana"},
        follow=True,
    )
    assert "Nights closed" in response.content.decode()
    feed = reverse("export-feed", kwargs={"token": token_from_nonce(export_token_ensure(property=prop, connection=connection).nonce)})
    assert f"DTSTART;VALUE=DATE:{start:%Y%m%d}" in client.get(feed).content.decode()
    block = Block.objects.get(property=prop, source=None)
    operator_client.post(reverse("block-remove", args=[block.pk]), {"confirmed": "1"})
    assert "BEGIN:VEVENT" not in client.get(feed).content.decode()
    assert list(Activity.objects.filter(property=prop).values_list("action", flat=True)) == ["block_removed", "block_added"]


def test_a_block_with_a_check_out_before_its_first_night_is_refused_in_words(operator_client, account):
    prop = PropertyFactory(account=account)
    start = timezone.localdate() + timedelta(days=5)
    response = operator_client.post(
        reverse("property-block-add", args=[prop.pk]), {"start": start.isoformat(), "end": start.isoformat()}, follow=True
    )
    assert "The check-out day must be after the first night." in response.content.decode()
    assert not Block.objects.exists()


def test_blocks_from_a_portal_cannot_be_removed_here(operator_client, account):
    prop = PropertyFactory(account=account)
    block = BlockFactory(property=prop, source=ConnectionFactory(property=prop))
    assert operator_client.post(reverse("block-remove", args=[block.pk])).status_code == 404
    block.refresh_from_db()
    assert block.removed_at is None


def test_the_connection_page_masks_the_import_url_until_asked(operator_client, account):
    connection = ConnectionFactory(property=PropertyFactory(account=account), import_url="https://www.airbnb.com/calendar/ical/123.ics?s=topsecret")
    page = operator_client.get(reverse("connection-detail", args=[connection.pk])).content.decode()
    assert 'data-full="https://www.airbnb.com/calendar/ical/123.ics?s=topsecret"' in page
    visible = page.replace('data-full="https://www.airbnb.com/calendar/ical/123.ics?s=topsecret"', "")
    assert "topsecret" not in visible


def test_the_operator_accepts_held_removals_from_the_connection_page(operator_client, account, httpserver, settings, no_broker):
    from syncs.engine.task import connection_sync_leased

    settings.FETCH_ALLOW_LOOPBACK = True
    today = timezone.localdate()
    stays = [(f"s{i}", today + timedelta(days=5 * i + 2), today + timedelta(days=5 * i + 4)) for i in range(4)]
    connection = ConnectionFactory(property=PropertyFactory(account=account), import_url=httpserver.url_for("/f.ics"))
    httpserver.expect_request("/f.ics").respond_with_data(feeds.airbnb(*stays))
    connection_sync_leased(connection_id=connection.pk)
    httpserver.clear_all_handlers()
    httpserver.expect_request("/f.ics").respond_with_data(feeds.airbnb())
    connection_sync_leased(connection_id=connection.pk)
    page = operator_client.get(reverse("connection-detail", args=[connection.pk])).content.decode()
    assert "suddenly lost 4 future bookings or blocks" in page
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = operator_client.post(reverse("connection-accept-held", args=[connection.pk]), follow=True)
    page = response.content.decode()
    # The page never waits on the portal: a worker syncs, and the page says so meanwhile.
    assert "Accepted: 4 removals are being applied." in page
    assert "Applying the 4 removals you accepted" in page
    assert Block.objects.current().filter(source=connection).count() == 4
    connection_sync_leased(connection_id=connection.pk, trigger=SyncRun.Trigger.MANUAL)  # the worker
    page = operator_client.get(reverse("connection-detail", args=[connection.pk])).content.decode()
    assert "suddenly lost" not in page and "Applying the" not in page
    assert not Block.objects.current().filter(source=connection).exists()


def test_the_property_list_searches_and_paginates(operator_client, account):
    for index in range(30):
        PropertyFactory(account=account, name=f"Flat {index:02d}")
    PropertyFactory(account=account, name="Villa Sol")
    first = operator_client.get(reverse("property-list")).content.decode()
    assert "Page 1 of 2" in first
    assert "Flat 00" in first and "Villa Sol" not in first
    found = operator_client.get(reverse("property-list"), {"q": "sol"}).content.decode()
    assert "Villa Sol" in found and "Flat 00" not in found


def test_the_activity_page_says_who_did_what(operator_client, account, operator, no_broker):
    connection = ConnectionFactory(property=PropertyFactory(account=account, name="Casa Azul"))
    operator_client.post(reverse("connection-sync-now", args=[connection.pk]))
    operator_client.post(reverse("connection-switch", args=[connection.pk]), {"enabled": "0"})
    page = operator_client.get(reverse("activity")).content.decode()
    assert f"{operator.username}" in page
    assert "switched the sync off" in page
    assert "pressed Sync now" in page
    assert "Casa Azul" in page


def test_a_portal_that_never_read_our_calendar_needs_attention(operator_client, account):
    import time_machine

    with time_machine.travel(timezone.now() - timedelta(hours=10), tick=False):
        connection = ConnectionFactory(property=PropertyFactory(account=account), portal=portal("airbnb"))
    Connection.objects.filter(pk=connection.pk).update(last_success_at=timezone.now())
    page = operator_client.get(reverse("home")).content.decode()
    assert f'id="attention-{connection.pk}"' in page
    assert "the URL was probably not pasted into Airbnb" in page
    from syncs.dashboard import dashboard_summary

    assert dashboard_summary(user=account.memberships.get().user).counts["not_reading"] == 1


def test_issuing_a_new_export_url_swaps_only_the_export_panel(operator_client, account):
    connection = ConnectionFactory(property=PropertyFactory(account=account))
    page = operator_client.get(reverse("connection-detail", args=[connection.pk])).content.decode()
    old_url = page.split('id="export-url" type="text" readonly value="')[1].split('"')[0]
    fragment = operator_client.post(reverse("connection-export-rotate", args=[connection.pk]), **HTMX).content.decode()
    assert fragment.lstrip().startswith('<section id="export">')
    assert "<html" not in fragment
    new_url = fragment.split('id="export-url" type="text" readonly value="')[1].split('"')[0]
    assert new_url != old_url
    assert "New export URL issued" in fragment  # the toast, out of band


def test_accepting_held_removals_swaps_only_the_held_panel(operator_client, account, httpserver, settings, no_broker):
    from syncs.engine.task import connection_sync_leased

    settings.FETCH_ALLOW_LOOPBACK = True
    today = timezone.localdate()
    connection = ConnectionFactory(property=PropertyFactory(account=account), import_url=httpserver.url_for("/f.ics"))
    httpserver.expect_request("/f.ics").respond_with_data(
        feeds.airbnb(*[(f"s{i}", today + timedelta(days=5 * i + 2), today + timedelta(days=5 * i + 4)) for i in range(4)])
    )
    connection_sync_leased(connection_id=connection.pk)
    httpserver.clear_all_handlers()
    httpserver.expect_request("/f.ics").respond_with_data(feeds.airbnb())
    connection_sync_leased(connection_id=connection.pk)
    fragment = operator_client.post(reverse("connection-accept-held", args=[connection.pk]), **HTMX).content.decode()
    assert fragment.lstrip().startswith('<div id="held-panel">')
    assert "suddenly lost" not in fragment
    assert "Applying the 4 removals you accepted" in fragment
    assert "Accepted: 4 removals are being applied." in fragment  # the toast, out of band


def test_the_account_chooses_whether_paused_syncs_resume_by_themselves(operator_client, account):
    page = operator_client.get(reverse("account-settings")).content.decode()
    assert "resume paused syncs by themselves" in page.lower()
    assert 'name="auto_resume" checked' not in page  # off by default
    response = operator_client.post(reverse("account-settings-save"), {"auto_resume": "on"}, follow=True)
    assert "Settings saved." in response.content.decode()
    account.refresh_from_db()
    assert account.auto_resume
    operator_client.post(reverse("account-settings-save"), {})
    account.refresh_from_db()
    assert not account.auto_resume
