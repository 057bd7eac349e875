"""Delete old history (see syncs/retention.py for what is kept)."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from syncs.models import RESTORE_DAYS
from syncs.retention import prune


class Command(BaseCommand):
    help = (
        "Delete sync runs, removed blocks, export read counts, expired export URLs, finished jobs, undo offers and "
        "ended webhook deliveries older than --days, and the "
        f"properties and syncs removed more than {RESTORE_DAYS} days ago (they can no longer be restored)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=settings.RETENTION_DAYS, help="Keep this many days (default %(default)s).")

    def handle(self, *args, days: int, **options):
        pruned = prune(days=days)
        self.stdout.write(
            f"Pruned, older than {days} days: sync runs {pruned.runs}, removed blocks {pruned.blocks}, "
            f"export read counts {pruned.read_days}, expired export URLs {pruned.tokens}, finished jobs {pruned.jobs}, "
            f"undo offers {pruned.undos}, webhook deliveries {pruned.deliveries}. Deleted for good (removed over {RESTORE_DAYS} days ago): "
            f"properties {pruned.removed_properties}, syncs {pruned.removed_syncs}."
        )
