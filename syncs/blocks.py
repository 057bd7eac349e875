"""Blocks made here (manual blocks and direct bookings), and the calendar version every change
to a property's blocks must bump so that its exports change at once."""

from __future__ import annotations

from datetime import date, datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from syncs.conflicts import double_bookings_record
from syncs.models import Block, BlockKind, Property


def property_calendar_changed(*, property_id: int, now: datetime | None = None, nights_changed: bool = True) -> None:
    """Call inside the transaction that changed the property's blocks (or which of them take
    nights: a sync removed or restored), removed property or not. Its double bookings are
    stored again there too (after the row's update, which holds the property until the commit),
    unless only what no night depends on changed (``nights_changed`` False: a summary)."""
    now = now or timezone.now()
    Property.all_objects.filter(pk=property_id).update(calendar_version=F("calendar_version") + 1, calendar_changed_at=now)
    if nights_changed:
        double_bookings_record(property_ids=[property_id], now=now)


def block_create_manual(
    *, property: Property, start: date, end: date, kind: str = BlockKind.BLOCKED, summary: str = ""
) -> Block:
    """Close nights here (a manual block, or a direct booking with kind "reserved")."""
    if end <= start:
        raise ValidationError(_("The check-out day must be after the first night."))
    if kind not in BlockKind.values:
        raise ValidationError(_("Unknown kind of block."))
    now = timezone.now()
    with transaction.atomic():
        block = Block.objects.create(
            property=property, source=None, kind=kind, start_date=start, end_date=end,
            summary=summary[:255], first_seen_at=now, last_seen_at=now,
        )
        property_calendar_changed(property_id=property.pk, now=now)
    return block


def block_remove_manual(*, block: Block) -> None:
    """Open the nights of a block made here again (soft delete: history keeps it)."""
    if block.source_id is not None:
        raise ValidationError(_("Blocks that come from a portal change only on that portal."))
    now = timezone.now()
    with transaction.atomic():
        if Block.objects.filter(pk=block.pk, removed_at__isnull=True).update(removed_at=now):
            property_calendar_changed(property_id=block.property_id, now=now)


# The note of the block the fix checklist adds, stored in English and shown in the reader's words.
TEST_BLOCK_SUMMARY = gettext_noop("Test block (fix checklist)")


def is_test_block_note(summary: str) -> bool:
    """Whether a block's note is the test block's, as stored now or, before, in the words of
    whoever added it."""
    if summary == TEST_BLOCK_SUMMARY:
        return True
    return any(summary == _test_block_note_in(language) for language, _name in settings.LANGUAGES)


def _test_block_note_in(language: str) -> str:
    with translation.override(language):
        return _(TEST_BLOCK_SUMMARY)
