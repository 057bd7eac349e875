"""The import engine end to end: real HTTP servers on 127.0.0.1 pose as the portals and change
their feeds over a sequence of syncs; the blocks in the database are what the operator relies on."""

from __future__ import annotations

import gzip
from datetime import date, timedelta
from unittest import mock

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from syncs.engine import fetch, record
from syncs.engine.parse import ical
from syncs.engine.parse.ical import parse_feed
from syncs.engine.record import connection_accept_held_answer
from syncs.engine.task import connection_sync_leased
from syncs.models import Block, BlockChange, Connection, PauseEpisode, Portal, SyncRun
from syncs.sync_state import SyncState, state_record
from tests import feeds
from tests.conftest import NOW
from tests.factories import ConnectionFactory, PropertyFactory, portal
from tests.helpers import FEED_PATH, answer, d
from tests.states import sync_state_of

pytestmark = pytest.mark.django_db




@pytest.fixture
def airbnb_server(httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    return httpserver


@pytest.fixture
def connection(airbnb_server):
    prop = PropertyFactory(timezone="Europe/Lisbon")
    return ConnectionFactory(property=prop, portal=portal("airbnb"), import_url=airbnb_server.url_for(FEED_PATH))


def sync(connection: Connection, trigger: str = SyncRun.Trigger.SCHEDULED) -> SyncRun:
    run = connection_sync_leased(connection_id=connection.pk, trigger=trigger)
    connection.refresh_from_db()
    return run


def current_nights(connection: Connection) -> list[tuple[date, date, str]]:
    return list(
        Block.objects.filter(source=connection, removed_at__isnull=True)
        .order_by("start_date")
        .values_list("start_date", "end_date", "kind")
    )


FOUR_STAYS = (("a", d(3), d(6)), ("b", d(10), d(12)), ("c", d(20), d(27)), ("e", d(40), d(44)))


def test_a_new_airbnb_feed_becomes_blocked_nights(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(("a", d(3), d(6)), blocked=(("n1", d(30), d(60)),)))
    run = sync(connection)
    assert run.outcome == "ok_changed"
    assert (run.events_seen, run.events_added) == (2, 2)
    assert current_nights(connection) == [(d(3), d(6), "reserved"), (d(30), d(60), "blocked")]
    assert sync_state_of(connection) == SyncState.WORKING
    assert connection.last_success_at is not None
    # Guest details never reach our database.
    assert not Block.objects.filter(summary__contains="0882").exists()
    assert not Block.objects.filter(summary__contains="airbnb.com/hosting").exists()


def test_a_new_booking_is_added_and_nothing_else_is_touched(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(("a", d(3), d(6))))
    sync(connection)
    answer(airbnb_server, feeds.airbnb(("a", d(3), d(6)), ("b", d(10), d(12))))
    run = sync(connection)
    assert (run.events_added, run.events_updated, run.events_removed) == (1, 0, 0)
    assert current_nights(connection) == [(d(3), d(6), "reserved"), (d(10), d(12), "reserved")]


def test_a_changed_stay_is_updated_in_place_and_its_history_kept(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(("a", d(3), d(6))))
    sync(connection)
    block_id = Block.objects.get(source=connection).pk
    answer(airbnb_server, feeds.airbnb(("a", d(4), d(8))))
    run = sync(connection)
    assert (run.events_added, run.events_updated, run.events_removed) == (0, 1, 0)
    block = Block.objects.get(source=connection)
    assert block.pk == block_id
    assert (block.start_date, block.end_date) == (d(4), d(8))
    change = BlockChange.objects.get(run=run)
    assert (change.action, change.old_start_date, change.old_end_date, change.new_start_date) == ("updated", d(3), d(6), d(4))


def test_a_cancellation_soft_deletes_the_block_with_the_run_that_removed_it(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    sync(connection)
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS[:3]))
    run = sync(connection)
    assert (run.outcome, run.events_removed, run.removals_held) == ("ok_changed", 1, False)
    removed = Block.objects.get(uid="e@airbnb.com")
    assert removed.removed_at is not None
    assert removed.removed_by_run == run


def test_a_stay_that_ended_and_left_the_feed_is_not_a_cancellation(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(("past", d(1), d(5)), ("a", d(9), d(12))))
    sync(connection)
    clock.shift(timedelta(days=7))  # the stay ended; the portal drops it from its feed
    answer(airbnb_server, feeds.airbnb(("a", d(9), d(12))))
    run = sync(connection)
    assert run.events_removed == 0
    assert Block.objects.get(uid="past@airbnb.com").removed_at is None


def test_an_unchanged_feed_writes_nothing_to_blocks(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    sync(connection)
    with CaptureQueriesContext(db_connection) as queries:
        run = sync(connection)
    assert run.outcome == "ok_unchanged"
    writes = [q["sql"] for q in queries if q["sql"].startswith(("INSERT", "UPDATE", "DELETE")) and "syncs_block" in q["sql"]]
    assert writes == []


def test_an_unchanged_poll_reads_its_connection_once_with_the_lease_and_gives_the_lease_back(
    clock, airbnb_server, connection
):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS), headers={"ETag": '"v1"'})
    sync(connection)
    airbnb_server.clear_all_handlers()
    airbnb_server.expect_request(FEED_PATH, headers={"If-None-Match": '"v1"'}).respond_with_data(b"", status=304)
    before = connection.last_success_at
    clock.shift(timedelta(minutes=15))

    with CaptureQueriesContext(db_connection) as queries:
        run = sync(connection)

    statements = [q["sql"] for q in queries][:-1]  # the last one is the test's refresh_from_db
    # The lease, then one read of the connection with its property and portal, then the record.
    reads = [sql for sql in statements if sql.startswith("SELECT")]
    assert len(reads) == 1 and '"syncs_property"' in reads[0] and '"syncs_portal"' in reads[0]
    assert not [sql for sql in statements if '"syncs_block"' in sql]
    assert (run.outcome, run.http_status) == ("ok_unchanged", 304)
    assert SyncRun.objects.get(pk=run.pk).outcome == "ok_unchanged"
    assert (connection.lease_holder, connection.lease_until) == ("", None)
    assert connection.last_success_at > before
    assert connection.next_sync_at > connection.last_success_at


def test_a_changed_poll_reads_how_to_read_its_feed_with_its_lease(clock, airbnb_server, connection):
    Portal.objects.filter(pk=connection.portal_id).update(labels={"tentative": ["Pending request"]})
    answer(airbnb_server, feeds.vrbo(("a", d(3), d(6), "Reserved - Ana"), ("b", d(10), d(12), "Pending request")))
    sync(connection)
    answer(airbnb_server, feeds.vrbo(("b", d(10), d(12), "Pending request"), ("c", d(20), d(22), "Pending request")))

    with CaptureQueriesContext(db_connection) as queries:
        run = sync(connection)

    assert (run.outcome, run.events_added, run.events_removed) == ("ok_changed", 1, 1)
    # The portal's labels were read, and used: "Pending request" is this portal's word for a
    # tentative stay (unknown words block).
    assert Block.objects.get(uid="c", removed_at__isnull=True).kind == "tentative"
    statements = [q["sql"] for q in queries]
    # (Reads of the portal's labels: the search for double bookings reads the stays' portals too.)
    settings_reads = [sql for sql in statements if sql.startswith("SELECT") and '"syncs_portal"."labels"' in sql]
    assert len(settings_reads) == 1 and '"syncs_property"' in settings_reads[0]
    assert '"lease_holder"' in settings_reads[0].split(" WHERE ")[1]


def _reads_of_the_connection(run_sync) -> list[str]:
    """The SELECTs of connection rows that one sync sends."""
    with CaptureQueriesContext(db_connection) as queries:
        run_sync()
    return [q["sql"] for q in queries if q["sql"].startswith("SELECT") and 'FROM "syncs_connection"' in q["sql"]]


def test_a_changed_feed_of_a_working_sync_is_recorded_without_reading_its_connection_again(
    clock, airbnb_server, connection
):
    # Its fields after the record depend only on what was read with the lease: one conditional
    # update holds the lease, the settings, the running state and the accepted held answer the
    # sync read, and the sync stays working.
    answer(airbnb_server, feeds.airbnb(("a", d(3), d(6)), ("b", d(10), d(12))))
    sync(connection)
    answer(airbnb_server, feeds.airbnb(("a", d(3), d(6)), ("b", d(20), d(24))))

    with CaptureQueriesContext(db_connection) as queries:
        connection_sync_leased(connection_id=connection.pk)

    statements = [q["sql"] for q in queries]
    assert len([sql for sql in statements if sql.startswith("SELECT") and 'FROM "syncs_connection"' in sql]) == 1
    (update,) = [sql for sql in statements if sql.startswith('UPDATE "syncs_connection"') and '"body_fingerprint"' in sql]
    where = update.split(" WHERE ")[1]
    assert all(f'"{name}"' in where for name in ("lease_holder", "settings_version", "paused_at", "state", "held_accepted_answer"))
    assert SyncRun.objects.latest("pk").outcome == "ok_changed"
    assert current_nights(connection) == [(d(3), d(6), "reserved"), (d(20), d(24), "reserved")]
    assert sync_state_of(connection) == SyncState.WORKING


@pytest.mark.parametrize(
    "second_answer",
    [
        pytest.param({"body": b"", "status": 500}, id="failed"),
        pytest.param({"body": b"", "status": 404}, id="paused"),
    ],
)
def test_a_sync_that_records_more_than_a_working_poll_reads_its_connection_again_under_its_lock(
    clock, airbnb_server, connection, second_answer
):
    # Lease, then lock: the record re-reads the connection under the row's lock (the operator
    # may have paused it or accepted held removals meanwhile), if the lease and the settings
    # the sync read are still the row's.
    answer(airbnb_server, feeds.airbnb(("a", d(3), d(6)), ("b", d(10), d(12))))
    sync(connection)
    answer(airbnb_server, **second_answer)

    reads = _reads_of_the_connection(lambda: connection_sync_leased(connection_id=connection.pk))

    # The third read is the state's decision after the record (syncs.sync_state.state_record),
    # by id, under the same lock.
    assert len(reads) == 3
    where = reads[1].split(" WHERE ")[1]
    assert '"lease_holder"' in where and '"settings_version"' in where
    if db_connection.features.has_select_for_update:
        assert "FOR UPDATE" in reads[1]
    run = SyncRun.objects.latest("pk")
    assert run.outcome == {500: "http_5xx", 404: "http_4xx"}[second_answer["status"]]
    if second_answer.get("status") == 404:
        assert PauseEpisode.objects.get(connection=connection).reason == "http_4xx"


def test_a_connection_deleted_while_its_feed_is_fetched_ends_the_sync_quietly(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    real_fetch = fetch.fetch_feed

    def fetch_then_delete(*args, **kwargs):
        fetched = real_fetch(*args, **kwargs)
        Connection.objects.filter(pk=connection.pk).delete()
        return fetched

    with mock.patch.object(fetch, "fetch_feed", fetch_then_delete):
        assert connection_sync_leased(connection_id=connection.pk) is None
    assert not Block.objects.exists() and not SyncRun.objects.exists()


def test_an_unchanged_poll_after_failures_is_stored_as_the_run_and_state_it_returned(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS), headers={"ETag": '"v1"', "Last-Modified": "Sun, 10 Jan 2027 11:00:00 GMT"})
    sync(connection)
    Connection.objects.filter(pk=connection.pk).update(
        consecutive_failures=2, last_error_code="timeout", last_error_params={"seconds": 30}, probe_failures=1
    )
    state_record([connection.pk])  # written raw: decided as the product's writes are
    airbnb_server.clear_all_handlers()
    airbnb_server.expect_request(FEED_PATH, headers={"If-None-Match": '"v1"'}).respond_with_data(
        b"", status=304, headers={"ETag": '"v2"'}
    )
    clock.shift(timedelta(minutes=15))

    run = sync(connection)

    stored = SyncRun.objects.get(pk=run.pk)
    fields = [field.attname for field in SyncRun._meta.concrete_fields]
    assert [getattr(stored, name) for name in fields] == [getattr(run, name) for name in fields]
    assert (stored.outcome, stored.http_status, stored.trigger) == ("ok_unchanged", 304, "scheduled")
    assert (stored.events_seen, stored.error_code, stored.error_params, stored.removals_held) == (0, "", {}, False)
    assert NOW + timedelta(minutes=15) <= stored.started_at <= stored.finished_at <= timezone.now()
    assert (connection.consecutive_failures, connection.last_error_code, connection.last_error_params) == (0, "", {})
    assert (connection.probe_failures, connection.paused_at, connection.pause_params) == (0, None, {})
    assert (connection.etag, connection.last_modified) == ('"v2"', "Sun, 10 Jan 2027 11:00:00 GMT")
    assert connection.last_success_at == connection.last_attempt_at == stored.finished_at
    assert (connection.lease_holder, connection.lease_until) == ("", None)


def test_an_unchanged_poll_whose_lease_was_taken_over_meanwhile_writes_nothing(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    sync(connection)
    runs_before = SyncRun.objects.count()
    success_before = connection.last_success_at

    real_fetch = fetch.fetch_feed

    def taken_over_during_the_fetch(*args, **kwargs):
        # Our lease expired while the portal answered, and another worker took the connection.
        Connection.objects.filter(pk=connection.pk).update(lease_holder="the-other-worker")
        return real_fetch(*args, **kwargs)

    clock.shift(timedelta(minutes=15))

    with mock.patch.object(fetch, "fetch_feed", taken_over_during_the_fetch):
        assert sync(connection) is None
    assert SyncRun.objects.count() == runs_before
    assert connection.last_success_at == success_before
    assert connection.lease_holder == "the-other-worker"  # not ours to give back


def test_a_feed_whose_only_change_is_its_timestamp_is_not_parsed_again(clock, airbnb_server, connection, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    connection.portal = portal("booking")
    connection.save()
    answer(airbnb_server, feeds.booking(("x", d(1), d(9)), stamp="20270110T120000Z"))
    sync(connection)
    answer(airbnb_server, feeds.booking(("x", d(1), d(9)), stamp="20270110T123000Z"))
    with mock.patch("syncs.engine.task.parse_feed") as parse:
        run = sync(connection)
    parse.assert_not_called()
    assert run.outcome == "ok_unchanged"


def test_an_etag_is_sent_back_verbatim_and_a_304_is_an_unchanged_run(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(("a", d(3), d(6))), headers={"ETag": '"v1-abc"', "Last-Modified": "Sun, 10 Jan 2027 11:00:00 GMT"})
    sync(connection)
    assert connection.etag == '"v1-abc"'
    airbnb_server.clear_all_handlers()
    airbnb_server.expect_request(FEED_PATH, headers={"If-None-Match": '"v1-abc"'}).respond_with_data(b"", status=304)
    run = sync(connection)
    assert (run.outcome, run.http_status) == ("ok_unchanged", 304)
    assert current_nights(connection) == [(d(3), d(6), "reserved")]


def test_a_feed_that_suddenly_goes_empty_is_held_then_applied_when_the_same_answer_comes_30_minutes_later(
    clock, airbnb_server, connection
):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    sync(connection)
    answer(airbnb_server, feeds.airbnb())
    held = sync(connection)
    assert (held.outcome, held.removals_held, held.events_held, held.events_removed) == ("ok_empty", True, 4, 0)
    assert len(current_nights(connection)) == 4
    assert connection.held_removals == 4

    clock.shift(timedelta(minutes=10))
    assert sync(connection).removals_held  # the same answer, too soon: still held
    assert len(current_nights(connection)) == 4

    clock.shift(timedelta(minutes=25))
    applied = sync(connection)
    assert (applied.removals_held, applied.events_removed) == (False, 4)
    assert current_nights(connection) == []
    assert connection.held_removals == 0


def test_a_feed_that_loses_half_its_future_blocks_holds_only_the_removals(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    sync(connection)
    answer(airbnb_server, feeds.airbnb(FOUR_STAYS[0], ("new", d(90), d(95))))
    run = sync(connection)
    assert (run.removals_held, run.events_held, run.events_added) == (True, 3, 1)
    assert len(current_nights(connection)) == 5


def test_a_held_feed_that_comes_back_whole_clears_the_hold(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    sync(connection)
    answer(airbnb_server, feeds.airbnb())
    sync(connection)
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    run = sync(connection)
    assert (run.removals_held, run.events_removed) == (False, 0)
    assert connection.held_answer == ""
    assert len(current_nights(connection)) == 4


def test_the_operator_can_accept_held_removals_at_once(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    sync(connection)
    answer(airbnb_server, feeds.airbnb())
    sync(connection)
    assert connection_accept_held_answer(connection=connection)
    run = connection_sync_leased(connection_id=connection.pk, trigger="manual")  # the sync the operator asked for
    connection.refresh_from_db()
    assert (run.trigger, run.events_removed, run.removals_held) == ("manual", 4, False)
    assert current_nights(connection) == []
    assert connection.held_accepted_answer == ""


def test_held_removals_accepted_while_a_poll_reads_the_feed_are_applied_by_the_sync_that_follows(
    clock, airbnb_server, connection
):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    sync(connection)
    answer(airbnb_server, feeds.airbnb())
    sync(connection)
    real_fetch = fetch.fetch_feed

    def accepted_during_the_fetch(*args, **kwargs):
        assert connection_accept_held_answer(connection=Connection.objects.get(pk=connection.pk))
        return real_fetch(*args, **kwargs)

    runs_before = SyncRun.objects.count()
    with mock.patch.object(fetch, "fetch_feed", accepted_during_the_fetch):
        assert sync(connection) is None  # judged its removals by what it read before: dropped
    assert SyncRun.objects.count() == runs_before
    assert connection.held_accepted_answer == connection.held_answer != ""  # the acceptance stands
    assert connection.lease_holder == ""
    run = sync(connection, trigger="manual")  # the sync the acceptance asked for
    assert (run.events_removed, run.removals_held) == (4, False)
    assert current_nights(connection) == []


@pytest.mark.parametrize(
    ("body", "status", "content_type", "code"),
    [
        (feeds.LOGIN_PAGE, 200, "text/html", "not_ical"),
        (b'{"error": "not found"}', 200, "application/json", "not_ical"),
        (b"Not Found", 404, "text/plain", "http_4xx"),
        (b"Gone", 410, "text/plain", "http_4xx"),
        (b"Forbidden", 403, "text/plain", "http_4xx"),
    ],
)
def test_a_permanent_failure_pauses_at_once_and_keeps_every_block(
    clock, airbnb_server, connection, body, status, content_type, code
):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    sync(connection)
    answer(airbnb_server, body, status=status, content_type=content_type)
    run = sync(connection)
    assert run.outcome == code
    assert sync_state_of(connection) == SyncState.PAUSED
    assert connection.pause_reason == code
    assert len(current_nights(connection)) == 4
    episode = PauseEpisode.objects.get(connection=connection)
    assert (episode.reason, episode.ended_at) == (code, None)
    if status >= 400:
        assert connection.pause_params["status"] == status


def test_transient_failures_back_off_then_pause_after_three_in_a_row(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    sync(connection)
    answer(airbnb_server, b"oops", status=500, content_type="text/plain")
    delays = []
    for _ in range(2):
        run = sync(connection)
        assert run.outcome == "http_5xx"
        # Failing before the pause is a state of its own, not "working".
        assert sync_state_of(connection) == SyncState.FAILING
        delays.append(round((connection.next_sync_at - run.finished_at).total_seconds() / 60))
    assert delays == [5, 10]
    sync(connection)
    assert sync_state_of(connection) == SyncState.PAUSED
    assert connection.consecutive_failures == 3
    assert PauseEpisode.objects.filter(connection=connection).count() == 1
    assert len(current_nights(connection)) == 4


def test_a_paused_connection_is_not_synced_by_the_schedule(clock, airbnb_server, connection):
    answer(airbnb_server, b"nope", status=404, content_type="text/plain")
    sync(connection)
    answer(airbnb_server, feeds.airbnb(("a", d(3), d(6))))
    assert connection_sync_leased(connection_id=connection.pk) is None
    assert not Connection.objects.due().filter(pk=connection.pk).exists()


def test_a_manual_sync_that_works_ends_the_pause_episode(clock, airbnb_server, connection):
    answer(airbnb_server, b"nope", status=404, content_type="text/plain")
    sync(connection)
    answer(airbnb_server, feeds.airbnb(("a", d(3), d(6))))
    run = sync(connection, trigger=SyncRun.Trigger.MANUAL)
    assert run.outcome == "ok_changed"
    assert sync_state_of(connection) == SyncState.WORKING
    episode = PauseEpisode.objects.get(connection=connection)
    assert episode.ended_at is not None
    assert episode.ended_by == "sync"


def test_rate_limiting_is_honoured_with_retry_after(clock, airbnb_server, connection):
    answer(airbnb_server, b"slow down", status=429, headers={"Retry-After": "3600"}, content_type="text/plain")
    run = sync(connection)
    assert run.outcome == "rate_limited"
    assert connection.next_sync_at - run.finished_at >= timedelta(seconds=3600)


def test_a_gzip_bomb_is_a_failure_that_keeps_the_blocks(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    sync(connection)
    bomb = gzip.compress(b"BEGIN:VCALENDAR\r\n" + b"X" * (40 * 1024 * 1024))
    answer(airbnb_server, bomb, headers={"Content-Encoding": "gzip"})
    run = sync(connection)
    assert run.outcome == "too_large"
    assert len(current_nights(connection)) == 4


def test_a_redirect_to_a_private_address_is_refused_and_pauses(clock, airbnb_server, connection):
    airbnb_server.clear_all_handlers()
    airbnb_server.expect_request(FEED_PATH).respond_with_data(
        b"", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    run = sync(connection)
    assert run.outcome == "blocked_address"
    assert sync_state_of(connection) == SyncState.PAUSED


def test_our_own_blocks_coming_back_through_a_portal_are_dropped(clock, airbnb_server, connection, settings):
    settings.EXPORT_UID_DOMAIN = "cm.example.com"
    body = feeds.vrbo(("ours-1@cm.example.com", d(3), d(5), "Blocked"), ("theirs", d(8), d(9), "Reserved - Ana"))
    answer(airbnb_server, body)
    connection.portal = portal("vrbo")
    connection.save()
    sync(connection)
    assert current_nights(connection) == [(d(8), d(9), "reserved")]


def test_a_rolling_block_whose_uid_changes_every_day_is_updated_not_duplicated(clock, airbnb_server, connection):
    for day in range(7):
        answer(airbnb_server, feeds.airbnb(("stay", d(3), d(6)), blocked=((f"roll-{day}", d(365 + day), d(730)),)))
        sync(connection)
        clock.shift(timedelta(days=1))
    assert Block.objects.filter(source=connection).count() == 2
    assert BlockChange.objects.filter(action="added").count() == 2


def test_a_failing_http_url_records_whether_https_works(clock, airbnb_server, connection):
    answer(airbnb_server, b"nope", status=500, content_type="text/plain")
    run = sync(connection)
    assert run.outcome == "http_5xx"
    # The loopback portal speaks only plain HTTP: the https:// variant fails its TLS handshake.
    assert connection.https_works is False


def test_a_crash_while_applying_is_a_failed_run_and_leaves_no_partial_write(clock, airbnb_server, connection):
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    with mock.patch.object(record, "property_calendar_changed", side_effect=RuntimeError("worker died")):
        run = sync(connection)
    assert (run.outcome, run.error_code) == ("sync_failed", "sync_failed")
    assert not Block.objects.exists()
    assert list(SyncRun.objects.values_list("outcome", flat=True)) == ["sync_failed"]
    assert connection.last_success_at is None and connection.consecutive_failures == 1
    assert connection.lease_holder == ""
    # The next run repairs.
    assert sync(connection).events_added == 4


def _fresh_import(body: bytes, like: Connection, server) -> list[tuple]:
    """The blocks a new connection of the same property and portal makes of this body."""
    answer(server, body)
    other = ConnectionFactory(property=like.property, portal=like.portal, import_url=like.import_url)
    sync(other)
    return _kept(other)


def _kept(connection: Connection) -> list[tuple]:
    return sorted(
        Block.objects.filter(source=connection, removed_at__isnull=True)
        .values_list("uid", "start_date", "end_date", "kind", "summary", "text_digest")
    )


@pytest.fixture
def readings():
    """How many events each parse took from the blocks instead of parsing them."""
    reused: list[int] = []

    def counting(*args, **kwargs):
        feed = parse_feed(*args, **kwargs)
        reused.append(feed.events_reused)
        return feed

    with mock.patch("syncs.engine.task.parse_feed", side_effect=counting):
        yield reused


def test_a_changed_feed_parses_only_the_stays_it_has_not_read_and_ends_as_a_fresh_import_would(
    clock, airbnb_server, connection, readings
):
    versions = [
        feeds.airbnb(*FOUR_STAYS),
        feeds.airbnb(("a", d(3), d(6)), ("b", d(10), d(13)), *FOUR_STAYS[2:]),  # b moved
        feeds.airbnb(("a", d(3), d(6)), ("b", d(10), d(13)), ("e", d(40), d(44)), ("f", d(50), d(52))),  # c went, f came
        feeds.airbnb(("a", d(3), d(6)), ("e", d(40), d(44)), ("f", d(50), d(52)), blocked=(("b", d(10), d(13)),)),
    ]
    for body in versions:
        answer(airbnb_server, body)
        sync(connection)
    # Each version re-read only what it changed: b, then f, then b as a block.
    assert readings == [0, 3, 3, 3]
    assert _kept(connection) == _fresh_import(versions[-1], connection, airbnb_server)
    assert all(digest for *_, digest in _kept(connection))


def test_blocks_without_a_text_digest_get_one_with_the_next_change(clock, airbnb_server, connection, readings):
    """Blocks imported before digests existed: a change writes theirs too, an unchanged feed
    still writes nothing."""
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    sync(connection)
    Block.objects.update(text_digest="")
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS, ("f", d(50), d(52))))
    sync(connection)
    assert Block.objects.filter(source=connection, text_digest="").count() == 0
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS[1:], ("f", d(50), d(52))))
    sync(connection)
    assert readings == [0, 0, 4]


def test_a_feed_read_again_with_the_same_events_writes_nothing_to_blocks(clock, airbnb_server, connection):
    """A new calendar name changes every event's text digest, not what the events say."""
    answer(airbnb_server, feeds.airbnb(*FOUR_STAYS))
    sync(connection)
    renamed = feeds.airbnb(*FOUR_STAYS).replace(b"VERSION:2.0", b"VERSION:2.0\r\nX-WR-CALNAME:Casa Azul")
    answer(airbnb_server, renamed)
    with CaptureQueriesContext(db_connection) as queries:
        run = sync(connection)
    assert run.outcome == "ok_unchanged"
    writes = [q["sql"] for q in queries if q["sql"].startswith(("INSERT", "UPDATE", "DELETE")) and "syncs_block" in q["sql"]]
    assert writes == []


def test_a_summary_longer_than_a_block_keeps_is_not_a_change_at_every_sync(clock, airbnb_server, connection, readings):
    long_summary = "Blocked " + "x" * 300
    answer(airbnb_server, feeds.vrbo(("long", d(3), d(6), long_summary), ("short", d(9), d(12), "Blocked")))
    sync(connection)
    assert Block.objects.get(uid="long").summary == long_summary[:255]
    assert Block._meta.get_field("summary").max_length == ical.SUMMARY_MAX_CHARS
    answer(airbnb_server, feeds.vrbo(("long", d(3), d(6), long_summary), ("short", d(9), d(13), "Blocked")))
    run = sync(connection)
    assert run.events_updated == 1
    assert readings == [0, 1]


def test_a_uid_too_long_for_a_block_is_kept_short_and_the_same_at_every_sync(clock, airbnb_server, connection):
    """A broken feed's 600-character UID must not make every sync fail on the database."""
    answer(airbnb_server, feeds.vrbo(("u" * 600, d(3), d(6), "Blocked")))
    sync(connection)
    answer(airbnb_server, feeds.vrbo(("u" * 600, d(3), d(7), "Blocked")))
    run = sync(connection)
    assert (run.outcome, run.events_added, run.events_updated) == ("ok_changed", 0, 1)
    block = Block.objects.get(source=connection)
    assert len(block.uid) == Block._meta.get_field("uid").max_length == ical.UID_MAX_CHARS
    assert block.uid.startswith("u" * 400)
