"""Each sync's state is stored on its row by the one writer (sync_state.state_record) on every
write to what the rules read, with the moment it could change by time alone; the sweep decides
again the rows whose moment has come, and every change of state is recorded once. Here: the
moments at each boundary to the microsecond, the sweep, each write path (do it, then the stored
state is the rules' state at that moment), and random sequences of all of them with clock moves
(a hypothesis state machine)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from syncs.connection_state import connection_switch
from syncs.engine.task import connection_sync_leased
from syncs.export_reads import export_read_record
from syncs.export_tokens import export_token_ensure, export_token_rotate, new_token_fields
from syncs.models import (
    Connection,
    ExportToken,
    Portal,
    StateChange,
    SyncRun,
    SyncState,
    WebhookDelivery,
)
from syncs.readers import expected_within
from syncs.removal import connection_restore, connections_remove
from syncs.sync_requests import connection_request_sync
from syncs.sync_settings import connection_settings_update, portal_settings_update
from syncs.sync_state import STALE_INTERVALS, state_decided, state_record, state_sweep
from syncs.webhooks import scan_not_reading, webhook_create
from tests import feeds
from tests.factories import ConnectionFactory, PropertyFactory, portal
from tests.helpers import answer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clock():
    """Time stands at NOW until a test moves it: each moment here is exact to the microsecond."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)
MICRO = timedelta(microseconds=1)
FEED = "/calendar/ical/9.ics"


def stored(connection) -> tuple[str, datetime | None]:
    row = Connection.all_objects.values_list("state", "state_changes_at").get(pk=connection.pk)
    return row


def decided(connection, at: datetime) -> SyncState:
    """The state the rules give the connection, as it is in the database, at ``at``."""
    [(_pk, _stored, state)] = state_decided(Connection.all_objects.filter(pk=connection.pk), now=at)
    return state


def assert_recorded(connection, at: datetime | None = None) -> None:
    """The stored state is the rules' state now."""
    assert stored(connection)[0] == decided(connection, at or timezone.now())


# --------------------------------------------------------------------------- the moments


@pytest.mark.parametrize("minutes", [5, 30, 45, 1440, 10080])
def test_a_sync_is_due_to_turn_stale_at_the_first_microsecond_the_rules_call_it_stale(minutes):
    sync = ConnectionFactory(direction="import_only", sync_interval_minutes=minutes, last_success_at=NOW)
    state_record([sync.pk], now=NOW)
    moment = NOW + timedelta(minutes=minutes * STALE_INTERVALS) + MICRO
    assert stored(sync) == (SyncState.WORKING, moment)
    assert decided(sync, moment - MICRO) == SyncState.WORKING
    assert decided(sync, moment) == SyncState.STALE


@pytest.mark.parametrize("slug", ["airbnb", "vrbo", "other"])
def test_a_portal_is_due_to_be_late_at_the_first_microsecond_past_three_pick_ups(slug):
    the_portal = portal(slug)
    expected = expected_within(the_portal.pickup_delay_max_minutes)
    sync = ConnectionFactory(portal=the_portal, direction="export_only")
    token = ExportToken.objects.get(connection=sync)
    for read_at in (None, NOW + timedelta(hours=1)):  # never read, then read
        ExportToken.objects.filter(pk=token.pk).update(created_at=NOW, last_read_at=read_at)
        state_record([sync.pk], now=NOW + timedelta(hours=1))
        moment = (read_at or NOW) + expected + MICRO
        assert stored(sync) == (SyncState.WORKING, moment)
        assert decided(sync, moment - MICRO) == SyncState.WORKING
        assert decided(sync, moment) == SyncState.NOT_READING


def test_an_old_url_still_read_is_due_to_stop_counting_when_its_grace_ends():
    sync = ConnectionFactory(portal=portal("airbnb"), direction="export_only")
    old = ExportToken.objects.get(connection=sync)
    ExportToken.objects.filter(pk=old.pk).update(created_at=NOW - timedelta(days=9))
    ends = NOW + timedelta(hours=3)  # before the new URL is late
    ExportToken.objects.filter(pk=old.pk).update(expires_at=ends, last_read_at=NOW + timedelta(minutes=2))
    ExportToken.objects.create(property=sync.property, connection=sync, created_at=NOW, last_read_at=NOW,
                               **new_token_fields())
    state_record([sync.pk], now=NOW + timedelta(minutes=3))
    assert stored(sync) == (SyncState.NOT_READING, ends)
    assert decided(sync, ends - MICRO) == SyncState.NOT_READING
    assert decided(sync, ends) == SyncState.WORKING


def test_every_combination_of_what_the_rules_read_is_stored_as_they_say_and_due_never_late():
    """Over every combination of the fields the rules read, at the stale boundary to the
    microsecond, and export URLs read or not, old ones still read or not: the stored state is
    the rules' at the moment it was decided, and still theirs a microsecond before its moment."""
    interval = timedelta(minutes=30 * STALE_INTERVALS)
    values = {
        "enabled": (True, False), "direction": ("two_way", "import_only", "export_only"),
        "paused_at": (None, NOW - timedelta(hours=2)), "checking_since": (None, NOW - timedelta(minutes=5)),
        "consecutive_failures": (0, 2), "held_removals": (0, 3),
        "last_success_at": (None, NOW - timedelta(minutes=5), NOW - interval, NOW - interval - MICRO),
    }
    prop = PropertyFactory()
    tokens = (
        [],
        [{"created_at": NOW - timedelta(minutes=5)}],
        [{"created_at": NOW - timedelta(days=9)}],
        [{"created_at": NOW - timedelta(hours=1), "last_read_at": NOW - timedelta(minutes=1)},
         {"created_at": NOW - timedelta(days=9), "expires_at": NOW + timedelta(hours=3),
          "last_read_at": NOW - timedelta(minutes=2)}],
    )
    made = Connection.objects.bulk_create([
        Connection(property=prop, portal=portal(), import_url=f"https://www.airbnb.com/calendar/ical/{n}.ics",
                   sync_interval_minutes=30, **dict(zip(values, combination, strict=True)))
        for n, combination in enumerate(itertools.product(*values.values()))
        for _tokens in tokens
    ])
    ExportToken.objects.bulk_create([
        ExportToken(property=prop, connection=c, **fields, **new_token_fields())
        for n, c in enumerate(made) for fields in tokens[n % len(tokens)]
    ])
    state_record([c.pk for c in made], now=NOW)
    rows = Connection.objects.filter(pk__in=[c.pk for c in made])
    at_now = {pk: (stored_state, state) for pk, stored_state, state in state_decided(rows, now=NOW)}
    assert all(stored_state == state for stored_state, state in at_now.values())
    assert {state for _stored, state in at_now.values()} == set(SyncState)  # every state was reached
    due = dict(rows.exclude(state_changes_at=None).values_list("pk", "state_changes_at"))
    assert due and all(moment > NOW for moment in due.values())
    for pk, moment in due.items():
        [(_pk, stored_state, state)] = state_decided(Connection.objects.filter(pk=pk), now=moment - MICRO)
        assert stored_state == state, (pk, moment)


# --------------------------------------------------------------------------- the sweep


def test_the_sweep_decides_the_rows_whose_moment_came_and_records_each_change_once(clock):
    sync = ConnectionFactory(direction="import_only", sync_interval_minutes=30, last_success_at=NOW)
    _state, moment = stored(sync)
    clock.move_to(moment - MICRO)
    assert state_sweep() == 0
    assert stored(sync)[0] == SyncState.WORKING
    clock.move_to(moment)
    assert state_sweep() == 1
    assert stored(sync) == (SyncState.STALE, None)  # stale until a write
    clock.shift(timedelta(days=1))
    assert state_sweep() == 0
    changes = list(StateChange.objects.filter(connection=sync).values_list("from_state", "to_state", "at", "account_id"))
    assert changes == [(SyncState.WORKING, SyncState.STALE, moment, sync.property.account_id)]


def test_a_new_sync_is_decided_at_once_and_its_first_decision_is_no_change():
    sync = ConnectionFactory(direction="export_only")
    assert_recorded(sync)
    assert stored(sync)[0] == SyncState.WORKING
    assert not StateChange.objects.filter(connection=sync).exists()


# --------------------------------------------------------------------------- each write path


@pytest.fixture
def server(httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    return httpserver


@pytest.fixture
def sync(server, clock):
    return ConnectionFactory(portal=portal("airbnb"), import_url=server.url_for(FEED), next_sync_at=timezone.now())


def stay_feed() -> bytes:
    today = timezone.localdate()
    return feeds.airbnb(("a", today + timedelta(days=2), today + timedelta(days=5)))


def run(connection):
    return connection_sync_leased(connection_id=connection.pk, trigger=SyncRun.Trigger.MANUAL)


def test_each_sync_record_decides_the_state(sync, server, clock):
    assert_recorded(sync)
    answer(server, stay_feed(), headers={"ETag": '"v1"'}, path=FEED)
    run(sync)
    assert_recorded(sync)
    assert stored(sync)[0] == SyncState.WORKING
    answer(server, b"", status=304, path=FEED)
    clock.shift(timedelta(minutes=61))  # stale by now, but the sweep has not run: the 304 decides
    run(sync)
    assert_recorded(sync)
    answer(server, b"busy", status=503, path=FEED)
    run(sync)
    assert_recorded(sync)
    assert stored(sync)[0] == SyncState.FAILING
    answer(server, b"gone", status=404, path=FEED)
    run(sync)
    assert_recorded(sync)
    assert stored(sync)[0] == SyncState.PAUSED
    changes = list(StateChange.objects.filter(connection=sync).order_by("pk").values_list("from_state", "to_state"))
    assert changes == [("waiting", "working"), ("working", "failing"), ("failing", "paused")]


def test_a_pause_is_recorded_in_the_write_that_opens_its_episode(sync, server, clock):
    answer(server, b"gone", status=404, path=FEED)
    run(sync)
    change = StateChange.objects.get(connection=sync, to_state=SyncState.PAUSED)
    assert change.at == sync.pause_episodes.get().started_at


def test_the_switch_the_settings_and_sync_now_decide_the_state(sync, server, clock, operator):
    answer(server, b"gone", status=404, path=FEED)
    run(sync)
    connection_switch(connection=sync, enabled=False)
    assert stored(sync)[0] == SyncState.SWITCHED_OFF
    assert_recorded(sync)
    connection_switch(connection=sync, enabled=True)
    assert stored(sync)[0] == SyncState.CHECKING
    assert_recorded(sync)
    answer(server, stay_feed(), path=FEED)
    connection_request_sync(connection=sync, user=None, pressed=True)
    run(sync)
    assert stored(sync)[0] == SyncState.WORKING
    connection_settings_update(connection_id=sync.pk, values={"sync_interval_minutes": 5})
    assert_recorded(sync)
    clock.shift(timedelta(minutes=11))
    assert stored(sync)[1] <= timezone.now()  # due to the sweep: stale after two 5-minute turns
    state_sweep()
    assert stored(sync)[0] == SyncState.STALE
    connection_settings_update(connection_id=sync.pk, values={"sync_interval_minutes": 30})
    assert_recorded(sync)
    assert stored(sync)[0] == SyncState.WORKING
    connection_settings_update(connection_id=sync.pk, values={"direction": "export_only"})
    assert_recorded(sync)


def test_export_urls_made_rotated_and_read_decide_the_state(clock, settings):
    settings.EXPORT_READ_FLUSH_SECONDS = 0
    sync = ConnectionFactory(portal=portal("airbnb"), direction="export_only")
    token = ExportToken.objects.get(connection=sync)
    clock.shift(timedelta(hours=10))
    state_sweep()
    assert stored(sync)[0] == SyncState.NOT_READING
    export_read_record(token_id=token.pk, status=200, user_agent="Airbnb calendar")
    assert stored(sync)[0] == SyncState.WORKING
    assert_recorded(sync)
    new = export_token_rotate(token=token)
    assert_recorded(sync)
    clock.shift(timedelta(minutes=1))
    export_read_record(token_id=token.pk, status=200, user_agent="Airbnb calendar")  # the old URL, still read
    assert stored(sync)[0] == SyncState.NOT_READING
    export_read_record(token_id=new.pk, status=200, user_agent="Airbnb calendar")
    assert_recorded(sync)
    assert export_token_ensure(property=sync.property, connection=sync) == new


def test_a_new_pick_up_delay_has_the_sweep_decide_the_portals_syncs(clock):
    sync = ConnectionFactory(portal=portal("vrbo"), direction="export_only")
    clock.shift(timedelta(hours=6))
    the_portal = Portal.objects.get(slug="vrbo")
    portal_settings_update(portal_id=the_portal.pk, values={"pickup_delay_max_minutes": 60})
    assert stored(sync)[1] <= timezone.now()
    state_sweep()
    assert stored(sync)[0] == SyncState.NOT_READING
    assert_recorded(sync)


def test_a_removed_and_restored_sync_keeps_the_state_the_rules_give_it(sync, server, clock, operator):
    answer(server, stay_feed(), path=FEED)
    run(sync)
    connections_remove(user=operator, connections=[sync])
    clock.shift(timedelta(hours=2))
    state_sweep()  # removed syncs are swept too: restored, it shows what the rules say
    sync.refresh_from_db()
    connection_restore(user=operator, connection=Connection.all_objects.get(pk=sync.pk))
    assert_recorded(sync)
    assert stored(sync)[0] == SyncState.STALE


def test_the_webhooks_are_told_of_each_change_into_not_reading_once_until_the_portal_reads_again(
    clock, settings, operator
):
    settings.FETCH_ALLOW_LOOPBACK = True
    settings.EXPORT_READ_FLUSH_SECONDS = 0
    sync = ConnectionFactory(portal=portal("airbnb"), direction="export_only")
    webhook_create(user=operator, account=sync.property.account, url="http://127.0.0.1:9/hook", events=["not_reading"],
                   slack_text=False)
    token = ExportToken.objects.get(connection=sync)
    for _episode in range(2):
        clock.shift(timedelta(hours=10))
        state_sweep()
        assert scan_not_reading(now=timezone.now()) == 1
        assert scan_not_reading(now=timezone.now()) == 0  # told once
        export_read_record(token_id=token.pk, status=200, user_agent="Airbnb")  # reads again: out of it
        assert stored(sync)[0] == SyncState.WORKING
    assert WebhookDelivery.objects.filter(event="not_reading").count() == 2


# --------------------------------------------------------------------------- random sequences


def test_random_sequences_of_writes_and_clock_moves_keep_every_stored_state_the_rules_state(server, clock, operator):
    """After each step, every stored state is the rules' state now, or its moment has come and
    one sweep makes it so."""
    replies = {"kind": "200"}

    def portal_answers(request):
        from werkzeug import Response

        kind = replies["kind"]
        if kind == "304":
            return Response(status=304)
        if kind == "503":
            return Response("busy", status=503)
        if kind == "404":
            return Response("gone", status=404)
        return Response(stay_feed(), status=200, content_type="text/calendar", headers={"ETag": '"v1"'})

    server.expect_request(FEED).respond_with_handler(portal_answers)

    class Syncs(RuleBasedStateMachine):
        @initialize(direction=st.sampled_from(["two_way", "import_only", "export_only"]))
        def make(self, direction):
            url = server.url_for(FEED) if direction != "export_only" else ""
            self.sync = ConnectionFactory(portal=portal("airbnb"), direction=direction, import_url=url)

        @rule(kind=st.sampled_from(["200", "304", "503", "404"]))
        def poll(self, kind):
            if Connection.objects.filter(pk=self.sync.pk, direction="export_only").exists():
                return
            replies["kind"] = kind
            run(self.sync)

        @rule(on=st.booleans())
        def switch(self, on):
            connection_switch(connection=self.sync, enabled=on)

        @rule(minutes=st.sampled_from([5, 30, 60]), direction=st.sampled_from(["two_way", "import_only", "export_only"]))
        def edit(self, minutes, direction):
            values = {"sync_interval_minutes": minutes, "direction": direction}
            if direction != "export_only":
                values["import_url"] = server.url_for(FEED)
            connection_settings_update(connection_id=self.sync.pk, values=values)

        @rule()
        def sync_now(self):
            self.sync.refresh_from_db()
            connection_request_sync(connection=self.sync, user=operator, pressed=True)

        @rule(old=st.booleans())
        def export_read(self, old):
            tokens = ExportToken.objects.filter(connection=self.sync).order_by("expires_at")
            token = tokens.exclude(expires_at=None).first() if old else tokens.filter(expires_at=None).first()
            if token is not None:
                export_read_record(token_id=token.pk, status=200, user_agent="Airbnb")

        @rule()
        def rotate(self):
            current = ExportToken.objects.filter(connection=self.sync, expires_at=None).first()
            if current is not None:
                export_token_rotate(token=current)

        @rule()
        def remove_and_restore(self):
            connections_remove(user=operator, connections=[Connection.objects.get(pk=self.sync.pk)])
            connection_restore(user=operator, connection=Connection.all_objects.get(pk=self.sync.pk))

        @rule(minutes=st.integers(min_value=1, max_value=60 * 30))
        def wait(self, minutes):
            clock.shift(timedelta(minutes=minutes))

        @invariant()
        def stored_as_the_rules_say(self):
            now = timezone.now()
            live = Connection.objects.all()
            wrong = [(pk, s, d) for pk, s, d in state_decided(live.exclude(state_changes_at__lte=now), now=now) if s != d]
            assert wrong == []
            if live.filter(state_changes_at__lte=now).exists():
                state_sweep(now=now)
                assert [(pk, s, d) for pk, s, d in state_decided(live, now=now) if s != d] == []

    run_state_machine_as_test(Syncs, settings=settings(
        max_examples=12, stateful_step_count=12, deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    ))
