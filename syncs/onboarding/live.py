"""Reading each new link of a file once, before saving it: "Check each new link live first".

The worker reads each link as the next sync would (``syncs.editing.feed_check``) and writes
what it found as a ``LinkCheck``: the link works (with its number of events) or the reason it
does not, as an error code that ``syncs.explain.describe`` words. Every link gets a verdict,
whatever the fetch or the parser raises, within ``LINK_CHECK_SECONDS`` and a little more (the
read runs in a thread the task stops waiting for: a name look-up cannot be cut short); an
unexpected exception is that link's verdict ("unexpected"), logged with its traceback.

A verdict younger than ``REUSE_FOR`` is used again instead of reading the link again (a second
press, the same link in a file uploaded again). The page counts the rows that have a verdict;
when no verdict has come for ``SILENT_FOR`` (no worker, a worker lost), the rows still without
one say they could not be checked, and the page stops asking.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from celery import shared_task
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from syncs.editing import LinkCheckFailed, feed_check
from syncs.engine.fetch import FetchError
from syncs.engine.parse.ical import FeedParseError
from syncs.explain import describe
from syncs.models import LinkCheck, OnboardingUpload, Portal

log = logging.getLogger(__name__)

LINK_CHECK_SECONDS = 10.0
REUSE_FOR = timedelta(minutes=10)
SILENT_FOR = timedelta(minutes=2)
# The read runs in a thread of its own; the task waits this much longer than its deadline.
_THREAD_MARGIN = 2.0
UNEXPECTED = "unexpected"


def onboarding_live_request(*, upload: OnboardingUpload) -> int:
    """Ask the worker to read each new link of the file once (the rows that add a sync or change
    its link), except those read less than REUSE_FOR ago. Returns how many rows are checked."""
    now = timezone.now()
    rows = [(index, row) for index, row in enumerate(upload.rows) if row.get("live_key") and not row.get("errors")]
    keys = {row["live_key"] for _index, row in rows}
    fresh = set(
        LinkCheck.objects.filter(account=upload.account, key__in=keys, checked_at__gte=now - REUSE_FOR).values_list("key", flat=True)
    )
    first_of = {}
    for index, row in rows:
        if row["live_key"] not in fresh:
            first_of.setdefault(row["live_key"], index)
    OnboardingUpload.objects.filter(pk=upload.pk).update(live_requested_at=now)
    upload.live_requested_at = now
    indexes = sorted(first_of.values())
    transaction.on_commit(lambda: _in_background(upload.pk, indexes))
    return len(rows)


def _in_background(upload_id: int, indexes: list[int]) -> None:
    threading.Thread(target=_publish, args=(upload_id, indexes), name=f"onboarding-live-{upload_id}", daemon=True).start()


def _publish(upload_id: int, indexes: list[int]) -> None:
    """From a thread: a hung broker costs the thread seconds, not the page."""
    try:
        for index in indexes:
            onboarding_check_link.apply_async((upload_id, index))
    except Exception:  # the broker is down: the page says the links could not be checked
        log.warning("onboarding live checks not queued upload=%s: broker unavailable", upload_id)


@shared_task(ignore_result=True, acks_late=True)
def onboarding_check_link(upload_id: int, index: int) -> None:
    """Read one row's link, unless a verdict on it is fresh, and record the verdict."""
    upload = OnboardingUpload.objects.filter(pk=upload_id).first()
    if upload is None or index >= len(upload.rows):
        return
    row = upload.rows[index]
    key = row.get("live_key")
    if not key or LinkCheck.objects.filter(account_id=upload.account_id, key=key, checked_at__gte=timezone.now() - REUSE_FOR).exists():
        return
    portal = Portal.objects.filter(slug=row.get("portal", "")).first()
    verdict = link_verdict(url=row["url"], timezone=row.get("timezone") or "UTC", portal=portal)
    LinkCheck.objects.create(account_id=upload.account_id, key=key, **verdict)


def link_verdict(*, url: str, timezone: str, portal: Portal | None) -> dict:
    """What reading the link found, as LinkCheck fields; never raises."""
    outcome: dict = {}
    done = threading.Event()

    def read() -> None:
        try:
            found = feed_check(url=url, timezone=timezone, portal=portal, seconds=LINK_CHECK_SECONDS)
            outcome.update(ok=True, events=found.events, https_works=found.https_works)
        except LinkCheckFailed as failed:
            outcome.update(_failure(failed.error), https_works=failed.https_works)
        except (FetchError, FeedParseError) as error:
            outcome.update(_failure(error))
        except Exception:
            log.exception("onboarding link check failed unexpectedly")
            outcome.update(code=UNEXPECTED)
        finally:
            done.set()

    threading.Thread(target=read, name="onboarding-link-check", daemon=True).start()
    if not done.wait(LINK_CHECK_SECONDS + _THREAD_MARGIN):
        return {"ok": False, "code": "timeout", "params": {"deadline": LINK_CHECK_SECONDS}}
    return {"ok": False, "params": {}, **outcome}


def _failure(error: FetchError | FeedParseError) -> dict:
    return {"ok": False, "code": error.code, "params": getattr(error, "params", {}) or {}}


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class LiveProgress:
    asked: bool
    total: int  # rows to check
    done: int  # rows with a verdict
    verdicts: dict[str, LinkCheck]  # by key
    given_up: bool  # no verdict came for SILENT_FOR: the rest could not be checked

    @property
    def waiting(self) -> bool:
        return self.asked and self.done < self.total and not self.given_up


def live_progress(*, upload: OnboardingUpload) -> LiveProgress:
    rows = [row for row in upload.rows if row.get("live_key") and not row.get("errors")]
    if upload.live_requested_at is None:
        return LiveProgress(asked=False, total=len(rows), done=0, verdicts={}, given_up=False)
    keys = {row["live_key"] for row in rows}
    verdicts: dict[str, LinkCheck] = {}
    checks = LinkCheck.objects.filter(
        account_id=upload.account_id, key__in=keys, checked_at__gte=upload.live_requested_at - REUSE_FOR
    ).order_by("checked_at")
    for check in checks:
        verdicts[check.key] = check  # the latest
    done = sum(1 for row in rows if row["live_key"] in verdicts)
    latest = checks.filter(checked_at__gte=upload.live_requested_at).aggregate(at=Max("checked_at"))["at"]
    quiet_since = max(filter(None, [upload.live_requested_at, latest]))
    given_up = done < len(rows) and timezone.now() - quiet_since > SILENT_FOR
    return LiveProgress(asked=True, total=len(rows), done=done, verdicts=verdicts, given_up=given_up)


def verdict_words(check: LinkCheck | None, *, portal: str, given_up: bool = False) -> str:
    """A row's verdict in the reader's words ("" while it is awaited)."""
    if check is None:
        return _("Could not be checked: no worker read it in time. Press “Check each new link live first” again.") if given_up else ""
    if check.ok and not check.events:
        words = _("The link works; the calendar has no bookings or blocks for now.")
    elif check.ok:
        words = ngettext(
            "The link works: %(n)d booking or block.", "The link works: %(n)d bookings and blocks.", check.events
        ) % {"n": check.events}
    elif check.code == UNEXPECTED:
        words = _("Could not be checked: an error on our side (it was logged). Press “Check each new link live first” again.")
    else:
        words = describe(check.code, check.params, portal=portal or None)
    if check.https_works:
        words += " " + _("Its https:// version works: write https:// in the link.")
    return words
