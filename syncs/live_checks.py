"""Reading someone else's server while an operator waits: the connection form's "check the link
now", the fix checklist's link and https checks.

A web request must never wait long on another server: a feed that drips its bytes, a name
server that does not answer, a calendar built to be slow to read would each hold one of
gunicorn's few threads, and eight of them held every thread (the export, which portals read,
waited with them). So a live check:

* runs within ``LIVE_CHECK_SECONDS`` in all, well under gunicorn's 30 s timeout: the request gets
  its answer ("took too long") when they are up, whatever the other server does. The work runs
  in a thread of its own, because a DNS look-up cannot be cut short; its fetch and its parse
  have the same deadline, so the thread ends soon after;
* runs one at a time per user (a claim on the user's membership row, seen by every web
  process): a second click, or a script, gets "a check is already running";
* takes one of ``CHECKS_PER_PROCESS`` slots of the process, held until the work itself ends:
  however many users click, most threads stay free for pages and the export.

The work handed in must not touch the database or translations (both are per thread): it
fetches and parses, and the caller puts the result into words.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from syncs.engine.fetch import FetchError
from syncs.models import Membership

T = TypeVar("T")

LIVE_CHECK_SECONDS = 10.0
CHECKS_PER_PROCESS = 2
# A claim outlives its check by this much at most, should the process die holding it.
_CLAIM_MARGIN = timedelta(seconds=5)

_slots = threading.BoundedSemaphore(CHECKS_PER_PROCESS)


class CheckBusy(Exception):
    """The check was not started: one of the user's is running, or the process has no free slot."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def live_check_run(*, user, work: Callable[[float], T], seconds: float | None = None) -> T:
    """``work(seconds)``'s result, or its exception; FetchError("timeout") when it takes longer
    than ``seconds`` (default LIVE_CHECK_SECONDS); CheckBusy when it cannot start now."""
    seconds = LIVE_CHECK_SECONDS if seconds is None else seconds
    claim = _claim(user, seconds)
    try:
        if not _slots.acquire(blocking=False):
            raise CheckBusy(_("Many links are being checked right now: try again in a moment."))
        return _run_within(work, seconds)
    finally:
        if claim is not None:
            Membership.objects.filter(user=user, live_check_until=claim).update(live_check_until=None)


def _claim(user, seconds: float):
    """The claim's expiry, or None for a user with no membership (who reaches no live check)."""
    now = timezone.now()
    until = now + timedelta(seconds=seconds) + _CLAIM_MARGIN
    # One row per person, whatever the number of their accounts: the oldest membership.
    mine = Membership.objects.filter(pk__in=Membership.objects.filter(user=user).order_by("pk").values("pk")[:1])
    if mine.filter(Q(live_check_until__isnull=True) | Q(live_check_until__lte=now)).update(live_check_until=until):
        return until
    if mine.exists():
        raise CheckBusy(_("A check of a link is already running for you: wait for its answer, then try again."))
    return None


def _run_within(work: Callable[[float], T], seconds: float) -> T:
    outcome: dict = {}
    finished = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = work(seconds)
        except BaseException as error:  # handed to the request, which raises it
            outcome["error"] = error
        finally:
            _slots.release()
            finished.set()

    try:
        threading.Thread(target=run, name="live-check", daemon=True).start()
    except BaseException:
        _slots.release()
        raise
    # A little over the work's own deadline, which it checks between its steps.
    if not finished.wait(seconds + 1.0):
        raise FetchError("timeout", params={"deadline": seconds})
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
