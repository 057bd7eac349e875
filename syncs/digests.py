"""The daily digest: for members who chose one email a day instead of one per pause.

What it says is read when it is sent (``syncs.sync_state`` for the syncs, the overview's rule
for double bookings, those marked handled listed apart): the syncs that need attention now, in
the member's scope (all properties, or those assigned to them), and the pauses that began or
ended in the last day. Nothing to say (handled double bookings alone included), no email. Each
member's digest is claimed with a conditional UPDATE of ``digest_sent_at`` before it is sent, so
two workers never both send it; a send that fails gives the claim back.
"""

from __future__ import annotations

import logging
import zoneinfo
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from syncs.conflicts import conflicts_listed
from syncs.db_connections import database_idle
from syncs.explain import describe_state
from syncs.languages import reader_language
from syncs.models import Connection, EmailAlerts, Membership, PauseEpisode
from syncs.site_links import site_link
from syncs.sync_state import connection_statuses, states_with_attention

log = logging.getLogger(__name__)

EVERY = timedelta(hours=24)
# Sent from this hour of the member's own morning (their reading zone).
LOCAL_HOUR = 7


@shared_task(ignore_result=True)
def send_digests() -> int:
    """Run by beat: every member whose digest is due gets it. Returns the number sent."""
    return digests_send()


def digests_send(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    due = (
        Membership.objects.filter(email_digest=True, user__is_active=True)
        .exclude(email_alerts=EmailAlerts.NONE).exclude(user__email="")
        .filter(Q(digest_sent_at__isnull=True) | Q(digest_sent_at__lte=now - EVERY + timedelta(minutes=30)))
        .select_related("account", "user")
    )
    sent = 0
    for membership in due:
        zone = zoneinfo.ZoneInfo(membership.reading_time_zone())
        if now.astimezone(zone).hour < LOCAL_HOUR:
            continue
        sent += digest_send(membership=membership, now=now)
    return sent


def digest_send(*, membership: Membership, now: datetime) -> int:
    previous = membership.digest_sent_at
    claimed = Membership.objects.filter(pk=membership.pk, digest_sent_at=previous).update(digest_sent_at=now)
    if not claimed:
        return 0
    message = digest_message(membership=membership, since=previous or now - EVERY, now=now)
    if message is None:
        return 0
    database_idle()  # a mail server that hangs holds this thread, never a database connection
    try:
        message.send()
    except Exception as exc:
        Membership.objects.filter(pk=membership.pk, digest_sent_at=now).update(digest_sent_at=previous)
        log.error("digest failed membership=%s error=%s, will retry", membership.pk, type(exc).__name__)
        return 0
    return 1


def digest_message(*, membership: Membership, since: datetime, now: datetime) -> EmailMultiAlternatives | None:
    """The digest as it would be sent now, or None when there is nothing to tell."""
    account = membership.account
    connections = Connection.objects.for_account(account)
    if membership.email_alerts == EmailAlerts.ASSIGNED:
        connections = connections.filter(property__in=membership.assigned_properties.values("pk"))
    _counts, troubled = states_with_attention(connections, now=now)
    loaded = Connection.objects.select_related("property", "portal").in_bulk([s.connection.id for s in troubled[:50]])
    statuses = connection_statuses(loaded.values(), now=now)
    episodes = PauseEpisode.objects.filter(connection__in=connections).filter(
        Q(started_at__gte=since) | Q(ended_at__gte=since)
    ).select_related("connection__portal", "connection__property").order_by("started_at")[:50]
    # Their properties' own when they chose assigned ones, not those among the account's first few.
    ids = (
        list(membership.assigned_properties.values_list("pk", flat=True))
        if membership.email_alerts == EmailAlerts.ASSIGNED else None
    )
    language = reader_language(chosen=membership.language)
    with translation.override(language):  # the sources' names ("made here") in the reader's words
        listed = conflicts_listed(account=account, now=now, property_ids=ids)
    unhandled = listed.unhandled
    # Double bookings marked handled are listed apart, and alone are nothing to tell.
    if not troubled and not episodes and not unhandled:
        return None
    with translation.override(language), timezone.override(zoneinfo.ZoneInfo(membership.reading_time_zone())):
        # Worst first, as the overview lists them (in_bulk's dict is in the database's order).
        shown = [statuses[s.connection.id] for s in troubled[:50] if s.connection.id in statuses]
        rows = [(status, describe_state(status, now)) for status in shown]
        context = {
            "account": account.name, "rows": rows, "more": max(len(troubled) - len(rows), 0),
            "episodes": list(episodes), "conflicts": [marked.conflict for marked in unhandled], "handled": listed.handled,
            "conflicts_more": listed.unhandled_more, "handled_more": listed.handled_more,
            "zone": membership.reading_time_zone(), "overview_url": site_link("home"),
        }
        subject = ngettext(
            "%(account)s daily digest: %(n)d sync needs attention",
            "%(account)s daily digest: %(n)d syncs need attention", len(troubled),
        ) % {"account": account.name, "n": len(troubled)}
        if not troubled:
            subject = _("%(account)s daily digest: all syncs work") % {"account": account.name}
        message = EmailMultiAlternatives(
            subject=" ".join(subject.split()), body=render_to_string("emails/digest.txt", context),
            from_email=settings.DEFAULT_FROM_EMAIL, to=[membership.user.email],
            headers={"Auto-Submitted": "auto-generated"},
        )
        message.attach_alternative(render_to_string("emails/digest.html", context), "text/html")
    return message
