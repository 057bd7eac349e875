"""/metrics: Prometheus text, parsed by prometheus_client's own parser; a token or nothing."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from syncs.metrics import task_finished, task_started
from syncs.models import Connection
from syncs.sync_requests import connection_request_sync
from syncs.sync_state import TILES
from tests.factories import ConnectionFactory, MembershipFactory, PropertyFactory

pytestmark = pytest.mark.django_db


def scrape(client, token="s3cret") -> dict:
    response = client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def test_metrics_are_a_404_without_a_configured_token_and_a_401_without_the_right_one(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer anything").status_code == 404
    settings.METRICS_TOKEN = "s3cret"
    assert client.get(reverse("metrics")).status_code == 401
    assert client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_metrics_count_syncs_by_state_as_the_overview_does(client, settings):
    settings.METRICS_TOKEN = "s3cret"
    prop = PropertyFactory(account=MembershipFactory().account)
    ConnectionFactory(property=prop, paused_at=timezone.now(), pause_reason="timeout")
    ConnectionFactory(property=prop, enabled=False)
    asked = ConnectionFactory(property=prop)
    connection_request_sync(connection=asked, user=None)
    families = scrape(client)
    by_state = {sample.labels["state"]: sample.value for sample in families["channelmgr_syncs"].samples}
    assert set(by_state) == {state.value for state in TILES}
    assert by_state["paused"] == 1 and by_state["switched_off"] == 1
    assert sum(by_state.values()) == Connection.objects.count()
    assert families["channelmgr_sync_requests_waiting"].samples[0].value == 1
    assert families["channelmgr_jobs_waiting"].samples[0].value == 1
    assert "channelmgr_broker_up" in families


def test_sync_runs_and_durations_from_the_worker_are_exposed(client, settings):
    settings.METRICS_TOKEN = "s3cret"
    before = scrape(client)

    def runs(families, outcome):
        family = families.get("channelmgr_sync_runs")
        samples = family.samples if family else []
        return sum(s.value for s in samples if s.name == "channelmgr_sync_runs_total" and s.labels.get("outcome") == outcome)

    task_started("t1")
    task_finished("t1", "ok_unchanged")
    after = scrape(client)
    assert runs(after, "ok_unchanged") == runs(before, "ok_unchanged") + 1
    histogram = after["channelmgr_sync_duration_seconds"]
    assert any(s.name == "channelmgr_sync_duration_seconds_bucket" for s in histogram.samples)
