from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from syncs.engine.task import connection_sync_leased
from syncs.models import Account, Activity, Block, PauseEpisode
from syncs.probing import probe_paused_connections
from syncs.sync_state import SyncState
from tests import feeds
from tests.factories import ConnectionFactory, PropertyFactory
from tests.states import sync_state_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def paused(httpserver, settings, operator):
    settings.FETCH_ALLOW_LOOPBACK = True
    httpserver.expect_request("/c.ics").respond_with_data(b"gone", status=404)
    connection = ConnectionFactory(property=PropertyFactory(account=Account.of_user(operator)),
                                   import_url=httpserver.url_for("/c.ics"))
    connection_sync_leased(connection_id=connection.pk)
    connection.refresh_from_db()
    assert connection.paused_at is not None
    return connection


def test_a_paused_feed_is_checked_quietly_with_back_off(paused):
    now = timezone.now()
    assert probe_paused_connections(now=now).probed == 1
    paused.refresh_from_db()
    assert (paused.probe_failures, paused.ready_to_resume_at) == (1, None)
    assert paused.probe_next_at == now + timedelta(minutes=5)
    assert probe_paused_connections(now=now + timedelta(minutes=1)).probed == 0  # not due yet
    probe_paused_connections(now=now + timedelta(minutes=6))
    paused.refresh_from_db()
    assert paused.probe_next_at == now + timedelta(minutes=6) + timedelta(minutes=10)


def test_a_feed_that_works_again_is_ready_to_resume_but_stays_paused(paused, httpserver, operator_client):
    today = timezone.localdate()
    httpserver.clear_all_handlers()
    httpserver.expect_request("/c.ics").respond_with_data(feeds.airbnb(("a", today + timedelta(days=2), today + timedelta(days=4))))
    probe_paused_connections()
    paused.refresh_from_db()
    assert paused.ready_to_resume_at is not None
    assert paused.paused_at is not None
    assert not Block.objects.exists()  # the probe writes no blocks
    assert "ready to resume" in operator_client.get(reverse("home")).content.decode()


def test_an_account_that_asks_for_it_resumes_by_itself(paused, httpserver):
    paused.property.account.auto_resume = True
    paused.property.account.save()
    today = timezone.localdate()
    httpserver.clear_all_handlers()
    httpserver.expect_request("/c.ics").respond_with_data(feeds.airbnb(("a", today + timedelta(days=2), today + timedelta(days=4))))
    probe_paused_connections()
    paused.refresh_from_db()
    # Switched back on as the operator would: checked at once by a real sync, which ends the pause.
    assert sync_state_of(paused) == SyncState.CHECKING
    assert paused.sync_requested_at is not None and paused.ready_to_resume_at is None
    connection_sync_leased(connection_id=paused.pk, trigger="manual")
    paused.refresh_from_db()
    assert sync_state_of(paused) == SyncState.WORKING
    assert PauseEpisode.objects.get(connection=paused).ended_by == "probe"
    assert Block.objects.filter(source=paused).count() == 1
    actions = list(Activity.objects.filter(connection=paused).order_by("created_at", "pk").values_list("action", "user"))
    assert actions == [("paused", None), ("switched_on", None), ("resumed", None)]
