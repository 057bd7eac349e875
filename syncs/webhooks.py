"""Per-account webhooks: pauses, reminders, restores, double bookings and portals that stopped
reading our calendar, POSTed as signed JSON by the outgoing worker, with retries, each delivery
logged.

* What is sent is true when it is sent: pause, reminder and restore events are created when the
  notifier claims the notice (syncs.notifications, which checks the state in the claim), and
  every attempt checks again that the event still holds (``sync_state``): a pause that ended
  before its delivery went out is dropped, not sent late.
* Signature (version 2): ``X-Channelmgr-Signature: t=<unix time>,v2=<hex HMAC-SHA256 of
  "<t>.<delivery id>.<event>.<body>">`` under the webhook's secret, so that the delivery id and
  event headers are covered as well as the time and the body (the README shows a receiver's
  check). The secret is derived from a nonce with the server's key (as export tokens are), shown
  once when the webhook is made.
* The URL is checked like every URL we fetch (syncs.engine.fetch: private and special addresses
  refused, at save and at connect time); it is POSTed through the same client.
* Attempts: at once, then after 30 s, 1, 2 and 4 minutes (five in all, each far below the
  broker's visibility timeout); a test is tried once. A turn the broker lost is sent again by
  the periodic scan.
* One account cannot hold up another's: attempts are made by a worker of their own (the
  outgoing queue), which holds no database connection while it waits on a receiver, and takes
  turns between accounts (see "delivering" below). "Send a test" is one at a time per webhook,
  at most TEST_LIMIT_PER_MINUTE a minute.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Max, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from syncs.activity import activity_record
from syncs.conflicts import Conflict, double_bookings_scan
from syncs.db_connections import database_idle
from syncs.engine.fetch import FetchError, post_json
from syncs.explain import clash_words, describe, describe_readers
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
from syncs.site_links import connection_fix_url
from syncs.sync_state import SyncState, connection_status, in_states, statuses_of

log = logging.getLogger(__name__)

Event = Webhook.Event
Status = WebhookDelivery.Status
SIGNATURE_HEADER = "X-Channelmgr-Signature"
EVENT_HEADER = "X-Channelmgr-Event"
DELIVERY_HEADER = "X-Channelmgr-Delivery"
RETRY_DELAYS = (30, 60, 120, 240)  # seconds after the 1st, 2nd, 3rd, 4th failed attempt
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
# A delivery due this long and not being sent lost its turn (the broker or a worker lost it):
# the scan gives its account a turn again.
LOST_AFTER = timedelta(minutes=2)
# "Send a test": one at a time per webhook, and at most this many a minute.
TEST_LIMIT_PER_MINUTE = 10


# --------------------------------------------------------------------------- secrets, signatures


def webhook_secret(webhook: Webhook) -> str:
    key = f"webhook-secret:{settings.SECRET_KEY}".encode()
    return "whsec_" + hmac.new(key, webhook.secret_nonce.encode(), hashlib.sha256).hexdigest()


def _mac(*, secret: str, timestamp: int | str, delivery_id: int | str, event: str, body: bytes) -> str:
    signed = f"{timestamp}.{delivery_id}.{event}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature(*, secret: str, body: bytes, timestamp: int, delivery_id: int, event: str) -> str:
    """The signature header's value: the time it was made and the HMAC of the time, the delivery
    id, the event and the body (the fields cannot hold a ".", so the string reads one way only)."""
    return f"t={timestamp},v2={_mac(secret=secret, timestamp=timestamp, delivery_id=delivery_id, event=event, body=body)}"


def signature_valid(
    *, secret: str, body: bytes, header: str, delivery_id: str, event: str, tolerance: int = 300, leeway: int = 60,
    now: float | None = None,
) -> bool:
    """How a receiver checks a delivery (the README's snippet does the same with the standard
    library): a v2 signature of this time, delivery id, event and body, made at most
    ``tolerance`` seconds ago (an older one is a replay) and at most ``leeway`` seconds ahead
    of our clock."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    stamps = fields.get("t", [])
    if len(stamps) != 1 or not re.fullmatch(r"[0-9]{1,12}", stamps[0]):
        return False
    age = (time.time() if now is None else now) - int(stamps[0])
    if age > tolerance or age < -leeway:
        return False
    expected = _mac(secret=secret, timestamp=stamps[0], delivery_id=delivery_id, event=event, body=body)
    return any(hmac.compare_digest(expected, given) for given in fields.get("v2", []))


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


class WebhookTestRefused(Exception):
    """A "send a test" refused: one is on its way already (IN_FLIGHT), or the webhook had
    TEST_LIMIT_PER_MINUTE in the last minute (TOO_MANY)."""

    IN_FLIGHT, TOO_MANY = "in_flight", "too_many"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def webhook_send_test(*, webhook: Webhook) -> WebhookDelivery:
    """The "send a test" button: a delivery like any other, marked as a test and tried once.
    Raises WebhookTestRefused while one is on its way, or after TEST_LIMIT_PER_MINUTE in a
    minute; Webhook.DoesNotExist if it was removed meanwhile."""
    with transaction.atomic():
        # Presses of one webhook are taken one at a time (its row is locked until the commit),
        # so each press counts the tests of every press before it.
        Webhook.objects.select_for_update(no_key=True).only("pk").get(pk=webhook.pk)
        tests = WebhookDelivery.objects.filter(webhook=webhook, test=True)
        if tests.filter(status=Status.PENDING).exists():
            raise WebhookTestRefused(WebhookTestRefused.IN_FLIGHT)
        if tests.filter(created_at__gt=timezone.now() - timedelta(minutes=1)).count() >= TEST_LIMIT_PER_MINUTE:
            raise WebhookTestRefused(WebhookTestRefused.TOO_MANY)
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

# Attempts are made by the outgoing worker: a queue of its own (settings.CELERY_OUTGOING_QUEUE)
# served by a small pool of threads of its own, so no receiver can hold a thread or a database
# connection that syncs need. Each message on that queue is a turn, not a delivery: the thread
# that takes it claims the due attempt of the account served longest ago, among the accounts
# with fewer than ACCOUNT_IN_FLIGHT attempts in flight, and makes it. So one account's backlog
# (hanging receivers, many webhooks) holds at most ACCOUNT_IN_FLIGHT threads, and another
# account's delivery waits at most for the next thread that frees, wherever its message is in
# the queue. A turn that made an attempt hands a turn on while attempts are due.
ACCOUNT_IN_FLIGHT = 2
# An attempt ends within post_json's deadline (15 s): a claim this old was lost with its worker.
CLAIM_LAPSES_AFTER = timedelta(seconds=60)
# Whose turn it is goes by the last claim within this window; longer ago counts as never.
TURNS_REMEMBERED = timedelta(hours=1)
# Claims are made one at a time (a PostgreSQL advisory lock held to the claim's commit; SQLite's
# transactions are serial already), so that two threads never both see a free slot of one account.
CLAIMS_LOCK_KEY = 0x63686D_77686B  # "chm" "whk"


def _claims_one_at_a_time() -> None:
    db = transaction.get_connection()
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIMS_LOCK_KEY])


def _not_in_flight(now: datetime) -> Q:
    return Q(sending_until__isnull=True) | Q(sending_until__lte=now)


def _due(now: datetime):
    return WebhookDelivery.objects.filter(_not_in_flight(now), status=Status.PENDING, next_attempt_at__lte=now).order_by()


def _claim(delivery_id: int, now: datetime) -> WebhookDelivery:
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        attempts=F("attempts") + 1, claimed_at=now, sending_until=now + CLAIM_LAPSES_AFTER
    )
    return WebhookDelivery.objects.select_related("webhook__account", "connection").get(pk=delivery_id)


def delivery_claim_next(*, now: datetime) -> WebhookDelivery | None:
    """Claim the next attempt to make: the oldest due one of the account whose last attempt
    began longest ago, among accounts with a slot free. None when there is none."""
    with transaction.atomic():
        _claims_one_at_a_time()
        due = _due(now)
        accounts = set(due.values_list("webhook__account_id", flat=True).distinct())
        if not accounts:
            return None
        in_flight = Counter(
            WebhookDelivery.objects.filter(status=Status.PENDING, sending_until__gt=now, webhook__account_id__in=accounts)
            .values_list("webhook__account_id", flat=True)
        )
        free = [account for account in accounts if in_flight[account] < ACCOUNT_IN_FLIGHT]
        if not free:
            return None
        last_turn = dict(
            WebhookDelivery.objects.filter(webhook__account_id__in=free, claimed_at__gte=now - TURNS_REMEMBERED)
            .order_by()
            .values("webhook__account_id")
            .annotate(last=Max("claimed_at"))
            .values_list("webhook__account_id", "last")
        )
        never = datetime.min.replace(tzinfo=UTC)
        account = min(free, key=lambda pk: (last_turn.get(pk, never), pk))
        delivery_id = due.filter(webhook__account_id=account).order_by("next_attempt_at", "pk").values_list("pk", flat=True)[0]
        return _claim(delivery_id, now)


def webhook_deliver(*, delivery_id: int, now: datetime | None = None) -> str:
    """One attempt at this delivery now, whatever its turn and its account's attempts in flight
    (from a shell, and in tests; the worker takes turns: ``webhook_deliver_next``). Returns its
    status afterwards."""
    now = now or timezone.now()
    with transaction.atomic():
        _claims_one_at_a_time()
        found = WebhookDelivery.objects.filter(pk=delivery_id).values_list("status", "sending_until").first()
        if found is None:
            return ""
        status, sending_until = found
        if status != Status.PENDING or (sending_until and sending_until > now):
            return status
        delivery = _claim(delivery_id, now)
    return _attempt(delivery, now)


def webhook_deliver_next(*, now: datetime | None = None) -> WebhookDelivery | None:
    """One turn: claim the next attempt (``delivery_claim_next``) and make it. Returns the
    delivery as it is afterwards, or None when no attempt could be claimed."""
    now = now or timezone.now()
    delivery = delivery_claim_next(now=now)
    if delivery is None:
        return None
    delivery.status = _attempt(delivery, now)
    return delivery


def webhooks_due(*, now: datetime | None = None) -> bool:
    return _due(now or timezone.now()).exists()


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


def _attempt(delivery: WebhookDelivery, now: datetime) -> str:
    """Make the attempt ``delivery`` was claimed for (its ``attempts`` counts it already)."""
    attempt = delivery.attempts
    if not _still_true(delivery):
        _finish(delivery, Status.DROPPED, now, {"at": now.isoformat(), "status": None, "error": "no_longer_true"})
        return Status.DROPPED
    body = json.dumps(delivery.payload, sort_keys=True).encode()
    signed = signature(
        secret=webhook_secret(delivery.webhook), body=body, timestamp=int(time.time()), delivery_id=delivery.pk,
        event=delivery.event,
    )
    headers = {SIGNATURE_HEADER: signed, EVENT_HEADER: delivery.event, DELIVERY_HEADER: str(delivery.pk)}
    database_idle()  # a receiver that hangs holds this thread, never a database connection
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
    # A test says whether the webhook works now: it is not tried again.
    if permanent or delivery.test or attempt >= MAX_ATTEMPTS:
        _finish(delivery, Status.FAILED, now, entry)
        log.warning("webhook failed delivery=%s attempts=%d status=%s error=%s", delivery.pk, attempt, status_code, error)
        return Status.FAILED
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        log=[*delivery.log, entry], next_attempt_at=timezone.now() + timedelta(seconds=RETRY_DELAYS[attempt - 1]),
        sending_until=None,
    )
    return Status.PENDING


def _finish(delivery: WebhookDelivery, status: str, now: datetime, entry: dict) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=status, finished_at=timezone.now(), next_attempt_at=None, sending_until=None, log=[*delivery.log, entry]
    )


def _hand_on_turn(**options) -> None:
    """Publish a turn on the outgoing queue; a turn the broker refuses is given by the scan."""
    try:
        deliver_webhook.apply_async((), **options)
    except Exception:
        log.warning("webhook turn not queued: broker unavailable, the scan will retry")


# Retried like a sync when our database fails us: the turn claimed nothing yet, or its claim
# lapses and the attempt is made in another turn.
@shared_task(
    ignore_result=True, acks_late=True, autoretry_for=(OperationalError, InterfaceError), retry_backoff=10,
    retry_backoff_max=120, retry_jitter=True, max_retries=3,
)
def deliver_webhook(delivery_id: int | None = None) -> str:
    """One turn of the outgoing worker (see "delivering"). ``delivery_id``: the delivery whose
    creation sent this turn, for the logs; the turn may make another account's attempt first."""
    delivery = webhook_deliver_next()
    if delivery is None:
        return ""
    if delivery.status == Status.PENDING:
        # Its retry's turn, below the broker's visibility timeout (600 s): never delivered twice.
        _hand_on_turn(countdown=RETRY_DELAYS[min(delivery.attempts, len(RETRY_DELAYS)) - 1])
    if webhooks_due():
        _hand_on_turn()
    return delivery.status


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
    """Give a turn to each account with a delivery that lost its turn (due for LOST_AFTER and not
    being sent): the turns of one account follow each other from there."""
    accounts = list(_due(now - LOST_AFTER).values_list("webhook__account_id", flat=True).distinct()[:200])
    for _account in accounts:
        try:
            deliver_webhook.delay()
        except Exception:
            log.warning("webhook resend not queued: broker unavailable")
            break
    return len(accounts)
