"""The operator's emails about automatic pauses: one when a sync pauses, a daily reminder while
it stays paused, one when it works again.

Exactly once per notice: each notice is claimed with a conditional UPDATE of its episode field
(``notified_at``, ``reminded_at``, ``restored_notified_at``) before it is sent, so two workers
never both send it. A send that fails releases the claim, so the next pass (beat runs the task
every minute) tries again; it never raises out of the task.

Every email tells the state at the moment it is sent, not when it was owed: each notice's
condition reads the connection too (a pause email only while the sync is paused and not being
checked, a "Restored" only while it runs), the claim re-checks it in the same UPDATE, and the
message is built from the episode and connection read after the claim. A "Restored" waits until
the sync has run for RESTORE_SETTLE: a pause within that time reopens the episode
(syncs/engine/record.py), so the operator gets neither a "Restored" nor a second "Paused",
and the last email about a sync always says what the dashboard says.

Emails carry no secret: never the import URL or an export URL, and no guest data. What went
wrong is the plain sentence of ``syncs.explain.describe``, never the stored parameters.

Each member reads the notice in their language (``Membership.language``, or the site's): one
message per language, all sent as one notice. If the mail server fails before the first one
went out, the claim is released and the whole notice is retried; once one went out, the notice
stays claimed (a retry would send that one twice) and the failure is logged.
"""

from __future__ import annotations

import logging
import time
import zoneinfo
from collections.abc import Callable
from datetime import datetime, timedelta

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from syncs.activity import activity_record_automatic
from syncs.db_connections import database_idle
from syncs.explain import describe, since
from syncs.languages import reader_language
from syncs.models import Activity, Connection, EmailAlerts, Membership, PauseEpisode
from syncs.site_links import connection_fix_url, site_link
from syncs.webhooks import webhooks_notify_episode

log = logging.getLogger(__name__)

# While a sync stays paused, the operator is reminded this long after the last email.
REMIND_EVERY = timedelta(hours=24)
# A sync that works again must keep working this long before the operator is told it is restored.
RESTORE_SETTLE = timedelta(minutes=10)
# A pass takes no new notice after this long: it stays well inside the task's soft time limit
# (60 s) even when the mail server times out on every message; the rest waits a minute.
PASS_SECONDS = 40


@shared_task(ignore_result=True)
def send_pause_notifications() -> int:
    """Run by beat every minute; idempotent. Returns the number of emails sent."""
    return pause_notifications_send()


def pause_notifications_send(*, now: datetime | None = None) -> int:
    """One pass over every episode that is owed a notice. Returns the number of emails sent."""
    now = now or timezone.now()
    pause_episodes_silence_unnotified(now=now)
    stop_at = time.monotonic() + PASS_SECONDS
    sent = 0
    try:
        for pending, send in (
            (_pause_pending, pause_episode_notify),
            (_reminder_due, pause_episode_remind),
            (_restore_pending, pause_episode_notify_restored),
        ):
            for episode in _episodes(pending(now)):
                if time.monotonic() > stop_at:
                    log.warning("pause emails: pass out of time, the rest waits for the next run")
                    return sent
                sent += send(episode=episode, now=now)
    except SoftTimeLimitExceeded:
        # The claim of the notice being sent was released; the next run picks it up.
        log.warning("pause emails: soft time limit reached, the rest waits for the next run")
    return sent


# -- What each notice is owed: the same conditions select the episodes and guard the claims. --


# The connection's part of a notice's condition is a subquery on the connection, never a join:
# the claim's UPDATE then keeps its own conditions (the notice still owed) on the episode's row,
# which PostgreSQL checks again after waiting for another claim's lock. With a join, Django
# writes "id IN (SELECT ...)", evaluated before the wait, and both claims would win.
def _connections(**conditions) -> Q:
    return Q(connection__in=Connection.objects.filter(**conditions).values("pk"))


# What the dashboard must show for a "paused" email to be true: paused, switched on, and not
# being checked after the operator switched it back on (the check's result decides what to tell).
_STILL_PAUSED = _connections(paused_at__isnull=False, enabled=True, checking_since__isnull=True)


def _pause_pending(now: datetime) -> Q:
    return Q(ended_at__isnull=True, notified_at__isnull=True) & _STILL_PAUSED


def _reminder_due(now: datetime) -> Q:
    # A connection the operator switched off is their decision: it stays paused, but reminding
    # them every day of what they chose would only teach them to ignore these emails.
    last_email_before = now - REMIND_EVERY
    return Q(ended_at__isnull=True, notified_at__isnull=False) & _STILL_PAUSED & (
        Q(reminded_at__isnull=True, notified_at__lte=last_email_before) | Q(reminded_at__lte=last_email_before)
    )


def _restore_pending(now: datetime) -> Q:
    # Running since the episode ended, for RESTORE_SETTLE at least: not paused again (that would
    # have reopened the episode), and switched on.
    return Q(
        ended_at__isnull=False, ended_at__lte=now - RESTORE_SETTLE, notified_at__isnull=False,
        restored_notified_at__isnull=True,
    ) & _connections(paused_at__isnull=True, enabled=True)


def _episodes(condition: Q) -> list[PauseEpisode]:
    return list(
        PauseEpisode.objects.filter(condition)
        .select_related("connection__property__account", "connection__portal")
        .order_by("started_at", "pk")
    )


def _episode_fresh(pk: int) -> PauseEpisode:
    """The episode and its connection as they are now: what the message says is read after the claim."""
    return PauseEpisode.objects.select_related("connection__property__account", "connection__portal").get(pk=pk)


def pause_episodes_silence_unnotified(*, now: datetime) -> int:
    """Mark episodes that ended before their pause email went out as told of pause and restore.

    Telling the operator "paused" and then "restored" about a pause that is already over (a
    failure that the next sync fixed within a minute) is noise: they get no email at all. The
    conditions above would already send nothing (a pause email is for open episodes only, a
    restored one follows a pause email), but a row with nothing recorded would look like an
    email still owed; both fields say that it was dealt with, and no notice ever picks it up.
    """
    return PauseEpisode.objects.filter(ended_at__isnull=False, notified_at__isnull=True).update(
        notified_at=now, restored_notified_at=now
    )


# -- The three notices. Each returns the number of emails sent: 1, or 0 (claimed elsewhere, --
# -- nobody to tell, or the send failed and was released for the next run).                 --


def pause_episode_notify(*, episode: PauseEpisode, now: datetime) -> int:
    """The pause email: what stopped, why in plain words, since when, and the fix checklist."""
    return _notice_send(
        episode=episode, field="notified_at", pending=_pause_pending(now), now=now,
        action=Activity.Action.PAUSE_EMAIL_SENT,
        message=lambda fresh, recipients, language: pause_email(
            episode=fresh, recipients=recipients, now=now, language=language
        ),
    )


def pause_episode_remind(*, episode: PauseEpisode, now: datetime) -> int:
    """The daily reminder while the sync stays paused: the pause email, saying "still"."""
    return _notice_send(
        episode=episode, field="reminded_at", pending=_reminder_due(now), now=now,
        action=Activity.Action.REMINDER_SENT,
        message=lambda fresh, recipients, language: pause_email(
            episode=fresh, recipients=recipients, now=now, reminder=True, language=language
        ),
    )


def pause_episode_notify_restored(*, episode: PauseEpisode, now: datetime) -> int:
    """The short email when a pause the operator was told about ends."""
    return _notice_send(
        episode=episode, field="restored_notified_at", pending=_restore_pending(now), now=now,
        action=Activity.Action.RESTORED_EMAIL_SENT,
        message=lambda fresh, recipients, language: restored_email(episode=fresh, recipients=recipients, language=language),
    )


def _notice_send(
    *, episode: PauseEpisode, field: str, pending: Q, now: datetime, action: str,
    message: Callable[[PauseEpisode, list[str], str], EmailMultiAlternatives],
) -> int:
    previous = getattr(episode, field)
    by_language = pause_episode_recipients_by_language(episode=episode)
    # The claim: only one worker's UPDATE finds the notice still owed, and it checks again, at
    # this moment, that the sync is in the state the notice tells (see the conditions above).
    if PauseEpisode.objects.filter(pending, pk=episode.pk).update(**{field: now}) != 1:
        return 0
    episode = _episode_fresh(episode.pk)
    if not by_language:
        # Nobody to tell: the claim stays, so the notice is not retried every minute forever;
        # the operator still sees the pause on the dashboard (and the webhooks are told).
        log.warning("pause email not sent episode=%s notice=%s reason=no_recipients", episode.pk, field)
        _webhooks(episode, field, now)
        return 0
    sent: list[str] = []
    try:
        messages = [(language, message(episode, recipients, language)) for language, recipients in by_language.items()]
        database_idle()  # a mail server that hangs holds this thread, never a database connection
        with get_connection() as mail:  # one connection to the mail server for the whole notice
            for language, email in messages:
                email.connection = mail
                email.send()
                sent.append(language)
    except Exception as exc:
        # Whatever the backend raised (SMTP refused, timed out, misconfigured). The message holds
        # no secret, but only the error's type is logged.
        if not sent:
            # Nobody was told: give the notice back to the next run.
            PauseEpisode.objects.filter(pk=episode.pk, **{field: now}).update(**{field: previous})
            log.error(
                "pause email failed episode=%s notice=%s error=%s, will retry", episode.pk, field, type(exc).__name__
            )
        else:
            # Some members were told: retrying would tell them twice, so the claim stays.
            log.error(
                "pause email partly sent episode=%s notice=%s sent=%s not_sent=%s error=%s, not retried",
                episode.pk, field, ",".join(sent), ",".join(sorted(set(by_language) - set(sent))),
                type(exc).__name__,
            )
            _activity_record_sent(episode=episode, action=action, recipients=by_language, sent=sent, now=now)
            _webhooks(episode, field, now)
        if isinstance(exc, SoftTimeLimitExceeded):
            raise
        return len(sent)
    log.info(
        "pause email sent episode=%s notice=%s recipients=%d languages=%s",
        episode.pk, field, sum(len(r) for r in by_language.values()), ",".join(sent),
    )
    _activity_record_sent(episode=episode, action=action, recipients=by_language, sent=sent, now=now)
    _webhooks(episode, field, now)
    return len(sent)


# Which webhook event each notice is (syncs.webhooks), told once the notice's claim is kept.
_WEBHOOK_EVENT = {"notified_at": "paused", "reminded_at": "reminder", "restored_notified_at": "restored"}


def _webhooks(episode: PauseEpisode, field: str, now: datetime) -> None:
    try:
        webhooks_notify_episode(episode=episode, event=_WEBHOOK_EVENT[field], now=now)
    except Exception:  # the emails are told already; a webhook problem must not undo them
        log.exception("webhooks not told episode=%s notice=%s", episode.pk, field)


def _activity_record_sent(
    *, episode: PauseEpisode, action: str, recipients: dict[str, list[str]], sent: list[str], now: datetime
) -> None:
    """The activity log says which email went out, and to how many people (never their addresses)."""
    connection = episode.connection
    activity_record_automatic(
        action=action, connection_id=connection.pk, property_id=connection.property_id,
        params={"recipients": sum(len(recipients[language]) for language in sent)}, when=now,
    )


def pause_episode_recipients_by_language(*, episode: PauseEpisode) -> dict[str, list[str]]:
    """The email addresses of the active members of the episode's account who want these emails
    as they happen (``Membership.email_alerts`` covers the property, and no daily digest instead),
    each once, grouped by the language each member reads (their chosen one, or the site's), the
    site's language first."""
    prop = episode.connection.property
    rows = (
        Membership.objects.filter(account_id=prop.account_id, email_digest=False, user__is_active=True)
        .filter(members_alerted_about(property_id=prop.pk))
        .exclude(user__email="")
        .order_by("user_id")
        .values_list("user__email", "language")
    )
    by_language: dict[str, list[str]] = {}
    seen: set[str] = set()
    for email, chosen in rows:
        if email in seen:
            continue
        seen.add(email)
        language = reader_language(chosen=chosen)
        by_language.setdefault(language, []).append(email)
    return dict(sorted(by_language.items(), key=lambda item: item[0] != settings.LANGUAGE_CODE))


def members_alerted_about(*, property_id: int) -> Q:
    """The memberships whose email choice covers this property: all properties, or this one
    assigned to them."""
    return Q(email_alerts=EmailAlerts.ALL) | Q(email_alerts=EmailAlerts.ASSIGNED, assigned_properties=property_id)


# -- The messages. --


def pause_email(
    *, episode: PauseEpisode, recipients: list[str], now: datetime, reminder: bool = False, language: str = ""
) -> EmailMultiAlternatives:
    connection = episode.connection
    with _language(language):
        names = _names(connection)
        if reminder:
            subject = _("Still paused: %(portal)s sync of %(property)s") % names
        else:
            subject = _("Paused: %(portal)s sync of %(property)s") % names
        context = {
            **names,
            "reminder": reminder,
            "reason": describe(episode.reason, episode.params, portal=connection.portal.name_in_sentence),
            "since": episode.started_at,
            "paused_for": since(episode.started_at, now),
            "exports": connection.exports,
            # The background probe (syncs/probing.py) found the feed working again.
            "ready_since": connection.ready_to_resume_at,
            "account": connection.property.account.name,
            "fix_url": connection_fix_url(connection),
        }
        return _message("paused", subject=subject, context=context, connection=connection, recipients=recipients)


def restored_email(*, episode: PauseEpisode, recipients: list[str], language: str = "") -> EmailMultiAlternatives:
    connection = episode.connection
    with _language(language):
        names = _names(connection)
        context = {
            **names,
            "ended_by": episode.ended_by,
            "ended_at": episode.ended_at,
            "paused_for": since(episode.started_at, episode.ended_at),
            "detail_url": site_link("connection-detail", connection_id=connection.pk),
        }
        subject = _("Restored: %(portal)s sync of %(property)s") % names
        return _message("restored", subject=subject, context=context, connection=connection, recipients=recipients)


def _language(language: str = "") -> translation.override:
    # The readers' language (syncs.languages), never the language of whatever request happened
    # to run the task (an eager task in a page view).
    return translation.override(reader_language(chosen=language))


def _names(connection: Connection) -> dict[str, str]:
    return {"portal": connection.portal.display_name, "property": connection.property.name}


def _message(
    template: str, *, subject: str, context: dict, connection: Connection, recipients: list[str]
) -> EmailMultiAlternatives:
    # Times are shown in the property's zone, which is named next to them.
    zone = connection.property.timezone
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        context = {**context, "zone": zone}
        text = render_to_string(f"emails/{template}.txt", context)
        html = render_to_string(f"emails/{template}.html", context)
    # One message to the whole account: sent once or not at all, whatever the number of members.
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()),  # a name with a line break must not break the header
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        headers={"Auto-Submitted": "auto-generated"},  # RFC 3834: no out-of-office replies back
    )
    message.attach_alternative(html, "text/html")
    return message
