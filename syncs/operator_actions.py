"""What an operator does from the pages, each recorded in the activity log with who did it."""

from __future__ import annotations

from datetime import date

from django.core.exceptions import ValidationError
from django.db import transaction

from syncs.activity import activity_record
from syncs.blocks import block_create_manual, block_remove_manual
from syncs.clean_text import clean
from syncs.connection_state import connection_switch
from syncs.date_inputs import nights_error
from syncs.engine.record import connection_accept_held_answer
from syncs.export_tokens import export_token_ensure, export_token_rotate
from syncs.models import Activity, Block, Connection, Property, Undo
from syncs.sync_requests import connection_request_sync
from syncs.sync_settings import connection_settings_update
from syncs.undo import undo_offer_switch_off


def connection_set_enabled(*, connection: Connection, enabled: bool, user) -> bool:
    """The operator's switch. Returns whether it started the check of a paused sync: its feed is
    read at once, and the pause ends only if that read works (syncs/engine/record.py)."""
    with transaction.atomic():
        checking = connection_switch(connection=connection, enabled=enabled)
        action = Activity.Action.SWITCHED_ON if enabled else Activity.Action.SWITCHED_OFF
        activity_record(user=user, action=action, connection=connection)
        if checking:
            connection_request_sync(connection=connection, user=user, pressed=False)
    return checking


def connection_switch_off(*, connection: Connection, user) -> Undo | None:
    """The operator's switch, off, with what puts the sync back as it was (None if it was off
    already: there is nothing to put back)."""
    with transaction.atomic():
        was_on = Connection.objects.select_for_update().filter(pk=connection.pk, enabled=True).exists()
        connection_set_enabled(connection=connection, enabled=False, user=user)
        if not was_on:
            return None
        return undo_offer_switch_off(user=user, account=connection.property.account, connections=[connection])


def connection_read_new_link(*, connection: Connection, user) -> None:
    """After a new link was saved for a sync paused by errors (usually its fix): switch it back on
    and have a worker read the link at once. The sync is "switched on, checking" meanwhile (the
    page that follows says so and looks again until the read is in); the pause ends only if the
    read works. The request never waits on the portal (its live check already had its turn)."""
    if connection_switch(connection=connection, enabled=True, by="edit"):
        connection_request_sync(connection=connection, user=user, pressed=False)
    connection.refresh_from_db()


def connection_accept_held(*, connection: Connection, user) -> bool:
    """Apply the removals the shrink guard held, after the operator checked them on the portal:
    the answer they saw is accepted, and a worker syncs at once to apply it (the page never
    waits on the portal). Returns whether there was a held answer to accept."""
    with transaction.atomic():
        if not connection_accept_held_answer(connection=connection):
            return False
        activity_record(
            user=user, action=Activity.Action.HELD_ACCEPTED, connection=connection,
            params={"removals": connection.held_removals},
        )
        connection_request_sync(connection=connection, user=user, pressed=False)
    return True


def connection_rotate_export(*, connection: Connection, user) -> None:
    with transaction.atomic():
        export_token_rotate(token=export_token_ensure(property=connection.property, connection=connection))
        activity_record(user=user, action=Activity.Action.EXPORT_ROTATED, connection=connection)


def property_block_add(*, property: Property, start: date, end: date, kind: str, summary: str, user) -> Block:
    """Close nights here; refused (ValidationError) outside the dates the service keeps."""
    refused = nights_error(start, end, today=property.local_today())
    if refused:
        raise ValidationError(refused)
    summary = " ".join(clean(summary).split())
    with transaction.atomic():
        block = block_create_manual(property=property, start=start, end=end, kind=kind, summary=summary)
        activity_record(
            user=user, action=Activity.Action.BLOCK_ADDED, property=property,
            params={"start": start.isoformat(), "end": end.isoformat(), "kind": kind},
        )
    return block


def property_block_remove(*, block: Block, user) -> None:
    with transaction.atomic():
        block_remove_manual(block=block)
        activity_record(
            user=user, action=Activity.Action.BLOCK_REMOVED, property=block.property,
            params={"start": block.start_date.isoformat(), "end": block.end_date.isoformat()},
        )


def connection_use_https(*, connection: Connection, user) -> None:
    """Switch an http:// import link to its https:// variant (the seed's "add an s")."""
    if not connection.import_url.startswith("http://"):
        return
    with transaction.atomic():
        # An edit of the link (read from scratch, a sync of the old link dropped), and the
        # https:// variant is known to work.
        connection_settings_update(
            connection_id=connection.pk,
            values={"import_url": "https://" + connection.import_url[len("http://"):], "https_works": True},
        )
        activity_record(user=user, action=Activity.Action.CONNECTION_EDITED, connection=connection,
                        params={"fields": ["import_url"]})
