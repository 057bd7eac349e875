"""The operator's emails about paused syncs, as the operator receives them: the real sync engine
fails against a portal played on 127.0.0.1, the notification task runs as beat would run it, and
the assertions read the outbox."""

from __future__ import annotations

import logging
import smtplib
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.mail.backends import locmem
from django.db import connection as db_connection
from django.utils import timezone

from syncs import notifications
from syncs.connection_state import connection_switch
from syncs.engine.task import connection_sync_leased
from syncs.export_tokens import export_token_ensure, token_from_nonce
from syncs.models import Account, Connection, PauseEpisode, SyncRun
from syncs.notifications import send_pause_notifications
from syncs.probing import connection_probe
from tests import feeds
from tests.factories import (
    AccountFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    portal,
)
from tests.helpers import FEED_PATH, answer

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)  # 09:00 in São Paulo (UTC-3 all year)
URL_SECRET = "s=8f3kq0c7e1secret"
SITE_URL = "https://app.example.com"


@pytest.fixture
def airbnb_server(httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    settings.SITE_URL = SITE_URL
    return httpserver


@pytest.fixture
def account():
    return AccountFactory(name="Sol Rentals")


@pytest.fixture
def members(account) -> list[str]:
    """Two members who get the emails, and three people who must not."""
    told = ["ana@example.com", "rui@example.com"]
    for email in told:
        MembershipFactory(account=account, user__email=email)
    MembershipFactory(account=account, user__email="")
    MembershipFactory(account=account, user__email="left@example.com", user__is_active=False)
    MembershipFactory(user__email="stranger@example.com")
    return told


@pytest.fixture
def connection(airbnb_server, account):
    prop = PropertyFactory(account=account, name="Casa Azul", timezone="America/Sao_Paulo")
    return ConnectionFactory(
        property=prop, portal=portal("airbnb"), import_url=f"{airbnb_server.url_for(FEED_PATH)}?{URL_SECRET}"
    )


def sync_now(connection: Connection) -> SyncRun | None:
    return connection_sync_leased(connection_id=connection.pk, trigger=SyncRun.Trigger.MANUAL)


def parts(email) -> tuple[str, str]:
    (html, mimetype), = email.alternatives
    assert mimetype == "text/html"
    return email.body, html


def episode_of(connection: Connection) -> PauseEpisode:
    return PauseEpisode.objects.get(connection=connection)


def assert_no_secrets(connection: Connection, *texts: str) -> None:
    export_token = token_from_nonce(export_token_ensure(property=connection.property, connection=connection).nonce)
    for text in texts:
        for secret in (connection.import_url, URL_SECRET, FEED_PATH, "/ical/", export_token):
            assert secret not in text


def test_a_sync_failing_50_times_sends_one_pause_email_to_every_member(
    clock, airbnb_server, connection, members, mailoutbox
):
    answer(airbnb_server, b"oops", status=500, content_type="text/plain")
    for _ in range(50):
        assert sync_now(connection).outcome == "http_5xx"
        send_pause_notifications()
    assert len(mailoutbox) == 1
    email = mailoutbox[0]
    assert sorted(email.to) == sorted(members)
    assert email.subject == "Paused: Airbnb sync of Casa Azul"
    assert email.extra_headers["Auto-Submitted"] == "auto-generated"
    link = f"{SITE_URL}/connections/{connection.pk}/fix/"
    text, html = parts(email)
    for body in (text, html):
        assert (
            "We paused the Airbnb calendar sync of Casa Azul on Jan. 10, 2027 at 9 a.m. (America/Sao_Paulo time)."
        ) in body
        assert "Airbnb had an error of its own (HTTP 500)." in body
        assert "New Airbnb bookings are not reaching us" in body
        assert "Nights taken on your other portals still reach Airbnb" in body
    assert f"\n{link}\n" in text
    assert f'href="{link}"' in html
    assert_no_secrets(connection, email.subject, text, html)


def test_a_permanent_failure_pauses_at_once_and_sends_one_email(
    clock, airbnb_server, connection, members, mailoutbox
):
    Connection.objects.filter(pk=connection.pk).update(direction=Connection.Direction.IMPORT_ONLY)
    answer(airbnb_server, b"Not Found", status=404, content_type="text/plain")
    sync_now(connection)
    assert send_pause_notifications() == 1
    assert send_pause_notifications() == 0
    (email,) = mailoutbox
    text, html = parts(email)
    for body in (text, html):
        assert "Airbnb answered 404: the calendar link no longer exists." in body
        assert "New Airbnb bookings are not reaching us" in body
        # An import-only sync sends nothing to Airbnb: nothing to say about that direction.
        assert "still reach" not in body
    assert_no_secrets(connection, text, html)


def test_a_reminder_comes_a_day_after_the_email_then_daily(clock, airbnb_server, connection, members, mailoutbox):
    answer(airbnb_server, b"Not Found", status=404, content_type="text/plain")
    sync_now(connection)
    send_pause_notifications()
    clock.shift(timedelta(hours=23, minutes=59))
    assert send_pause_notifications() == 0
    clock.shift(timedelta(minutes=2))
    assert send_pause_notifications() == 1
    reminder = mailoutbox[1]
    assert reminder.subject == "Still paused: Airbnb sync of Casa Azul"
    text, html = parts(reminder)
    for body in (text, html):
        assert "is still paused, since Jan. 10, 2027 at 9 a.m. (America/Sao_Paulo time): 1\xa0day now." in body
        assert "Airbnb answered 404" in body
    assert send_pause_notifications() == 0
    clock.shift(timedelta(hours=23, minutes=58))
    assert send_pause_notifications() == 0
    clock.shift(timedelta(minutes=2))
    assert send_pause_notifications() == 1
    assert [m.subject.split(":")[0] for m in mailoutbox] == ["Paused", "Still paused", "Still paused"]


def test_a_reminder_says_when_the_background_check_finds_the_feed_working_again(
    clock, airbnb_server, connection, members, mailoutbox
):
    answer(airbnb_server, b"Not Found", status=404, content_type="text/plain")
    sync_now(connection)
    send_pause_notifications()
    assert "Good news" not in mailoutbox[0].body
    clock.shift(timedelta(hours=20))
    answer(airbnb_server, feeds.airbnb())
    assert connection_probe(connection=Connection.objects.get(pk=connection.pk))
    clock.shift(timedelta(hours=5))
    assert send_pause_notifications() == 1
    text, html = parts(mailoutbox[1])
    for body in (text, html):
        assert "Good news: our background check reads the Airbnb calendar again since Jan. 11, 2027 at 5 a.m." in body


def test_no_reminder_while_the_operator_keeps_the_sync_switched_off(
    clock, airbnb_server, connection, members, mailoutbox
):
    answer(airbnb_server, b"Not Found", status=404, content_type="text/plain")
    sync_now(connection)
    send_pause_notifications()
    connection_switch(connection=connection, enabled=False)
    clock.shift(timedelta(days=3))
    assert send_pause_notifications() == 0
    assert len(mailoutbox) == 1


def test_a_sync_that_works_again_sends_one_restored_email(clock, airbnb_server, connection, members, mailoutbox):
    answer(airbnb_server, b"Not Found", status=404, content_type="text/plain")
    sync_now(connection)
    send_pause_notifications()
    clock.shift(timedelta(hours=2))
    today = timezone.localdate()
    answer(airbnb_server, feeds.airbnb(("a", today + timedelta(days=3), today + timedelta(days=6))))
    assert sync_now(connection).outcome == "ok_changed"
    assert send_pause_notifications() == 0  # not before it has kept working a while
    clock.shift(notifications.RESTORE_SETTLE)
    assert send_pause_notifications() == 1
    assert send_pause_notifications() == 0
    clock.shift(timedelta(days=2))
    assert send_pause_notifications() == 0
    assert len(mailoutbox) == 2
    restored = mailoutbox[1]
    assert restored.subject == "Restored: Airbnb sync of Casa Azul"
    assert sorted(restored.to) == sorted(members)
    text, html = parts(restored)
    for body in (text, html):
        assert (
            "is running again since Jan. 10, 2027 at 11 a.m. (America/Sao_Paulo time), after 2\xa0hours paused."
        ) in body
        assert "A sync worked again" in body
        assert "check that every taken night is closed on both sides" in body
        assert f"{SITE_URL}/connections/{connection.pk}/" in body
    # Guest details of the feed that worked never reach the email.
    assert_no_secrets(connection, text, html)
    for guest_detail in ("0882", "HMYXB825YD", "Reserved"):
        assert guest_detail not in text + html


def test_switching_a_paused_sync_back_on_sends_a_restored_email_only_once_a_sync_worked(
    clock, airbnb_server, connection, members, mailoutbox
):
    answer(airbnb_server, b"Not Found", status=404, content_type="text/plain")
    sync_now(connection)
    send_pause_notifications()
    connection_switch(connection=connection, enabled=True)
    clock.shift(timedelta(hours=1))
    assert send_pause_notifications() == 0  # switched on, not yet checked: nothing is restored
    answer(airbnb_server, feeds.airbnb())
    sync_now(connection)  # the check the switch asked for
    clock.shift(notifications.RESTORE_SETTLE)
    assert send_pause_notifications() == 1
    assert [m.subject.split(":")[0] for m in mailoutbox] == ["Paused", "Restored"]
    text, html = parts(mailoutbox[1])
    for body in (text, html):
        assert "It was switched back on, and the sync that followed read Airbnb's calendar without error." in body
        assert "A sync worked again" not in body


def test_a_pause_that_ends_before_its_email_goes_out_sends_nothing(
    clock, airbnb_server, connection, members, mailoutbox
):
    answer(airbnb_server, b"Not Found", status=404, content_type="text/plain")
    sync_now(connection)
    answer(airbnb_server, feeds.airbnb())
    sync_now(connection)
    assert send_pause_notifications() == 0
    clock.shift(timedelta(days=2))
    assert send_pause_notifications() == 0
    assert mailoutbox == []
    episode = episode_of(connection)
    assert episode.notified_at is not None and episode.restored_notified_at is not None
    # The next pause is a new episode, and is told.
    answer(airbnb_server, b"Not Found", status=404, content_type="text/plain")
    sync_now(connection)
    assert send_pause_notifications() == 1


def test_a_run_that_read_the_episodes_before_another_run_sent_the_email_does_not_send_it_again(
    clock, airbnb_server, connection, members, mailoutbox, monkeypatch
):
    answer(airbnb_server, b"Not Found", status=404, content_type="text/plain")
    sync_now(connection)
    read_before = list(PauseEpisode.objects.select_related("connection__property__account", "connection__portal"))
    assert send_pause_notifications() == 1
    # A slower run still holds what it read before the first one sent: its claim must fail.
    monkeypatch.setattr(notifications, "_episodes", lambda condition: read_before)
    assert send_pause_notifications() == 0
    assert len(mailoutbox) == 1


@pytest.fixture
def failing_backend(monkeypatch):
    """The email backend raises for the next ``failures[0]`` sends, as an SMTP server going away would."""
    failures = [0]
    real_send = locmem.EmailBackend.send_messages

    def send_messages(self, messages):
        if failures[0]:
            failures[0] -= 1
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return real_send(self, messages)

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", send_messages)
    return failures


def test_a_send_that_fails_marks_nothing_raises_nothing_and_is_retried(
    clock, airbnb_server, connection, members, mailoutbox, failing_backend, caplog
):
    answer(airbnb_server, b"Not Found", status=404, content_type="text/plain")
    sync_now(connection)
    failing_backend[0] = 1
    with caplog.at_level(logging.INFO, logger="syncs.notifications"):
        assert send_pause_notifications() == 0
    assert mailoutbox == []
    assert episode_of(connection).notified_at is None
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "syncs.notifications")
    assert "pause email failed" in logged and "SMTPServerDisconnected" in logged
    assert_no_secrets(connection, logged)
    assert "127.0.0.1" not in logged
    assert send_pause_notifications() == 1
    assert mailoutbox[0].subject == "Paused: Airbnb sync of Casa Azul"


def test_a_reminder_that_fails_is_retried_and_keeps_its_daily_rhythm(
    clock, airbnb_server, connection, members, mailoutbox, failing_backend
):
    answer(airbnb_server, b"Not Found", status=404, content_type="text/plain")
    sync_now(connection)
    send_pause_notifications()
    for _ in range(2):  # the first reminder (none sent before), then the second
        clock.shift(timedelta(hours=24, minutes=1))
        before = episode_of(connection).reminded_at
        failing_backend[0] = 1
        assert send_pause_notifications() == 0
        assert episode_of(connection).reminded_at == before
        assert send_pause_notifications() == 1
    assert [m.subject.split(":")[0] for m in mailoutbox] == ["Paused", "Still paused", "Still paused"]


def test_a_restored_email_that_fails_is_retried(clock, airbnb_server, connection, members, mailoutbox, failing_backend):
    answer(airbnb_server, b"Not Found", status=404, content_type="text/plain")
    sync_now(connection)
    send_pause_notifications()
    connection_switch(connection=connection, enabled=True)
    answer(airbnb_server, feeds.airbnb())
    sync_now(connection)
    clock.shift(notifications.RESTORE_SETTLE)
    failing_backend[0] = 1
    assert send_pause_notifications() == 0
    assert episode_of(connection).restored_notified_at is None
    assert send_pause_notifications() == 1
    assert send_pause_notifications() == 0
    assert [m.subject.split(":")[0] for m in mailoutbox] == ["Paused", "Restored"]


def test_an_account_with_no_email_to_write_to_is_logged_once_and_not_retried(
    clock, airbnb_server, connection, account, mailoutbox, caplog
):
    MembershipFactory(account=account, user__email="")
    answer(airbnb_server, b"Not Found", status=404, content_type="text/plain")
    sync_now(connection)
    with caplog.at_level(logging.WARNING, logger="syncs.notifications"):
        assert send_pause_notifications() == 0
        assert send_pause_notifications() == 0
    assert mailoutbox == []
    assert episode_of(connection).notified_at is not None
    assert caplog.text.count("reason=no_recipients") == 1


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_runs_at_once_send_the_pause_email_once(postgres, monkeypatch, mailoutbox):
    account = AccountFactory()
    MembershipFactory(account=account)
    connection = ConnectionFactory(
        property=PropertyFactory(account=account), paused_at=timezone.now(), pause_reason="http_4xx",
        pause_params={"status": 404},
    )
    PauseEpisode.objects.create(connection=connection, reason="http_4xx", params={"status": 404})
    barrier = threading.Barrier(2)
    real_episodes = notifications._episodes

    def episodes_then_wait(condition):
        found = real_episodes(condition)
        barrier.wait(timeout=10)  # both runs have seen the email as owed before either claims it
        return found

    monkeypatch.setattr(notifications, "_episodes", episodes_then_wait)
    results = []

    def run():
        try:
            results.append(send_pause_notifications())
        finally:
            db_connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 1]
    assert len(mailoutbox) == 1


def test_an_automatic_resume_says_the_background_check_did_it(settings, httpserver, operator, mailoutbox):
    from datetime import timedelta

    from django.utils import timezone

    from syncs.engine.task import connection_sync_leased
    from syncs.notifications import send_pause_notifications
    from syncs.probing import probe_paused_connections
    from tests import feeds
    from tests.factories import ConnectionFactory, PropertyFactory

    settings.FETCH_ALLOW_LOOPBACK = True
    account = Account.of_user(operator)
    account.auto_resume = True
    account.save()
    httpserver.expect_request("/c.ics").respond_with_data(b"gone", status=404)
    connection = ConnectionFactory(property=PropertyFactory(account=account), import_url=httpserver.url_for("/c.ics"))
    connection_sync_leased(connection_id=connection.pk)
    send_pause_notifications()
    today = timezone.localdate()
    httpserver.clear_all_handlers()
    httpserver.expect_request("/c.ics").respond_with_data(feeds.airbnb(("a", today + timedelta(days=2), today + timedelta(days=4))))
    probe_paused_connections()
    send_pause_notifications()
    assert [m.subject.split(":")[0] for m in mailoutbox] == ["Paused"]  # switched on, checking: not yet
    connection.refresh_from_db()
    assert connection.checking_since is not None and connection.sync_requested_at is not None
    connection_sync_leased(connection_id=connection.pk, trigger="manual")  # the worker runs the check
    with time_machine.travel(timezone.now() + notifications.RESTORE_SETTLE, tick=False):
        send_pause_notifications()
    assert [m.subject.split(":")[0] for m in mailoutbox] == ["Paused", "Restored"]
    assert "Our background check read Airbnb's calendar again" in mailoutbox[1].body
