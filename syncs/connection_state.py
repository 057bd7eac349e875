"""How a connection's health changes: failures count up and back off, then pause it; a sync
that works resumes it. Each automatic pause is an episode, so that the operator is told once per
episode; switching a paused sync back on starts a check, and only a fetch that works ends the
episode. The automatic pauses and resumes are written to the activity log, with no user.

Writes go through ``filter(pk=...).update(...)`` on named fields only, so that a state change
never overwrites the operator's switch flipped at the same moment.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Subquery
from django.utils import timezone

from syncs.activity import activity_record_automatic
from syncs.engine.lease import jittered
from syncs.models import Activity, Connection, PauseEpisode
from syncs.sync_settings import connection_settings_update

# Transient failures in a row before the connection is paused.
PAUSE_AFTER_FAILURES = 3
# The first retry after a transient failure; each further failure doubles it, up to the interval.
FIRST_RETRY = timedelta(minutes=5)
# A portal's Retry-After is honoured up to this long.
MAX_RETRY_AFTER = timedelta(hours=24)
# A running connection has no background probe (see syncs/probing.py).
PROBE_CLEARED = {"probe_next_at": None, "probe_failures": 0, "ready_to_resume_at": None}


def retry_delay(*, failures: int, interval: timedelta, retry_after: int | None = None) -> timedelta:
    """5, 10, 20... minutes after the 1st, 2nd, 3rd... failure, capped at the sync interval,
    and never sooner than the portal asked for."""
    delay = min(FIRST_RETRY * 2 ** max(failures - 1, 0), interval)
    if retry_after:
        delay = max(delay, min(timedelta(seconds=retry_after), MAX_RETRY_AFTER))
    return delay


def failure_updates(
    *, connection: Connection, code: str, params: dict, permanent: bool, retry_after: int | None, now: datetime
) -> dict:
    """The connection fields to write after a failed sync (called inside the run's transaction).

    Pausing here also opens the pause episode, or continues the one the operator was told of.
    """
    failures = connection.consecutive_failures + 1
    updates = {
        "last_attempt_at": now,
        "consecutive_failures": failures,
        "last_error_code": code,
        "last_error_params": params,
    }
    if connection.paused_at is not None:
        # Already paused: a failed "Sync now", or the check after switching it back on. The same
        # episode goes on (no new email), saying the newest reason; a check that failed pauses
        # the sync again.
        updates.update(pause_reason=code, pause_params=params, checking_since=None)
        _episode_goes_on(connection=connection, code=code, params=params, now=now)
        return updates
    if permanent or failures >= PAUSE_AFTER_FAILURES:
        updates.update(paused_at=now, pause_reason=code, pause_params=params, checking_since=None)
        _episode_open(connection=connection, code=code, params=params, now=now)
    else:
        updates["next_sync_at"] = now + retry_delay(
            failures=failures, interval=connection.sync_interval, retry_after=retry_after
        )
    return updates


def _episode_open(*, connection: Connection, code: str, params: dict, now: datetime) -> None:
    """Start a pause episode, or reopen the last one if the operator was told of its pause and
    not yet of its end: to them it never ended, and a "Restored" email now would be untrue."""
    last = PauseEpisode.objects.filter(connection_id=connection.pk).order_by("-started_at", "-pk").values("pk")[:1]
    reopened = PauseEpisode.objects.filter(
        pk=Subquery(last), ended_at__isnull=False, notified_at__isnull=False, restored_notified_at__isnull=True
    ).update(ended_at=None, ended_by="", reason=code, params=params, resume_requested_by="", resume_failed_at=None)
    if not reopened:
        PauseEpisode.objects.create(connection_id=connection.pk, started_at=now, reason=code, params=params)
    activity_record_automatic(
        action=Activity.Action.PAUSED, connection_id=connection.pk, property_id=connection.property_id,
        params={"code": code, "params": params}, when=now,
    )


def _episode_goes_on(*, connection: Connection, code: str, params: dict, now: datetime) -> None:
    episode = PauseEpisode.objects.open().filter(connection_id=connection.pk)
    check_failed = episode.filter(resume_requested_by__gt="").update(
        reason=code, params=params, resume_requested_by="", resume_failed_at=now
    )
    if check_failed:
        activity_record_automatic(
            action=Activity.Action.PAUSED, connection_id=connection.pk, property_id=connection.property_id,
            params={"code": code, "params": params, "again": True}, when=now,
        )
    else:
        episode.update(reason=code, params=params)


# What a sync that works leaves on the connection, whatever it found: no failures, no pause,
# no probe.
HEALTHY = {
    "consecutive_failures": 0,
    "last_error_code": "",
    "last_error_params": {},
    "paused_at": None,
    "pause_reason": "",
    "pause_params": {},
    "checking_since": None,
    **PROBE_CLEARED,
}


def success_times(*, connection: Connection, now: datetime) -> dict:
    """The connection's times after a sync that worked: the rest of its state is HEALTHY."""
    return {"last_attempt_at": now, "last_success_at": now, "next_sync_at": now + jittered(connection.sync_interval)}


def success_updates(*, connection: Connection, now: datetime, ended_by: str = "sync") -> dict:
    """The connection fields to write after a sync that worked; it ends any pause."""
    if connection.paused_at is not None:
        _episode_end(connection=connection, now=now, ended_by=ended_by)
    # A copy: HEALTHY's empty dicts must not be shared with whoever changes what it gets.
    return {**success_times(connection=connection, now=now), **copy.deepcopy(HEALTHY)}


def _episode_end(*, connection: Connection, now: datetime, ended_by: str) -> None:
    """End the open episode: a fetch worked. Whoever switched the sync back on (the operator, the
    background check) is who ended it; otherwise the sync that worked did."""
    episode = PauseEpisode.objects.open().filter(connection_id=connection.pk).values("pk", "resume_requested_by").first()
    if episode is None:
        return
    ended_by = episode["resume_requested_by"] or ended_by
    PauseEpisode.objects.filter(pk=episode["pk"]).update(ended_at=now, ended_by=ended_by)
    activity_record_automatic(
        action=Activity.Action.RESUMED, connection_id=connection.pk, property_id=connection.property_id,
        params={"by": ended_by}, when=now,
    )


def connection_switch(*, connection: Connection, enabled: bool, now: datetime | None = None, by: str = "operator") -> bool:
    """The on/off switch. Switching off takes the lease back; switching on syncs soon.

    Switching on a sync paused by errors does not end its pause: the sync is "switched on,
    checking" until its next fetch works (which ends the episode) or fails (which pauses it
    again, in the same episode). ``by`` says who switched it on: "operator", or "probe" for the
    background check's automatic resume. Returns whether such a check was started: the caller
    asks for that fetch at once.
    """
    now = now or timezone.now()
    with transaction.atomic():
        row = Connection.objects.filter(pk=connection.pk)
        if not enabled:
            # Through the one settings service: a sync already claimed or under way is dropped.
            connection_settings_update(connection_id=connection.pk, values={"enabled": False}, now=now)
            checking = False
        elif row.select_for_update().values_list("paused_at", flat=True).first() is not None:
            connection_settings_update(
                connection_id=connection.pk, values={"enabled": True, "checking_since": now, **PROBE_CLEARED}, now=now
            )
            PauseEpisode.objects.open().filter(connection_id=connection.pk).update(resume_requested_by=by)
            checking = True
        else:
            connection_settings_update(connection_id=connection.pk, values={"enabled": True}, now=now)
            checking = False
    connection.refresh_from_db()
    return checking
