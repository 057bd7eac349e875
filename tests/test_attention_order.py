"""The overview's attention list ordered and cut by the database: the same syncs, in the same
order, as ``worst_first`` over every troubled sync, whatever the limit (worst state first, then
the longest-standing, a portal not reading our calendar by its last read, waiting ones by id)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from syncs.export_tokens import new_token_fields
from syncs.models import Connection, ExportToken
from syncs.sync_state import state_record, states_with_attention, statuses_of, worst_first
from tests.factories import ConnectionFactory, PropertyFactory

pytestmark = pytest.mark.django_db


def test_the_attention_list_is_worst_first_and_its_first_rows_are_the_worst(django_assert_num_queries):
    now = timezone.now()
    hour = timedelta(hours=1)
    prop = PropertyFactory()
    fresh = {"last_success_at": now - timedelta(minutes=5)}
    kinds = [
        {"paused_at": now - 2 * hour, "pause_reason": "http_404"}, {"paused_at": now - 5 * hour, "pause_reason": "http_404"},
        {**fresh, "consecutive_failures": 3, "last_attempt_at": now - hour},
        {**fresh, "held_removals": 4, "held_since": now - 3 * hour}, {**fresh, "held_removals": 2, "held_since": now - hour},
        {"last_success_at": now - 30 * hour}, {"last_success_at": now - 9 * hour},
        {}, {},  # waiting for their first sync
        {**fresh, "enabled": False}, fresh,
    ]
    for fields in kinds:
        ConnectionFactory(property=prop, direction="import_only", **fields)
    # Portals not reading our calendar: one read long ago, one read longer ago, one never read.
    for read in (now - 60 * hour, now - 90 * hour, None):
        sync = ConnectionFactory(property=prop, **fresh)
        if not ExportToken.objects.filter(connection=sync).exists():
            ExportToken.objects.create(property=prop, connection=sync, **new_token_fields())
        ExportToken.objects.filter(connection=sync).update(last_read_at=read, created_at=now - 100 * hour)
    state_record(Connection.objects.values_list("pk", flat=True), now=now)
    syncs = Connection.objects.filter(property=prop)
    every = worst_first(
        status for status in statuses_of(syncs, tokens=ExportToken.objects.filter(property=prop), now=now)
        if status.needs_attention
    )
    assert {status.state.value for status in every} >= {"paused", "failing", "held", "stale", "waiting", "not_reading"}
    for limit in (None, 1, 4, 7, len(every) + 3):
        with django_assert_num_queries(5):
            counts, attention = states_with_attention(syncs, now=now, limit=limit)
        assert [s.connection.id for s in attention] == [s.connection.id for s in every[:limit]]
        assert sum(counts.values()) == len(kinds) + 3
