"""Webhooks against a real HTTP server on 127.0.0.1: delivery, signature (checked as the README
tells a receiver to, never with our own code), retry after a 500, a private address refused in
production settings, events that are no longer true dropped, "Send a test" limited, and turns
taken fairly between accounts."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from syncs.engine.fetch import close_kept_connections
from syncs.models import Activity, PauseEpisode, Webhook, WebhookDelivery
from syncs.notifications import pause_notifications_send
from syncs.webhooks import (
    delivery_claim_next,
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

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_recipe(secret: str, headers, body: bytes) -> bool:
    """The README's recipe, written out here: HMAC-SHA256 under the whole secret of
    "<t>.<delivery>.<event>.<body>", in lowercase hex after "v2=", and t at most 5 minutes old."""
    fields = dict(part.split("=", 1) for part in headers["X-Channelmgr-Signature"].split(","))
    assert set(fields) == {"t", "v2"}  # version 2 only: no v1 any more
    signed = f"{fields['t']}.{headers['X-Channelmgr-Delivery']}.{headers['X-Channelmgr-Event']}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return fields["v2"] == expected and 0 <= time.time() - int(fields["t"]) <= 300


def readme_snippet():
    """The README's Python verification snippet, as a receiver would copy it."""
    code = re.search(r"```python\n(.*?def channelmgr_request_valid.*?)```", README.read_text(), re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    return scope["channelmgr_request_valid"]


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
    assert request.headers["X-Channelmgr-Event"] == "paused"
    assert request.headers["X-Channelmgr-Delivery"] == str(delivery.pk)
    assert readme_recipe(secret, request.headers, request.get_data())
    assert not readme_recipe(secret + "x", request.headers, request.get_data())
    assert readme_snippet()(secret, request.headers, request.get_data())
    assert connection.import_url not in request.get_data().decode()  # no secret link leaves
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.log[-1]["status"] == 200
    assert len(mailoutbox) == 1  # the email too


def paused_event(owner) -> WebhookDelivery:
    """A sync of the owner's account paused, and its "paused" delivery (to the first webhook)
    made by the notifier."""
    connection = ConnectionFactory(property=PropertyFactory(account=owner.account), paused_at=timezone.now(), pause_reason="timeout")
    PauseEpisode.objects.create(connection=connection, reason="timeout")
    pause_notifications_send()
    return WebhookDelivery.objects.filter(connection=connection).order_by("pk").first()


def test_a_delivery_answered_500_is_retried_and_then_delivered(owner, receiver):
    hook(owner, receiver.url_for("/hook"))
    receiver.expect_ordered_request("/hook", method="POST").respond_with_data("boom", status=500)
    receiver.expect_ordered_request("/hook", method="POST").respond_with_data("ok", status=204)
    delivery = paused_event(owner)
    assert webhook_deliver(delivery_id=delivery.pk) == "pending"
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.log[0]["status"] == 500 and delivery.next_attempt_at > timezone.now()
    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"
    delivery.refresh_from_db()
    assert [entry["status"] for entry in delivery.log] == [500, 204]
    assert len(receiver.log) == 2


def test_a_delivery_that_keeps_failing_stops_after_five_attempts(owner, receiver):
    hook(owner, receiver.url_for("/hook"))
    receiver.expect_request("/hook", method="POST").respond_with_data("boom", status=503)
    delivery = paused_event(owner)
    statuses = [webhook_deliver(delivery_id=delivery.pk) for _ in range(6)]
    assert statuses == ["pending"] * 4 + ["failed", "failed"]
    assert len(receiver.log) == 5


def test_a_test_is_tried_once(owner, receiver):
    webhook, _secret = hook(owner, receiver.url_for("/hook"))
    receiver.expect_request("/hook", method="POST").respond_with_data("boom", status=503)
    delivery = webhook_send_test(webhook=webhook)
    assert [webhook_deliver(delivery_id=delivery.pk) for _ in range(2)] == ["failed", "failed"]
    assert len(receiver.log) == 1


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


# --------------------------------------------------------------------------- the signature, as documented


def recipe_header(secret: str, *, t: int, delivery: str, event: str, body: bytes) -> str:
    """A signature header made as the README says, with hmac and hashlib alone."""
    mac = hmac.new(secret.encode(), f"{t}.{delivery}.{event}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v2={mac}"


def test_the_signature_covers_the_time_the_delivery_the_event_and_the_body(owner, receiver):
    webhook, secret = hook(owner, receiver.url_for("/hook"))
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    delivery = webhook_send_test(webhook=webhook)
    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"
    [(request, _body)] = received(receiver)
    headers, body = dict(request.headers), request.get_data()
    t = re.fullmatch(r"t=(\d+),v2=[0-9a-f]{64}", headers["X-Channelmgr-Signature"]).group(1)
    assert headers["X-Channelmgr-Signature"] == recipe_header(
        secret, t=int(t), delivery=str(delivery.pk), event="test", body=body
    )
    assert readme_recipe(secret, headers, body)
    # Change any of the four and the receiver refuses it.
    for name, value in (("X-Channelmgr-Delivery", str(delivery.pk + 1)), ("X-Channelmgr-Event", "paused")):
        assert not readme_recipe(secret, {**headers, name: value}, body)
        assert not readme_snippet()(secret, {**headers, name: value}, body)
    assert not readme_recipe(secret, headers, body.replace(b'"test": true', b'"test": false'))
    later = headers["X-Channelmgr-Signature"].replace(f"t={t}", f"t={int(t) + 1}")
    assert not readme_recipe(secret, {**headers, "X-Channelmgr-Signature": later}, body)


def test_the_receivers_helper_refuses_replays_and_times_to_come(owner):
    secret, body, now = "whsec_" + "ab" * 32, b'{"event": "paused"}', 1_900_000_000

    def valid(header, *, delivery="17", event="paused"):
        return signature_valid(secret=secret, body=body, header=header, delivery_id=delivery, event=event, now=now)

    def signed(t, **changes):
        return recipe_header(secret, t=t, **{"delivery": "17", "event": "paused", "body": body, **changes})

    assert valid(signed(now)) and valid(signed(now - 300)) and valid(signed(now + 60))
    assert not valid(signed(now - 301))  # a replay: older than the 5 minutes documented
    assert not valid(signed(now - 86_400))
    assert not valid(signed(now + 61))  # more than a minute ahead of our clock
    assert not valid(signed(now), delivery="18")
    assert not valid(signed(now), event="restored")
    assert not valid(signed(now, body=b"{}"))
    assert not valid(signed(now).replace("v2=", "v1="))  # a version we do not sign with
    assert not valid(f"t={now},t={now - 1000}," + signed(now).split(",")[1])
    assert not valid(signed(now).replace(f"t={now}", "t=" + "\uff11" * 10))  # digits, but not ASCII ones
    assert not valid("") and not valid("t=,v2=")


def test_the_readmes_snippet_refuses_a_replay_as_documented(owner, receiver):
    _webhook, secret = hook(owner, receiver.url_for("/hook"))
    body, delivery = b'{"event": "test"}', "5"
    check = readme_snippet()
    for age, accepted in ((0, True), (299, True), (301, False), (-59, True), (-61, False)):
        t = int(time.time()) - age
        headers = {"X-Channelmgr-Signature": recipe_header(secret, t=t, delivery=delivery, event="test", body=body),
                   "X-Channelmgr-Delivery": delivery, "X-Channelmgr-Event": "test"}
        assert check(secret, headers, body) is accepted, age


# --------------------------------------------------------------------------- "send a test", limited


def test_send_a_test_is_one_at_a_time_and_at_most_ten_a_minute(owner, client, receiver, clock):
    receiver.expect_request("/hook", method="POST").respond_with_data("ok")
    webhook, _secret = hook(owner, receiver.url_for("/hook"))
    client.force_login(owner.user)
    page = client.get(reverse("webhooks")).content.decode()
    assert "A test is tried once. One test at a time, at most 10 a minute." in page
    press = lambda: client.post(reverse("webhook-test", args=[webhook.pk]), follow=True).content.decode()  # noqa: E731

    assert "Test sent" in press()
    assert "A test is already on its way to this webhook" in press()  # the first is not answered yet
    assert WebhookDelivery.objects.filter(test=True).count() == 1
    for _ in range(9):
        webhook_deliver(delivery_id=WebhookDelivery.objects.get(test=True, status="pending").pk)
        assert "Test sent" in press()
    webhook_deliver(delivery_id=WebhookDelivery.objects.get(test=True, status="pending").pk)
    assert "At most 10 tests a minute for each webhook: try again in a minute." in press()
    assert WebhookDelivery.objects.filter(test=True).count() == 10
    clock.shift(timedelta(seconds=61))
    assert "Test sent" in press()
    assert WebhookDelivery.objects.filter(test=True).count() == 11
    # Another webhook has its own limit.
    other, _secret = hook(owner, receiver.url_for("/other"))
    assert "Test sent" in client.post(reverse("webhook-test", args=[other.pk]), follow=True).content.decode()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_presses_at_the_same_moment_send_one_test(owner, receiver):
    import threading

    from django.db import connections

    webhook, _secret = hook(owner, receiver.url_for("/hook"))
    outcomes, start = [], threading.Barrier(12)

    def press():
        start.wait()
        try:
            webhook_send_test(webhook=webhook)
            outcomes.append("sent")
        except Exception as exc:
            outcomes.append(getattr(exc, "reason", repr(exc)))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=press) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["in_flight"] * 11 + ["sent"]
    assert WebhookDelivery.objects.filter(webhook=webhook, test=True).count() == 1


# --------------------------------------------------------------------------- turns between accounts


def test_accounts_take_turns_and_one_account_holds_at_most_two_attempts(owner, receiver):
    busy = owner  # five webhooks, one event: five deliveries due first
    for n in range(5):
        hook(busy, receiver.url_for(f"/busy/{n}"), events=["paused"])
    paused_event(busy)
    quiet = MembershipFactory()
    later = webhook_send_test(webhook=hook(quiet, receiver.url_for("/quiet"))[0])
    now = timezone.now() + timedelta(seconds=1)

    def turn(at):
        claimed = delivery_claim_next(now=at)
        return claimed and claimed.webhook.account_id

    # The quiet account's delivery, made last, has the second turn, not the sixth; the busy
    # account never has more than two attempts in flight.
    assert [turn(now) for _ in range(4)] == [busy.account_id, quiet.account_id, busy.account_id, None]
    assert WebhookDelivery.objects.get(pk=later.pk).attempts == 1
    # A claim whose worker was lost lapses: its slot is free again.
    assert turn(now + timedelta(seconds=61)) == busy.account_id


def test_a_lost_turn_is_given_again_once_per_account(owner, receiver, monkeypatch):
    from syncs import webhooks

    for n in range(3):
        hook(owner, receiver.url_for(f"/a/{n}"), events=["paused"])
    paused_event(owner)
    other = MembershipFactory()
    webhook_send_test(webhook=hook(other, receiver.url_for("/b"))[0])
    turns = []
    monkeypatch.setattr(webhooks.deliver_webhook, "delay", lambda *args: turns.append(args))
    assert webhooks.resend_lost(now=timezone.now()) == 0  # not late yet
    assert webhooks.resend_lost(now=timezone.now() + timedelta(minutes=3)) == 2
    assert len(turns) == 2
