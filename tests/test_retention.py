from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from syncs.models import (
    Block,
    ExportReadDay,
    ExportToken,
    PauseEpisode,
    SyncRun,
    Webhook,
    WebhookDelivery,
)
from tests.factories import BlockFactory, ConnectionFactory, SyncRunFactory

pytestmark = pytest.mark.django_db


def test_prune_forgets_old_history_but_keeps_what_pages_and_the_checklist_need():
    now = timezone.now()
    old = now - timedelta(days=200)
    working = ConnectionFactory()
    old_runs = [SyncRunFactory(connection=working, started_at=old + timedelta(hours=i)) for i in range(3)]
    recent = SyncRunFactory(connection=working, started_at=now - timedelta(days=1))
    lonely = ConnectionFactory()
    only_run = SyncRunFactory(connection=lonely, started_at=old)  # its latest: kept
    paused = ConnectionFactory(paused_at=now - timedelta(days=150))
    PauseEpisode.objects.create(connection=paused, started_at=now - timedelta(days=150), reason="http_4xx")
    before_pause = SyncRunFactory(connection=paused, started_at=now - timedelta(days=160))
    during_pause = SyncRunFactory(connection=paused, started_at=now - timedelta(days=140))
    SyncRunFactory(connection=paused, started_at=now - timedelta(days=120))
    removed = BlockFactory(removed_at=old)
    current = BlockFactory()
    token = ExportToken.objects.filter(connection=working).get()
    ExportReadDay.objects.create(token=token, day=old.date(), reader="airbnb", count=3)
    ExportReadDay.objects.create(token=token, day=now.date(), reader="airbnb", count=1)
    token.expires_at = old
    token.save()

    out = StringIO()
    call_command("prune", "--days", "90", stdout=out)

    assert "sync runs 4, removed blocks 1, export read counts 1, expired export URLs 1," in out.getvalue()
    assert not ExportToken.objects.filter(pk=token.pk).exists()  # its read counts went with it
    remaining = set(SyncRun.objects.values_list("pk", flat=True))
    assert not remaining & {r.pk for r in old_runs}
    assert {recent.pk, only_run.pk, during_pause.pk} <= remaining
    assert before_pause.pk not in remaining
    assert not Block.objects.filter(pk=removed.pk).exists()
    assert Block.objects.filter(pk=current.pk).exists()


def test_prune_forgets_webhook_deliveries_that_ended_long_ago_and_keeps_the_rest():
    now = timezone.now()
    hook = Webhook.objects.create(account=ConnectionFactory().property.account, url="https://hooks.example.com/x",
                                  events=["paused"], secret_nonce="n")
    ended_long_ago = WebhookDelivery.objects.create(webhook=hook, event="paused", status="delivered",
                                                    created_at=now - timedelta(days=200), finished_at=now - timedelta(days=200))
    ended_lately = WebhookDelivery.objects.create(webhook=hook, event="paused", status="failed", finished_at=now - timedelta(days=3))
    still_sending = WebhookDelivery.objects.create(webhook=hook, event="paused", created_at=now - timedelta(days=200))
    out = StringIO()
    call_command("prune", "--days", "90", stdout=out)
    assert "webhook deliveries 1." in out.getvalue()
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {ended_lately.pk, still_sending.pk}
    assert not WebhookDelivery.objects.filter(pk=ended_long_ago.pk).exists()
