"""Per-account webhooks: pauses, reminders, restores, double bookings and portals that stopped
reading our calendar, POSTed as signed JSON by the worker, with retries, each delivery logged.

* What is sent is true when it is sent: pause, reminder and restore events are created when the
  notifier claims the notice (syncs.notifications, which checks the state in the claim), and
  every attempt checks again that the event still holds (``sync_state``): a pause that ended
  before its delivery went out is dropped, not sent late.
* Signature: ``X-Channelmgr-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` under
  the webhook's secret. The secret is derived from a nonce with the server's key (as export
  tokens are), shown once when the webhook is made.
* The URL is checked like every URL we fetch (syncs.fetch: private and special addresses
  refused, at save and at connect time); it is POSTed through the same client.
* Attempts: at once, then after 30 s, 1, 2 and 4 minutes (five in all, each far below the
  broker's visibility timeout). A request the broker lost is sent again by the periodic scan.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from syncs.activity import activity_record
from syncs.conflicts import Conflict, double_bookings_scan
from syncs.explain import clash_words, describe, describe_readers
from syncs.fetch import FetchError, post_json
from syncs.models import (
    Account,
    Activity,
    Connection,
    DoubleBooking,
    ExportToken,
    NotReadingAlert,
    PauseEpisode,
    Webhook,
    WebhookDelivery,
)
from syncs.sync_state import SyncState, connection_status, in_states, statuses_of

log = logging.getLogger(__name__)

Event = Webhook.Event
Status = WebhookDelivery.Status
SIGNATURE_HEADER = "X-Channelmgr-Signature"
RETRY_DELAYS = (30, 60, 120, 240)  # seconds after the 1st, 2nd, 3rd, 4th failed attempt
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# A pending delivery this late was lost by the broker: the scan sends it again.
LOST_AFTER = timedelta(minutes=2)


# --------------------------------------------------------------------------- secrets, signatures


def webhook_secret(webhook: Webhook) -> str:
    key = f"webhook-secret:{settings.SECRET_KEY}".encode()
    return "whsec_" + hmac.new(key, webhook.secret_nonce.encode(), hashlib.sha256).hexdigest()


def signature(*, secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def signature_valid(*, secret: str, body: bytes, header: str, tolerance: int = 300, now: float | None = None) -> bool:
    """How a receiver checks a delivery (documented in the README; used by the tests)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret=secret, body=body, timestamp=timestamp), header)


# --------------------------------------------------------------------------- operator actions


def webhook_create(*, user, account: Account, url: str, events: list[str], slack_text: bool) -> tuple[Webhook, str]:
    """A new webhook; returns it with its secret, which is shown this once."""
    with transaction.atomic():
        webhook = Webhook.objects.create(
            account=account, url=url, events=[e for e in Event.values if e in events], slack_text=slack_text,
            secret_nonce=secrets.token_hex(16), created_by=user if user.is_authenticated else None,
        )
        activity_record(user=user, action=Activity.Action.WEBHOOK_ADDED, params={"host": _host(url)})
    return webhook, webhook_secret(webhook)


def webhook_remove(*, user, webhook: Webhook) -> None:
    with transaction.atomic():
        activity_record(user=user, action=Activity.Action.WEBHOOK_REMOVED, params={"host": _host(webhook.url)})
        webhook.delete()


def webhook_send_test(*, webhook: Webhook) -> WebhookDelivery:
    """The "send a test" button: a delivery like any other, marked as a test."""
    text = _("Test from channelmgr: this webhook works.")
    payload = {"event": "test", "test": True, "account": webhook.account.name, "occurred_at": timezone.now().isoformat()}
    return _deliveries_create([webhook], event="test", payload=payload, text=text, connection=None, test=True)[0]


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or ""


# --------------------------------------------------------------------------- events


def _subscribed(account_id: int, event: str) -> list[Webhook]:
    return [w for w in Webhook.objects.filter(account_id=account_id, enabled=True) if event in w.events]


def _deliveries_create(
    webhooks: list[Webhook], *, event: str, payload: dict, text: str, connection: Connection | None, test: bool = False
) -> list[WebhookDelivery]:
    now = timezone.now()
    made = []
    for webhook in webhooks:
        body = dict(payload)
        if webhook.slack_text:
            body["text"] = text
        made.append(
            WebhookDelivery.objects.create(
                webhook=webhook, event=event, payload=body, connection=connection, test=test, next_attempt_at=now
            )
        )
    ids = [delivery.pk for delivery in made]
    if ids:
        transaction.on_commit(lambda: _publish_in_background(ids))
    return made


def _publish_in_background(ids: list[int]) -> None:
    """Hand the deliveries to the broker from a thread: a hung broker never holds a page or the
    notifier. A delivery the broker did not take is sent by the next scan."""

    def publish() -> None:
        for delivery_id in ids:
            try:
                deliver_webhook.apply_async((delivery_id,))
            except Exception:
                log.warning("webhook delivery not queued delivery=%s: broker unavailable, the scan will retry", delivery_id)
                return

    threading.Thread(target=publish, name="webhooks", daemon=True).start()


def _site_words():
    # Webhooks go to a team channel, not a person: in the site's language.
    return translation.override(settings.LANGUAGE_CODE)


def webhooks_notify_episode(*, episode: PauseEpisode, event: str, now: datetime) -> int:
    """Called by the notifier once it holds the claim of a pause, reminder or restore notice."""
    connection = episode.connection
    hooks = _subscribed(connection.property.account_id, event)
    if not hooks:
        return 0
    from syncs.notifications import connection_fix_url

    with _site_words():
        names = {"portal": connection.portal.name, "property": connection.property.name}
        reason = describe(episode.reason, episode.params, portal=connection.portal.name_in_sentence)
        if event == Event.RESTORED:
            text = _("Restored: %(portal)s sync of %(property)s works again.") % names
        elif event == Event.REMINDER:
            text = _("Still paused: %(portal)s sync of %(property)s. %(reason)s") % {**names, "reason": reason}
        else:
            text = _("Paused: %(portal)s sync of %(property)s. %(reason)s") % {**names, "reason": reason}
        payload = {
            "event": event, "test": False, "account": connection.property.account.name,
            "property": connection.property.name, "portal": connection.portal.name, "connection_id": connection.pk,
            "reason_code": episode.reason, "reason": reason, "paused_at": episode.started_at.isoformat(),
            "restored_at": episode.ended_at.isoformat() if episode.ended_at else None,
            "fix_url": connection_fix_url(connection), "occurred_at": now.isoformat(),
        }
    return len(_deliveries_create(hooks, event=event, payload=payload, text=f"{text} {payload['fix_url']}", connection=connection))


def _notify_double_booking(*, record: DoubleBooking, conflict: Conflict, now: datetime) -> int:
    """The clashing nights (syncs.conflicts decides them, as for every page) and each stay's own
    dates. ``first_night`` and ``checkout`` stay what they always were (the first stay's first
    night, the last stay's check-out day) for integrations that read them."""
    prop = record.property
    hooks = _subscribed(prop.account_id, Event.DOUBLE_BOOKING)
    if not hooks:
        return 0
    with _site_words():
        text = _("Possible double booking at %(property)s: %(nights)s, booked on %(sources)s.") % {
            "property": prop.name, "nights": clash_words(conflict.clash), "sources": ", ".join(record.sources),
        }
        stays = [
            {"source": conflict.source_of(stay), "first_night": stay.first_night.isoformat(), "check_out": stay.check_out.isoformat()}
            for stay in sorted(conflict.stays, key=lambda stay: (stay.first_night, stay.pk))
        ]
    url = settings.SITE_URL + f"/properties/{prop.pk}/?month={conflict.clash.first_night:%Y-%m}"
    payload = {
        "event": Event.DOUBLE_BOOKING, "test": False, "account": prop.account.name, "property": prop.name,
        "clash": conflict.clash.as_dict(), "stays": stays,
        "first_night": conflict.stays_first_night.isoformat(), "checkout": conflict.stays_check_out.isoformat(),
        "sources": record.sources, "double_booking": record.key, "url": url, "occurred_at": now.isoformat(),
    }
    return len(_deliveries_create(hooks, event=Event.DOUBLE_BOOKING, payload=payload, text=f"{text} {url}", connection=None))


def _notify_not_reading(*, connection: Connection, words: str, now: datetime) -> int:
    hooks = _subscribed(connection.property.account_id, Event.NOT_READING)
    if not hooks:
        return 0
    with _site_words():
        text = _("%(portal)s stopped reading our calendar of %(property)s. %(words)s") % {
            "portal": connection.portal.name, "property": connection.property.name, "words": words,
        }
    url = settings.SITE_URL + f"/connections/{connection.pk}/fix/"
    payload = {
        "event": Event.NOT_READING, "test": False, "account": connection.property.account.name,
        "property": connection.property.name, "portal": connection.portal.name, "connection_id": connection.pk,
        "details": words, "fix_url": url, "occurred_at": now.isoformat(),
    }
    return len(_deliveries_create(hooks, event=Event.NOT_READING, payload=payload, text=f"{text} {url}", connection=connection))


# --------------------------------------------------------------------------- delivering


def _still_true(delivery: WebhookDelivery) -> bool:
    """Whether the event still holds now: what the dashboard says is what a late message says."""
    if delivery.test:
        return True
    if delivery.event == Event.DOUBLE_BOOKING:
        key = delivery.payload.get("double_booking", "")
        return not DoubleBooking.objects.filter(key=key, handled_at__isnull=False).exists()
    connection = delivery.connection
    if connection is None:
        return True
    live = Connection.objects.select_related("portal", "property").filter(pk=connection.pk).first()
    if live is None:  # removed since (syncs.removal): nothing about it is true any more
        return False
    state = connection_status(live).state
    if delivery.event in (Event.PAUSED, Event.REMINDER):
        return state == SyncState.PAUSED
    if delivery.event == Event.RESTORED:
        return state not in (SyncState.PAUSED, SyncState.CHECKING, SyncState.SWITCHED_OFF)
    if delivery.event == Event.NOT_READING:
        return state == SyncState.NOT_READING
    return True


def webhook_deliver(*, delivery_id: int, now: datetime | None = None) -> str:
    """One attempt at one delivery. Returns its status afterwards; the caller schedules a retry
    when it is still pending."""
    now = now or timezone.now()
    delivery = WebhookDelivery.objects.select_related("webhook__account", "connection").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != Status.PENDING:
        return delivery.status if delivery else ""
    # The claim: one worker per attempt (the attempt counter is the version).
    claimed = WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.PENDING, attempts=delivery.attempts).update(
        attempts=F("attempts") + 1, next_attempt_at=now + timedelta(seconds=60)
    )
    if not claimed:
        return Status.PENDING
    attempt = delivery.attempts + 1
    if not _still_true(delivery):
        _finish(delivery, Status.DROPPED, now, {"at": now.isoformat(), "status": None, "error": "no_longer_true"})
        return Status.DROPPED
    body = json.dumps(delivery.payload, sort_keys=True).encode()
    secret = webhook_secret(delivery.webhook)
    headers = {
        SIGNATURE_HEADER: signature(secret=secret, body=body, timestamp=int(time.time())),
        "X-Channelmgr-Event": delivery.event,
        "X-Channelmgr-Delivery": str(delivery.pk),
    }
    status_code, error, permanent = None, "", False
    try:
        status_code = post_json(
            delivery.webhook.url, body=body, headers=headers, allow_loopback=settings.FETCH_ALLOW_LOOPBACK,
            user_agent=settings.FETCH_USER_AGENT,
        )
    except FetchError as exc:
        error, permanent = exc.code, exc.code in ("blocked_address", "invalid_url")
    entry = {"at": now.isoformat(), "status": status_code, "error": error}
    if status_code is not None and 200 <= status_code < 300:
        _finish(delivery, Status.DELIVERED, now, entry)
        return Status.DELIVERED
    if permanent or attempt >= MAX_ATTEMPTS:
        _finish(delivery, Status.FAILED, now, entry)
        log.warning("webhook failed delivery=%s attempts=%d status=%s error=%s", delivery.pk, attempt, status_code, error)
        return Status.FAILED
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        log=[*delivery.log, entry], next_attempt_at=now + timedelta(seconds=RETRY_DELAYS[attempt - 1])
    )
    return Status.PENDING


def _finish(delivery: WebhookDelivery, status: str, now: datetime, entry: dict) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=status, finished_at=now, next_attempt_at=None, log=[*delivery.log, entry]
    )


@shared_task(bind=True, ignore_result=True, acks_late=True)
def deliver_webhook(self, delivery_id: int) -> str:
    status = webhook_deliver(delivery_id=delivery_id)
    if status == Status.PENDING:
        attempts = WebhookDelivery.objects.filter(pk=delivery_id).values_list("attempts", flat=True).first() or 1
        # Below the broker's visibility timeout (600 s): a retried message is never delivered twice.
        deliver_webhook.apply_async((delivery_id,), countdown=RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1])
    return status


# --------------------------------------------------------------------------- the periodic scan


@shared_task(ignore_result=True)
def scan_alerts() -> dict:
    """Run by beat every minute: double bookings and portals that stopped reading, told once
    each; deliveries the broker lost, sent again."""
    now = timezone.now()
    return {"double_bookings": scan_double_bookings(now=now), "not_reading": scan_not_reading(now=now),
            "resent": resend_lost(now=now)}


def scan_double_bookings(*, now: datetime) -> int:
    told = 0
    for marked in double_bookings_scan(now=now).new:
        # The claim: one scan tells the webhooks about this version of the double booking.
        claimed = DoubleBooking.objects.filter(pk=marked.mark.pk).exclude(alerted_fingerprint=marked.fingerprint).update(
            alerted_fingerprint=marked.fingerprint
        )
        if claimed:
            record = DoubleBooking.objects.select_related("property__account").get(pk=marked.mark.pk)
            told += _notify_double_booking(record=record, conflict=marked.conflict, now=now)
    return told


def scan_not_reading(*, now: datetime) -> int:
    told = 0
    accounts = {w.account_id for w in Webhook.objects.filter(enabled=True) if Event.NOT_READING in w.events}
    for account_id in accounts:
        candidates = in_states(Connection.objects.filter(property__account_id=account_id), [SyncState.NOT_READING], now=now)
        statuses = statuses_of(candidates, tokens=ExportToken.objects.filter(connection__in=candidates.values("pk")), now=now)
        not_reading = {s.connection.id: s for s in statuses if s.state == SyncState.NOT_READING}
        NotReadingAlert.objects.filter(connection__property__account_id=account_id).exclude(
            connection_id__in=list(not_reading)
        ).delete()
        known = set(NotReadingAlert.objects.filter(connection_id__in=list(not_reading)).values_list("connection_id", flat=True))
        for connection_id, counted in not_reading.items():
            if connection_id in known:
                continue
            _alert, created = NotReadingAlert.objects.get_or_create(connection_id=connection_id)
            if created:
                connection = Connection.objects.select_related("property__account", "portal").get(pk=connection_id)
                with _site_words():
                    words = describe_readers(counted.readers, portal=connection.portal.name_in_sentence)
                told += _notify_not_reading(connection=connection, words=words, now=now)
    return told


def resend_lost(*, now: datetime) -> int:
    lost = list(
        WebhookDelivery.objects.filter(status=Status.PENDING, next_attempt_at__lte=now - LOST_AFTER).values_list("pk", flat=True)[:200]
    )
    for delivery_id in lost:
        try:
            deliver_webhook.delay(delivery_id)
        except Exception:
            log.warning("webhook resend not queued: broker unavailable")
            break
    return len(lost)

