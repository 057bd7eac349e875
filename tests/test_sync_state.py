"""One state per sync, the same in every place: each transition is driven through the real engine
against portals played on 127.0.0.1 (a closed port refuses connections; a name that does not
resolve is a DNS failure), then read where the operator reads it: the overview's tile and
attention list, the properties list's health, the property page's row, the connection page's
heading, and the subject of the last email. Every overview read checks that its tiles add up to
the account's syncs (tests/states.py)."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection as db_connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from syncs import notifications
from syncs.connection_state import connection_switch
from syncs.dashboard import dashboard_summary
from syncs.engine.task import connection_sync_leased
from syncs.export_tokens import new_token_fields
from syncs.models import (
    Account,
    Activity,
    Block,
    Connection,
    ExportToken,
    Membership,
    PauseEpisode,
    SyncRun,
)
from syncs.notifications import send_pause_notifications
from syncs.readers import expected_within
from syncs.sync_state import (
    NEEDS_ATTENTION,
    STALE_INTERVALS,
    SyncState,
    classify,
    connection_statuses,
    in_states,
    states_with_attention,
    statuses_of,
    with_states,
    worst_first,
)
from tests import feeds
from tests.factories import BlockFactory, ConnectionFactory, PropertyFactory, portal
from tests.helpers import answer as shared_answer
from tests.jobs import recorded_hand_over
from tests.states import overview_tiles, places, sync_state_of

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)  # for the rules, which take the time as an argument
FEED = "/calendar/ical/77.ics"


@pytest.fixture
def clock():
    """Time that moves when a test says so (starting now: the operator's session stays valid)."""
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        yield traveller


@pytest.fixture
def account(operator):
    return Account.of_user(operator)


@pytest.fixture
def server(httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    return httpserver



def answer(server, body: bytes = b"", status: int = 200, **kwargs) -> None:
    shared_answer(server, body, status, path=FEED, **kwargs)


def stays(count: int = 4):
    today = timezone.localdate()
    return [(f"s{i}", today + timedelta(days=5 * i + 2), today + timedelta(days=5 * i + 4)) for i in range(count)]


@pytest.fixture
def flat(account):
    return PropertyFactory(account=account, name="Casa Azul")


@pytest.fixture
def sync(flat, server):
    """An Airbnb sync of Casa Azul, reading the portal played by ``server``, never synced yet."""
    return ConnectionFactory(
        property=flat, portal=portal("airbnb"), import_url=server.url_for(FEED), next_sync_at=timezone.now()
    )


@pytest.fixture
def members(account):
    from tests.factories import MembershipFactory

    MembershipFactory(account=account, user__email="ana@example.com")


def run(connection, trigger=SyncRun.Trigger.MANUAL):
    return connection_sync_leased(connection_id=connection.pk, trigger=trigger)


def subjects(mailoutbox) -> list[str]:
    return [message.subject for message in mailoutbox]


# --------------------------------------------------------------------------- the rules


BASE = {
    "enabled": True, "direction": "two_way", "paused_at": None, "checking_since": None, "consecutive_failures": 0,
    "held_removals": 0, "last_success_at": NOW, "sync_interval_minutes": 30,
}


class Row:
    def __init__(self, **fields):
        self.__dict__.update({**BASE, **fields})


class Readers:
    def __init__(self, needs_attention: bool):
        self.needs_attention = needs_attention


@pytest.mark.parametrize(
    ("fields", "readers_need_attention", "state"),
    [
        ({}, False, SyncState.WORKING),
        ({"last_success_at": None}, False, SyncState.WAITING),
        ({"last_success_at": None, "consecutive_failures": 1}, False, SyncState.FAILING),  # a first sync that failed
        ({"consecutive_failures": 2}, False, SyncState.FAILING),
        ({"paused_at": NOW, "consecutive_failures": 3}, False, SyncState.PAUSED),
        ({"paused_at": NOW, "checking_since": NOW}, False, SyncState.CHECKING),
        ({"paused_at": NOW, "enabled": False}, False, SyncState.SWITCHED_OFF),
        ({"enabled": False, "consecutive_failures": 2}, True, SyncState.SWITCHED_OFF),
        ({"held_removals": 4}, True, SyncState.HELD),
        ({"last_success_at": NOW - timedelta(minutes=30 * STALE_INTERVALS + 1)}, False, SyncState.STALE),
        ({"last_success_at": NOW - timedelta(minutes=30 * STALE_INTERVALS - 1)}, False, SyncState.WORKING),
        ({}, True, SyncState.NOT_READING),
        ({"direction": "export_only", "last_success_at": None}, False, SyncState.WORKING),
        ({"direction": "export_only", "last_success_at": None}, True, SyncState.NOT_READING),
    ],
)
def test_every_sync_is_in_exactly_one_state_the_first_rule_that_applies(fields, readers_need_attention, state):
    assert classify(Row(**fields), readers=Readers(readers_need_attention), now=NOW) == state


def _states_both_ways(connections) -> list[tuple[Connection, SyncState, SyncState]]:
    """(sync, classify's state, with_states' state) of each of these saved syncs, at NOW; and
    in_states, asked for each state, finds exactly the syncs classify puts in it."""
    loaded = Connection.objects.select_related("portal").filter(pk__in=[c.pk for c in connections])
    by_python = connection_statuses(loaded, now=NOW)
    these = Connection.objects.filter(pk__in=by_python)
    by_sql = dict(with_states(these, now=NOW).values_list("pk", "sync_state"))
    for state in SyncState:
        in_state = {pk for pk, status in by_python.items() if status.state == state}
        assert set(in_states(these, [state], now=NOW).values_list("pk", flat=True)) == in_state, state
    attention = {pk for pk, status in by_python.items() if status.needs_attention}
    assert set(in_states(these, NEEDS_ATTENTION, now=NOW).values_list("pk", flat=True)) == attention
    return [(c, by_python[c.pk].state, SyncState(by_sql[c.pk])) for c in loaded]


def test_the_rules_in_sql_give_every_combination_of_fields_the_state_classify_gives():
    """with_states says classify's rules in SQL, for reads of many syncs: over every combination of
    the fields the rules read, at the stale rule's boundary to the microsecond, and with readers
    fine or not, both give the same state."""
    interval = timedelta(minutes=30 * STALE_INTERVALS)
    values = {
        "enabled": (True, False), "direction": ("two_way", "import_only", "export_only"),
        "paused_at": (None, NOW - timedelta(hours=2)), "checking_since": (None, NOW - timedelta(minutes=5)),
        "consecutive_failures": (0, 2), "held_removals": (0, 3),
        "last_success_at": (None, NOW - timedelta(minutes=5), NOW - interval, NOW - interval - timedelta(microseconds=1)),
    }
    prop = PropertyFactory()
    made = Connection.objects.bulk_create([
        Connection(property=prop, portal=portal(), import_url=f"https://www.airbnb.com/calendar/ical/{n}.ics",
                   sync_interval_minutes=30, **dict(zip(values, combination, strict=True)))
        for n, combination in enumerate(itertools.product(*values.values()))
        for _readers in ("fine", "never read")
    ])
    # Every other sync's export URL was made long ago and never read.
    ExportToken.objects.bulk_create([
        ExportToken(property=prop, connection=c, created_at=NOW - timedelta(minutes=5 if n % 2 else 10**5), **new_token_fields())
        for n, c in enumerate(made)
    ])
    compared = _states_both_ways(made)
    assert [(c.pk, python) for c, python, _sql in compared] == [(c.pk, sql) for c, _python, sql in compared]
    assert {python for _c, python, _sql in compared} == set(SyncState)  # every state was reached


def test_the_rules_in_sql_read_the_export_readers_as_classify_does():
    """The not-reading rule in SQL, against export_facts, for each portal's pick-up delay (none
    published: the default), at each boundary to the microsecond, with a rotated URL still read
    (by a known reader or not), read before the rotation, or past its grace."""
    micro = timedelta(microseconds=1)
    prop = PropertyFactory()
    syncs: list[tuple[Connection, list[dict]]] = []
    for slug in ("airbnb", "vrbo", "other"):
        for direction in ("two_way", "export_only", "import_only"):
            the_portal = portal(slug)
            expected = expected_within(the_portal.pickup_delay_max_minutes)
            situations = [
                [],  # no export URL yet
                [{"created_at": NOW - expected}],  # not read, still within the delay
                [{"created_at": NOW - expected - micro}],  # never read
                [{"created_at": NOW - 10 * expected, "last_read_at": NOW - expected, "last_reader": "airbnb"}],
                [{"created_at": NOW - 10 * expected, "last_read_at": NOW - expected - micro, "last_reader": "airbnb"}],
            ]
            current = {"created_at": NOW - timedelta(hours=1), "last_read_at": NOW - timedelta(minutes=1)}
            for old in (
                {"last_read_at": NOW - timedelta(minutes=2), "last_reader": "vrbo"},  # still read after the rotation
                {"last_read_at": NOW - timedelta(minutes=2), "last_reader": ""},  # by software we cannot name
                {"last_read_at": NOW - timedelta(hours=1), "last_reader": "vrbo"},  # exactly when the new one was made
                {"last_read_at": NOW - timedelta(hours=2), "last_reader": "vrbo"},  # only before
            ):
                for expires_at in (NOW + timedelta(days=1), NOW):  # in its grace, or past it
                    situations.append([current, {"created_at": NOW - timedelta(days=9), "expires_at": expires_at, **old}])
            for tokens in situations:
                connection = Connection(property=prop, portal=the_portal, direction=direction, last_success_at=NOW,
                                        import_url=f"https://www.example.com/{len(syncs)}.ics")
                syncs.append((connection, tokens))
    Connection.objects.bulk_create([connection for connection, _tokens in syncs])  # no export URL made for them
    ExportToken.objects.bulk_create([
        ExportToken(property=prop, connection=connection, **fields, **new_token_fields())
        for connection, tokens in syncs for fields in tokens
    ])
    compared = _states_both_ways([connection for connection, _tokens in syncs])
    assert [(c.pk, python) for c, python, _sql in compared] == [(c.pk, sql) for c, _python, sql in compared]
    assert {python for _c, python, _sql in compared} == {SyncState.WORKING, SyncState.NOT_READING}


def test_the_stale_rule_in_sql_holds_at_each_interval_to_the_microsecond():
    """For every interval the syncs have when the states are read, and for one set while they are
    (the database then works the moment out)."""
    prop = PropertyFactory()
    cases = [(minutes, shift) for minutes in (5, 30, 45, 1440, 10080) for shift in (-1, 0, 1)]
    made = [ConnectionFactory(property=prop, direction="import_only", sync_interval_minutes=7) for _case in cases]
    read_while_set = with_states(Connection.objects.filter(property=prop), now=NOW)  # knows of 7 only
    for connection, (minutes, shift) in zip(made, cases, strict=True):
        at = NOW - timedelta(minutes=minutes * STALE_INTERVALS) + timedelta(microseconds=shift)
        Connection.objects.filter(pk=connection.pk).update(sync_interval_minutes=minutes, last_success_at=at)
    compared = _states_both_ways(made)
    assert [(c.pk, python) for c, python, _sql in compared] == [(c.pk, sql) for c, _python, sql in compared]
    assert [python for _c, python, _sql in compared].count(SyncState.STALE) == 5
    assert dict(read_while_set.values_list("pk", "sync_state")) == {c.pk: python.value for c, python, _sql in compared}


@pytest.mark.parametrize("troubled", [1, 3, 6])  # few of the syncs (read by id), most, all
def test_the_syncs_needing_attention_are_those_classify_finds_worst_first_however_many_they_are(troubled):
    prop = PropertyFactory()
    for n in range(6):
        ConnectionFactory(property=prop, direction="import_only", last_success_at=NOW - timedelta(minutes=5 + 2 * n),
                          consecutive_failures=2 if n < troubled and n % 2 else 0,
                          paused_at=NOW - timedelta(hours=n) if n < troubled and not n % 2 else None)
    syncs = Connection.objects.filter(property=prop)
    counts, attention = states_with_attention(syncs, now=NOW)
    every = statuses_of(syncs, tokens=ExportToken.objects.filter(property=prop), now=NOW)
    assert [(s.connection.id, s.state) for s in attention] == [
        (s.connection.id, s.state) for s in worst_first(s for s in every if s.needs_attention)
    ]
    assert len(attention) == troubled and sum(counts.values()) == 6
    assert counts[SyncState.WORKING.value] == 6 - troubled


# --------------------------------------------------------------------------- transitions, in every place


def test_a_new_sync_is_waiting_for_its_first_sync_with_when_it_is_due(operator_client, sync):
    Connection.objects.filter(pk=sync.pk).update(next_sync_at=timezone.now() + timedelta(minutes=3))
    shown = places(operator_client, sync)
    shown.everywhere(SyncState.WAITING)
    assert "Waiting for its first sync, due in 3\xa0minutes." in shown.overview_page
    assert "Nothing needs your attention" not in shown.overview_page
    assert "All syncs are working" not in shown.overview_page


def test_a_first_sync_that_fails_is_failing_not_waiting_and_says_when_it_retries(operator_client, sync, clock):
    Connection.objects.filter(pk=sync.pk).update(import_url="https://calendar.portal-that-does-not-exist.test/ical.ics")
    assert run(sync).outcome == "dns"
    shown = places(operator_client, sync)
    shown.everywhere(SyncState.FAILING)
    assert "The portal's address could not be found (DNS)." in shown.overview_page
    assert "It failed 1 time in a row; we try again in 5\xa0minutes." in shown.overview_page
    assert "Not synced yet" not in shown.connection_page
    assert "The last sync failed." in shown.connection_page
    assert "Nothing needs your attention" not in shown.overview_page


def test_a_refused_connection_fails_then_pauses_at_the_third_and_the_email_says_paused(
    operator_client, flat, free_port, settings, clock, members, mailoutbox
):
    settings.FETCH_ALLOW_LOOPBACK = True
    closed = ConnectionFactory(property=flat, portal=portal("vrbo"), import_url=f"http://127.0.0.1:{free_port}/c.ics")
    for _attempt in (1, 2):
        assert run(closed).outcome == "connect"
        places(operator_client, closed).everywhere(SyncState.FAILING)
        assert send_pause_notifications() == 0
    run(closed)
    places(operator_client, closed).everywhere(SyncState.PAUSED)
    send_pause_notifications()
    assert subjects(mailoutbox) == ["Paused: Vrbo sync of Casa Azul"]


def test_switching_a_paused_sync_back_on_checks_it_and_a_check_that_fails_pauses_it_again_without_email(
    operator_client, sync, server, clock, members, mailoutbox
):
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)
    send_pause_notifications()
    places(operator_client, sync).everywhere(SyncState.PAUSED)

    with recorded_hand_over() as enqueue, operator_client_on_commit():
        operator_client.post(reverse("connection-switch", args=[sync.pk]), {"enabled": "1"})
    assert enqueue.syncs() == [sync.pk]  # the check is run at once
    shown = places(operator_client, sync)
    shown.everywhere(SyncState.CHECKING)
    assert "Switched back on less than a minute ago: the next sync checks" in shown.overview_page
    clock.shift(timedelta(hours=25))
    assert send_pause_notifications() == 0  # no reminder, no "Restored" while it is checked

    tasks_run_the_check(sync)  # still 404
    shown = places(operator_client, sync)
    shown.everywhere(SyncState.PAUSED)
    clock.shift(notifications.RESTORE_SETTLE)
    send_pause_notifications()
    # The same episode: no second "Paused", and never "Restored". The newest email says paused,
    # as the dashboard does.
    assert subjects(mailoutbox) == ["Paused: Airbnb sync of Casa Azul", "Still paused: Airbnb sync of Casa Azul"]
    assert PauseEpisode.objects.filter(connection=sync).count() == 1
    assert PauseEpisode.objects.get(connection=sync).resume_failed_at is not None


def test_a_check_that_works_ends_the_pause_and_restored_goes_out_once_it_kept_working(
    operator_client, sync, server, clock, members, mailoutbox
):
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)
    send_pause_notifications()
    with recorded_hand_over():
        connection_switch(connection=sync, enabled=True)
    answer(server, feeds.airbnb(*stays()))
    tasks_run_the_check(sync)
    places(operator_client, sync).everywhere(SyncState.WORKING)
    assert send_pause_notifications() == 0  # not restored in the operator's inbox yet: it may fail again
    clock.shift(notifications.RESTORE_SETTLE)
    assert send_pause_notifications() == 1
    assert subjects(mailoutbox)[-1] == "Restored: Airbnb sync of Casa Azul"
    places(operator_client, sync).everywhere(SyncState.WORKING)


def test_a_pause_minutes_after_a_restore_sends_neither_restored_nor_a_second_paused(
    operator_client, sync, server, clock, members, mailoutbox
):
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)
    send_pause_notifications()
    answer(server, feeds.airbnb(*stays()))
    run(sync)  # works: the episode ends
    clock.shift(timedelta(minutes=3))
    send_pause_notifications()
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)  # paused again within minutes
    clock.shift(timedelta(hours=1))
    send_pause_notifications()
    assert subjects(mailoutbox) == ["Paused: Airbnb sync of Casa Azul"]
    assert PauseEpisode.objects.filter(connection=sync).count() == 1  # reopened, not a new one
    places(operator_client, sync).everywhere(SyncState.PAUSED)


def test_a_restored_email_owed_while_the_sync_is_switched_off_waits(sync, server, clock, members, mailoutbox):
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)
    send_pause_notifications()
    answer(server, feeds.airbnb(*stays()))
    run(sync)
    connection_switch(connection=sync, enabled=False)
    clock.shift(notifications.RESTORE_SETTLE * 2)
    assert send_pause_notifications() == 0  # "running again" would be untrue: it is switched off
    connection_switch(connection=sync, enabled=True)
    assert send_pause_notifications() == 1
    assert subjects(mailoutbox)[-1] == "Restored: Airbnb sync of Casa Azul"


def test_a_pause_email_is_not_sent_while_the_operator_already_switched_the_sync_back_on(
    sync, server, clock, members, mailoutbox
):
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)
    with recorded_hand_over():
        connection_switch(connection=sync, enabled=True)  # before the notifier's next pass
    assert send_pause_notifications() == 0
    answer(server, feeds.airbnb())
    tasks_run_the_check(sync)
    clock.shift(timedelta(days=2))
    assert send_pause_notifications() == 0  # fixed before anyone was told: no email at all
    assert mailoutbox == []


def test_held_removals_stale_switched_off_and_not_reading_are_one_state_each_everywhere(
    operator_client, sync, server, clock
):
    answer(server, feeds.airbnb(*stays()))
    run(sync)
    answer(server, feeds.airbnb())
    run(sync)
    places(operator_client, sync).everywhere(SyncState.HELD)

    Connection.objects.filter(pk=sync.pk).update(held_removals=0, held_answer="", held_since=None)
    clock.shift(timedelta(minutes=30 * STALE_INTERVALS + 5))
    ExportToken.objects.filter(connection=sync).update(last_read_at=timezone.now())
    shown = places(operator_client, sync)
    shown.everywhere(SyncState.STALE)
    assert "No successful sync for a while" in shown.overview_page

    connection_switch(connection=sync, enabled=False)
    shown = places(operator_client, sync)
    shown.everywhere(SyncState.SWITCHED_OFF)
    assert "All syncs are working" not in shown.overview_page
    assert "1 sync is switched off." in shown.overview_page

    connection_switch(connection=sync, enabled=True)
    run(sync)
    clock.shift(timedelta(hours=10))  # Airbnb has not read our calendar for three of its pick-ups
    run(sync)
    shown = places(operator_client, sync)
    shown.everywhere(SyncState.NOT_READING)
    assert "Airbnb seems to have stopped reading it." in shown.overview_page


def test_the_overview_says_all_is_well_only_when_every_sync_has_worked_and_nothing_is_double_booked(
    operator_client, sync, server
):
    page = operator_client.get(reverse("home")).content.decode()
    assert "Nothing needs your attention" not in page  # waiting for its first sync
    answer(server, feeds.airbnb(*stays()))
    run(sync)
    page = operator_client.get(reverse("home")).content.decode()
    assert "All syncs are working; no double bookings." in page and "Nothing needs your attention." in page
    vrbo = ConnectionFactory(property=sync.property, portal=portal("vrbo"), last_success_at=timezone.now())
    first = stays()[0]
    BlockFactory(property=sync.property, source=vrbo, kind="reserved", start_date=first[1], end_date=first[2])
    page = operator_client.get(reverse("home")).content.decode()
    assert "Nothing needs your attention" not in page
    assert "only the double bookings need you" in page and "no double bookings" not in page
    overview_tiles(operator_client)


def test_an_account_without_syncs_is_not_told_all_is_well(operator_client, account):
    page = operator_client.get(reverse("home")).content.decode()
    assert "All syncs are working" not in page and "Nothing needs your attention" not in page
    assert "You have no syncs yet" in page
    assert overview_tiles(operator_client) == dict.fromkeys(SyncState.values, 0)


def operator_client_on_commit():
    from django.test import TestCase

    return TestCase.captureOnCommitCallbacks(execute=True)


def tasks_run_the_check(connection) -> None:
    """The worker runs the sync that switching on asked for."""
    from syncs import tasks

    tasks.sync_connection(connection.pk, SyncRun.Trigger.MANUAL)


# --------------------------------------------------------------------------- the properties list


def test_the_properties_list_says_failing_double_booked_and_no_sync_never_ok_for_those(operator_client, account, flat):
    failing = ConnectionFactory(property=flat, consecutive_failures=1, last_error_code="dns")
    ConnectionFactory(property=flat, last_success_at=timezone.now())
    doubled = PropertyFactory(account=account, name="Villa Dupla")
    airbnb = ConnectionFactory(property=doubled, portal=portal("airbnb"), last_success_at=timezone.now())
    booking = ConnectionFactory(property=doubled, portal=portal("booking"), last_success_at=timezone.now())
    start = timezone.localdate() + timedelta(days=9)
    BlockFactory(property=doubled, source=airbnb, kind="reserved", start_date=start, end_date=start + timedelta(days=3))
    BlockFactory(property=doubled, source=booking, start_date=start + timedelta(days=1), end_date=start + timedelta(days=4))
    empty = PropertyFactory(account=account, name="Casa Nova")
    fine = PropertyFactory(account=account, name="Casa Boa")
    ConnectionFactory(property=fine, last_success_at=timezone.now())

    page = operator_client.get(reverse("property-list")).content.decode()
    rows = dict(re.findall(r'<tr id="property-(\d+)">(.*?)</tr>', page, re.DOTALL))
    assert re.findall(r'data-state="(\w+)"', rows[str(flat.pk)]) == ["failing", "working"]  # worst first
    assert "Failing, retrying: 1" in rows[str(flat.pk)]
    assert "Possible double booking" in rows[str(doubled.pk)]
    assert "No sync yet" in rows[str(empty.pk)]
    assert re.findall(r'data-state="(\w+)"', rows[str(fine.pk)]) == ["working"]
    for name, row in rows.items():
        assert ">OK<" not in row, name
    assert failing.pk  # (the failing sync is the property's worst)


# --------------------------------------------------------------------------- a constant number of queries


def test_the_overview_and_the_properties_list_read_the_same_number_of_queries_for_5_or_60_syncs(
    operator_client, account
):
    def queries(path: str) -> int:
        with CaptureQueriesContext(db_connection) as captured:
            assert operator_client.get(path).status_code == 200
        return len(captured)

    def add(count: int) -> None:
        for index in range(count):
            prop = PropertyFactory(account=account)
            now = timezone.now()
            states = [
                {"last_success_at": now}, {"paused_at": now, "pause_reason": "http_4xx", "pause_params": {"status": 404}},
                {"consecutive_failures": 1, "last_error_code": "timeout", "next_sync_at": now},
                {"enabled": False}, {}, {"last_success_at": now, "held_removals": 3, "held_since": now},
            ]
            ConnectionFactory(property=prop, **states[index % len(states)])

    add(5)
    for path in (reverse("home"), reverse("property-list")):
        queries(path)  # the first request of a session reads what later ones keep (the session, caches)
    few = {path: queries(path) for path in (reverse("home"), reverse("property-list"))}
    add(55)
    many = {path: queries(path) for path in (reverse("home"), reverse("property-list"))}
    assert many == few
    assert sum(dashboard_summary(user=account.memberships.get().user).counts.values()) == 60


# --------------------------------------------------------------------------- one read per page


def save_new_link(operator_client, sync, url: str):
    """The edit form saving a new link; the worker's read is held back (the test plays the worker)."""
    with (
        recorded_hand_over() as enqueue,
        TestCase.captureOnCommitCallbacks(execute=True),
    ):
        response = operator_client.post(
            reverse("connection-edit", args=[sync.pk]),
            {"portal": sync.portal_id, "direction": sync.direction, "import_url": url,
             "sync_interval_minutes": 30, "export_summary": "Not available"},
            follow=True,
        )
    return response.content.decode(), enqueue


def toast(page: str) -> str:
    return re.search(r'<div class="toast[^"]*"><span class="toast-words">(.*?)</span>', page, re.DOTALL).group(1)


def test_after_saving_a_link_for_a_paused_sync_the_message_and_the_state_box_both_say_checking(
    operator_client, sync, server, clock
):
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)
    other = "/calendar/ical/other.ics"
    server.expect_request(other).respond_with_data(b"<html>Log in</html>", content_type="text/html")
    page, enqueue = save_new_link(operator_client, sync, server.url_for(other))
    # The page never waits on the portal: a worker reads the new link, and until it has, the
    # message and the state box say the same thing: checking.
    assert "the new link is being read now, and the sync resumes if it works" in toast(page)
    assert re.search(r'id="state-box" data-state="checking"', page)
    assert sync_state_of(sync) == SyncState.CHECKING
    assert enqueue.syncs() == [sync.pk]
    # The worker's read fails too: the page says paused, with the new reason.
    run(sync)
    page = operator_client.get(reverse("connection-detail", args=[sync.pk])).content.decode()
    assert re.search(r'id="state-box" data-state="paused"', page)
    assert "returned a web page, not a calendar" in page.split('id="state-box"')[1]
    assert sync_state_of(sync) == SyncState.PAUSED


def test_after_the_worker_read_a_new_link_that_works_the_page_says_working_with_no_paused_box(
    operator_client, sync, server, clock
):
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)
    other = "/calendar/ical/other.ics"
    server.expect_request(other).respond_with_data(feeds.airbnb(*stays()), content_type="text/calendar")
    save_new_link(operator_client, sync, server.url_for(other))
    run(sync)  # the worker
    page = operator_client.get(reverse("connection-detail", args=[sync.pk])).content.decode()
    assert 'id="state-box"' not in page
    assert re.search(r'<h1>Airbnb <span class="badge badge-working" data-state="working">Working</span></h1>', page)
    assert PauseEpisode.objects.get(connection=sync).ended_by == "edit"


# --------------------------------------------------------------------------- the activity log


def test_the_activity_log_lists_what_the_system_did_by_itself_with_no_user_and_says_automatically(
    operator_client, sync, server, clock, members, mailoutbox
):
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)
    send_pause_notifications()
    clock.shift(timedelta(hours=24, minutes=1))
    send_pause_notifications()  # the reminder
    answer(server, feeds.airbnb(*stays()))
    run(sync)
    clock.shift(notifications.RESTORE_SETTLE)
    send_pause_notifications()
    rows = list(Activity.objects.filter(connection=sync).order_by("created_at", "pk").values_list("action", "user"))
    assert rows == [
        ("paused", None), ("pause_email_sent", None), ("reminder_sent", None), ("resumed", None),
        ("restored_email_sent", None),
    ]
    page = operator_client.get(reverse("activity")).content.decode()
    table = page.split('id="activity"')[1]
    assert table.count(">automatically</td>") == 5
    assert "Airbnb answered 404: the calendar link no longer exists." in table
    assert "A sync worked again." in table
    assert "to 2 people" in table  # the operator and Ana


def test_every_operator_action_is_in_the_log_the_checklists_sync_now_and_test_blocks_included(
    operator_client, operator, sync, server, clock
):
    answer(server, feeds.airbnb(*stays()))
    fix_step = reverse("connection-fix-step", args=[sync.pk, "resync"])
    operator_client.post(fix_step, {"action": "run"})
    run(sync)  # what the worker does: the final check starts once the import works
    final = reverse("connection-fix-step", args=[sync.pk, "final_check"])
    night = timezone.localdate() + timedelta(days=60)
    operator_client.post(final, {"action": "add_test_block", "night": night.isoformat()})
    operator_client.post(final, {"action": "finish"})
    with recorded_hand_over():
        operator_client.post(reverse("connection-sync-now", args=[sync.pk]))
    rows = list(Activity.objects.filter(connection=sync).order_by("created_at", "pk").values_list("action", "user", "params"))
    assert [(action, user) for action, user, _ in rows] == [
        ("sync_requested", operator.pk), ("test_block_added", operator.pk), ("test_block_removed", operator.pk),
        ("sync_requested", operator.pk),
    ]
    assert rows[0][2] == {"from": "checklist"}
    assert rows[1][2] == {"start": night.isoformat(), "end": (night + timedelta(days=1)).isoformat()}
    page = operator_client.get(reverse("activity")).content.decode()
    assert "from the fix checklist" in page
    assert "added a test block" in page and "removed the test block" in page


def test_the_activity_log_reads_in_one_clock_the_readers_zone_strictly_newest_first(operator_client, operator, account):
    lisbon = PropertyFactory(account=account, name="Casa Lisboa", timezone="Europe/Lisbon")
    tokyo = PropertyFactory(account=account, name="Casa Tóquio", timezone="Asia/Tokyo")
    PropertyFactory(account=account, name="Casa Porto", timezone="Europe/Lisbon")
    base = datetime(2027, 3, 10, 20, 0, tzinfo=UTC)
    for minutes, prop in ((0, lisbon), (5, tokyo), (10, lisbon)):
        Activity.objects.create(account=account, user=operator, property=prop, action="property_edited",
                                created_at=base + timedelta(minutes=minutes))
    # The account's main zone: where most of its properties are.
    page = operator_client.get(reverse("activity")).content.decode()
    assert "Every time is in Europe/Lisbon." in page
    times = re.findall(r'<time datetime="([^"]+)">([^<]+)</time>', page)
    assert [moment for moment, _ in times] == sorted((moment for moment, _ in times), reverse=True)
    assert [shown for _, shown in times] == ["March 10, 2027, 8:10 p.m.", "March 10, 2027, 8:05 p.m.", "March 10, 2027, 8 p.m."]
    # The reader's own zone, chosen on their own page.
    operator_client.post(reverse("profile"), {"form": "time_zone", "time_zone": "America/Sao_Paulo"})
    assert Membership.objects.get(user=operator).time_zone == "America/Sao_Paulo"
    page = operator_client.get(reverse("activity")).content.decode()
    assert "Every time is in America/Sao_Paulo." in page
    assert [shown for _, shown in re.findall(r'<time datetime="([^"]+)">([^<]+)</time>', page)] == [
        "March 10, 2027, 5:10 p.m.", "March 10, 2027, 5:05 p.m.", "March 10, 2027, 5 p.m.",
    ]


def test_a_zone_that_does_not_exist_is_refused_in_words_and_nothing_is_saved(operator_client, operator, account):
    response = operator_client.post(reverse("profile"), {"form": "time_zone", "time_zone": "Mars/Olympus"})
    assert "is not a time zone name such as Europe/Lisbon" in response.content.decode()
    assert Membership.objects.get(user=operator).time_zone == ""


def test_the_activity_log_filters_by_property_and_kind_and_pages(operator_client, operator, account):
    one, two = PropertyFactory(account=account, name="Um"), PropertyFactory(account=account, name="Dois")
    for index in range(60):
        Activity.objects.create(account=account, user=operator, property=one if index % 2 else two,
                                action="block_added" if index % 3 else "property_edited")
    first = operator_client.get(reverse("activity")).content.decode()
    assert first.count("<tr data-action=") == 50
    assert "Page 1 of 2" in first
    only = operator_client.get(reverse("activity"), {"property": one.pk, "kind": "block_added"}).content.decode()
    expected = sum(1 for index in range(60) if index % 2 and index % 3)
    assert only.count('<tr data-action="block_added">') == expected == only.count("<tr data-action=")
    assert f'<option value="{one.pk}" selected>Um</option>' in only
    nonsense = operator_client.get(reverse("activity"), {"property": "x", "kind": "<script>"})
    assert nonsense.status_code == 200
    assert nonsense.content.decode().count("<tr data-action=") == 50


def test_the_admin_list_shows_each_connections_state_as_the_pages_do(admin_client, account, flat):
    failing = ConnectionFactory(property=flat, consecutive_failures=2, last_error_code="timeout")
    paused = ConnectionFactory(property=flat, portal=portal("vrbo"), paused_at=timezone.now(), pause_reason="http_4xx")
    with CaptureQueriesContext(db_connection) as few:
        page = admin_client.get(reverse("admin:syncs_connection_changelist")).content.decode()
    assert "Failing, retrying" in page and "Paused by errors" in page
    ConnectionFactory.create_batch(10, property=flat, last_success_at=timezone.now())
    with CaptureQueriesContext(db_connection) as many:
        page = admin_client.get(reverse("admin:syncs_connection_changelist")).content.decode()
    assert page.count("Working") >= 10
    assert len(many) == len(few)  # the states of a page of connections in one read
    assert sync_state_of(failing) == SyncState.FAILING and sync_state_of(paused) == SyncState.PAUSED


def test_the_connection_page_lists_its_automatic_events_as_automatic(operator_client, sync, server, clock):
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)
    page = operator_client.get(reverse("connection-detail", args=[sync.pk])).content.decode()
    entries = page.split("<h2>Activity</h2>")[1]
    assert "automatically paused the sync" in entries
    assert "Airbnb answered 404: the calendar link no longer exists." in entries
    assert "someone" not in entries


def test_a_reopened_episode_is_a_plain_pause_not_a_check_that_failed(operator_client, sync, server, clock, members, mailoutbox):
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)
    send_pause_notifications()
    with recorded_hand_over():
        connection_switch(connection=sync, enabled=True)
    answer(server, feeds.airbnb(*stays()))
    tasks_run_the_check(sync)  # works: ended by the operator's switch
    answer(server, b"gone", status=404, content_type="text/plain")
    run(sync)  # paused again before "Restored" went out: the same episode, reopened
    episode = PauseEpisode.objects.get(connection=sync)
    assert (episode.ended_at, episode.resume_requested_by, episode.resume_failed_at) == (None, "", None)
    answer(server, feeds.airbnb(*stays()))
    run(sync)  # a "Sync now" that works ends it: by the sync, not by a switch long ago
    assert PauseEpisode.objects.get(connection=sync).ended_by == "sync"
    assert [a for a in Activity.objects.filter(connection=sync, action="paused").values_list("params", flat=True)
            if a.get("again")] == []


def test_the_sync_history_says_when_stays_shared_a_uid_and_each_kept_its_nights(operator_client, sync, server, clock):
    today = timezone.localdate()
    first, second = (today + timedelta(days=3), today + timedelta(days=5)), (today + timedelta(days=9), today + timedelta(days=12))
    answer(server, feeds.airbnb(("same", *first), ("same", *second)))
    run(sync)
    assert sorted(Block.objects.filter(source=sync).values_list("start_date", flat=True)) == [first[0], second[0]]
    page = operator_client.get(reverse("connection-detail", args=[sync.pk])).content.decode()
    assert "2 events shared booking numbers (UIDs) with events on other nights: each kept its own nights." in page


def test_worst_first_orders_by_state_then_by_when_it_began():
    """The attention list's order: the worst state first; within one, the longest-standing first
    (when the state began: the pause, the failure, the held removals...); waiting ones by age."""
    from types import SimpleNamespace

    from syncs.sync_state import SyncStatus, worst_first

    def row(pk, **moments):
        fields = dict.fromkeys(("paused_at", "checking_since", "last_attempt_at", "held_since", "last_success_at"))
        return SimpleNamespace(id=pk, **(fields | moments))

    hour = timedelta(hours=1)
    statuses = [
        SyncStatus(row(1, last_success_at=NOW), SyncState.WORKING, None),
        SyncStatus(row(2, paused_at=NOW - hour), SyncState.PAUSED, None),
        SyncStatus(row(3, last_attempt_at=NOW - 3 * hour), SyncState.FAILING, None),
        SyncStatus(row(4, paused_at=NOW - 2 * hour), SyncState.PAUSED, None),
        SyncStatus(row(5), SyncState.WAITING, None),
        SyncStatus(row(6, held_since=NOW - hour), SyncState.HELD, None),
        SyncStatus(row(7), SyncState.SWITCHED_OFF, None),
        SyncStatus(row(8, last_success_at=NOW - 5 * hour), SyncState.STALE, None),
        SyncStatus(row(9, last_success_at=NOW - 9 * hour), SyncState.STALE, None),
    ]
    assert [s.connection.id for s in worst_first(statuses)] == [4, 2, 3, 6, 9, 8, 5, 7, 1]
    assert statuses[1].since == NOW - hour and statuses[6].since is None
