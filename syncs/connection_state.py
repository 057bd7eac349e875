"""How a connection's health changes: failures count up and back off, then pause it; a sync
that works, or the operator switching it back on, resumes it. Each automatic pause is an
episode, so that the operator is told once per episode.

Writes go through ``filter(pk=...).update(...)`` on named fields only, so that a state change
never overwrites the operator's switch flipped at the same moment.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from syncs.models import Connection, PauseEpisode
from syncs.scheduling import jittered
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

    Pausing here also opens the pause episode.
    """
    failures = connection.consecutive_failures + 1
    updates = {
        "last_attempt_at": now,
        "consecutive_failures": failures,
        "last_error_code": code,
        "last_error_params": params,
    }
    if connection.paused_at is not None:
        return updates  # already paused: a failed manual retry does not start a new episode
    if permanent or failures >= PAUSE_AFTER_FAILURES:
        updates.update(paused_at=now, pause_reason=code, pause_params=params)
        PauseEpisode.objects.create(connection=connection, started_at=now, reason=code, params=params)
    else:
        updates["next_sync_at"] = now + retry_delay(
            failures=failures, interval=connection.sync_interval, retry_after=retry_after
        )
    return updates


# What a sync that works leaves on the connection, whatever it found: no failures, no pause,
# no probe.
HEALTHY = {
    "consecutive_failures": 0,
    "last_error_code": "",
    "last_error_params": {},
    "paused_at": None,
    "pause_reason": "",
    "pause_params": {},
    **PROBE_CLEARED,
}


def success_times(*, connection: Connection, now: datetime) -> dict:
    """The connection's times after a sync that worked: the rest of its state is HEALTHY."""
    return {"last_attempt_at": now, "last_success_at": now, "next_sync_at": now + jittered(connection.sync_interval)}


def success_updates(*, connection: Connection, now: datetime, ended_by: str = "sync") -> dict:
    """The connection fields to write after a sync that worked; it ends any pause."""
    if connection.paused_at is not None:
        _end_episode(connection_id=connection.pk, now=now, ended_by=ended_by)
    # A copy: HEALTHY's empty dicts must not be shared with whoever changes what it gets.
    return {**success_times(connection=connection, now=now), **copy.deepcopy(HEALTHY)}


def _end_episode(*, connection_id: int, now: datetime, ended_by: str) -> None:
    PauseEpisode.objects.filter(connection_id=connection_id, ended_at__isnull=True).update(
        ended_at=now, ended_by=ended_by
    )


def connection_switch(
    *, connection: Connection, enabled: bool, now: datetime | None = None, ended_by: str = "operator"
) -> None:
    """The operator's on/off switch. Switching on clears an automatic pause and syncs soon.

    ``ended_by`` says who ended the pause episode: "operator", or "probe" for automatic resumes.
    """
    now = now or timezone.now()
    with transaction.atomic():
        if not enabled:
            # Through the one settings service: a sync already claimed or under way is dropped.
            connection_settings_update(connection_id=connection.pk, values={"enabled": False}, now=now)
            return
        _end_episode(connection_id=connection.pk, now=now, ended_by=ended_by)
        connection_settings_update(
            connection_id=connection.pk,
            values={
                "enabled": True, "paused_at": None, "pause_reason": "", "pause_params": {}, "consecutive_failures": 0,
                "next_sync_at": now, **PROBE_CLEARED,
            },
            now=now,
        )
    connection.refresh_from_db()
