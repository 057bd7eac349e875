"""Webhooks against a real HTTP server on 127.0.0.1: delivery, signature, retry after a 500,
a private address refused in production settings, and events that are no longer true dropped."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from django.utils import timezone

from syncs.fetch import close_kept_connections
from syncs.models import Activity, PauseEpisode, Webhook, WebhookDelivery
from syncs.notifications import pause_notifications_send
from syncs.webhooks import (
    SIGNATURE_HEADER,
    scan_double_bookings,
    signature_valid,
    webhook_create,
    webhook_deliver,
    webhook_send_test,
)
from tests.factories import (
    BlockFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    portal,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return MembershipFactory()


@pytest.fixture
def receiver(httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    yield httpserver
    close_kept_connections()


def hook(owner, url, events=("paused", "restored", "reminder", "double_booking", "not_reading"), slack_text=True):
    return webhook_create(user=owner.user, account=owner.account, url=url, events=list(events), slack_text=slack_text)


def received(httpserver):
    return [(request, json.loads(request.get_data())) for request, _response in httpserver.log]


def test_a_pause_is_delivered_signed_with_the_secret_shown_once_and_a_slack_text(owner, receiver, mailoutbox):
    _webhook, secret = hook(owner, receiver.url_for("/hook"))
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    connection = ConnectionFactory(
        property=PropertyFactory(account=owner.account, name="Casa Azul"), paused_at=timezone.now(),
        pause_reason="http_4xx", pause_params={"status": 404},
    )
    PauseEpisode.objects.create(connection=connection, reason="http_4xx", params={"status": 404})
    pause_notifications_send()
    delivery = WebhookDelivery.objects.get()
    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"
    [(request, body)] = received(receiver)
    assert body["event"] == "paused" and body["property"] == "Casa Azul" and body["portal"] == "Airbnb"
    assert "Airbnb answered 404" in body["text"]
    assert signature_valid(secret=secret, body=request.get_data(), header=request.headers[SIGNATURE_HEADER])
    assert not signature_valid(secret=secret + "x", body=request.get_data(), header=request.headers[SIGNATURE_HEADER])
    assert connection.import_url not in request.get_data().decode()  # no secret link leaves
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.log[-1]["status"] == 200
    assert len(mailoutbox) == 1  # the email too


def test_a_delivery_answered_500_is_retried_and_then_delivered(owner, receiver):
    webhook, _secret = hook(owner, receiver.url_for("/hook"))
    receiver.expect_ordered_request("/hook", method="POST").respond_with_data("boom", status=500)
    receiver.expect_ordered_request("/hook", method="POST").respond_with_data("ok", status=204)
    delivery = webhook_send_test(webhook=webhook)
    assert webhook_deliver(delivery_id=delivery.pk) == "pending"
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.log[0]["status"] == 500 and delivery.next_attempt_at > timezone.now()
    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"
    delivery.refresh_from_db()
    assert [entry["status"] for entry in delivery.log] == [500, 204]
    assert len(receiver.log) == 2


def test_a_delivery_that_keeps_failing_stops_after_five_attempts(owner, receiver):
    webhook, _secret = hook(owner, receiver.url_for("/hook"))
    receiver.expect_request("/hook", method="POST").respond_with_data("boom", status=503)
    delivery = webhook_send_test(webhook=webhook)
    statuses = [webhook_deliver(delivery_id=delivery.pk) for _ in range(6)]
    assert statuses == ["pending"] * 4 + ["failed", "failed"]
    assert len(receiver.log) == 5


def test_a_private_address_is_refused_in_production_settings(owner, client, settings, httpserver):
    settings.FETCH_ALLOW_LOOPBACK = False
    client.force_login(owner.user)
    for url in ("http://127.0.0.1/hook", "https://10.0.0.5/hook", "http://192.168.1.1/hook", "http://[::1]/hook"):
        response = client.post(reverse("webhooks"), {"url": url, "events": ["paused"]})
        assert response.status_code == 200
        assert "private or local network address" in response.content.decode()
    response = client.post(reverse("webhooks"), {"url": httpserver.url_for("/hook"), "events": ["paused"]})
    assert "field-error" in response.content.decode()
    assert not Webhook.objects.exists()
    # A webhook saved while allowed (or whose name now points inside) is refused at send time.
    for url, error in ((httpserver.url_for("/hook"), "invalid_url"), ("http://127.0.0.1/hook", "blocked_address")):
        webhook = Webhook.objects.create(account=owner.account, url=url, events=["paused"], secret_nonce="n")
        delivery = webhook_send_test(webhook=webhook)
        assert webhook_deliver(delivery_id=delivery.pk) == "failed"  # at once: retrying cannot help
        delivery.refresh_from_db()
        assert delivery.log[-1]["error"] == error
    assert len(httpserver.log) == 0


def test_a_pause_over_before_its_delivery_is_dropped_not_sent_late(owner, receiver):
    hook(owner, receiver.url_for("/hook"))
    connection = ConnectionFactory(property=PropertyFactory(account=owner.account), paused_at=timezone.now(), pause_reason="timeout")
    PauseEpisode.objects.create(connection=connection, reason="timeout")
    pause_notifications_send()
    connection.paused_at = None
    connection.save()
    delivery = WebhookDelivery.objects.get()
    assert webhook_deliver(delivery_id=delivery.pk) == "dropped"
    assert len(receiver.log) == 0


def test_a_double_booking_is_told_once_and_again_when_a_stay_changes(owner, receiver):
    hook(owner, receiver.url_for("/hook"), events=["double_booking"])
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    prop = PropertyFactory(account=owner.account, name="Beach Loft")
    airbnb = ConnectionFactory(property=prop)
    vrbo = ConnectionFactory(property=prop, portal=portal("vrbo"))
    BlockFactory(property=prop, source=airbnb, kind="reserved")
    moving = BlockFactory(property=prop, source=vrbo, kind="reserved")
    assert scan_double_bookings(now=timezone.now()) == 1
    assert scan_double_bookings(now=timezone.now()) == 0
    moving.end_date += timezone.timedelta(days=1)
    moving.save()
    assert scan_double_bookings(now=timezone.now()) == 1
    for delivery in WebhookDelivery.objects.all():
        webhook_deliver(delivery_id=delivery.pk)
    bodies = [body for _request, body in received(receiver)]
    assert [b["event"] for b in bodies] == ["double_booking", "double_booking"]
    assert "Beach Loft" in bodies[0]["text"]


def test_owners_add_a_webhook_see_its_secret_once_and_send_a_test(owner, client, receiver):
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    client.force_login(owner.user)
    page = client.post(reverse("webhooks"), {"url": receiver.url_for("/hook"), "events": ["paused", "restored"], "slack_text": "on"})
    webhook = Webhook.objects.get()
    from syncs.webhooks import webhook_secret

    assert webhook_secret(webhook) in page.content.decode()
    assert webhook_secret(webhook) not in client.get(reverse("webhooks")).content.decode()
    assert Activity.objects.filter(action="webhook_added").exists()
    client.post(reverse("webhook-test", args=[webhook.pk]))
    delivery = WebhookDelivery.objects.get(test=True)
    webhook_deliver(delivery_id=delivery.pk)
    page = client.get(reverse("webhooks")).content.decode()
    assert "Delivered" in page
