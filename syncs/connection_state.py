"""The operator's on/off switch of a connection. Switching a sync paused by errors back on does not
end its pause: it starts a check, and only a fetch that works ends the pause episode (the sync's
record, syncs.engine.record, which keeps each connection's health: failures count up and back
off, then pause it; a sync that works resumes it).

Writes go through ``filter(pk=...).update(...)`` on named fields only, so that the switch never
overwrites a sync's record made at the same moment.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from syncs.models import Connection, PauseEpisode
from syncs.sync_settings import connection_settings_update

# A running connection has no background probe (see syncs/probing.py).
PROBE_CLEARED = {"probe_next_at": None, "probe_failures": 0, "ready_to_resume_at": None}


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
