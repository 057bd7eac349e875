"""Delete old history (see syncs/retention.py for what is kept)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from syncs.models import RESTORE_DAYS
from syncs.retention import prune


class Command(BaseCommand):
    help = (
        "Delete sync runs, removed blocks, export read counts and expired export URLs older than --days, and the "
        f"properties and syncs removed more than {RESTORE_DAYS} days ago (they can no longer be restored)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=settings.RETENTION_DAYS, help="Keep this many days (default %(default)s).")

    def handle(self, *args, days: int, **options):
        pruned = prune(days=days)
        self.stdout.write(
            f"Pruned {pruned.runs} sync runs, {pruned.blocks} removed blocks, "
            f"{pruned.read_days} export read counts, {pruned.tokens} expired export URLs, {pruned.jobs} finished jobs, "
            f"{pruned.undos} undo offers (older than {days} days); "
            f"deleted for good {pruned.removed_properties} removed properties and {pruned.removed_syncs} removed syncs."
        )
