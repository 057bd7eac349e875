"""Run syncs inline, without Celery: to debug a feed, or for cron users."""

from __future__ import annotations

import functools
import time

from django.core.management.base import BaseCommand, CommandError

from syncs.engine.lease import connection_release_lease, connections_claim_due
from syncs.engine.task import connection_sync_leased
from syncs.explain import describe
from syncs.models import Connection, SyncRun


class Command(BaseCommand):
    help = "Sync connections now, in this process, printing one line per connection."

    def add_arguments(self, parser):
        parser.add_argument(
            "--connection", type=int, nargs="+", action="extend", default=[], metavar="ID",
            help="Sync these connections (even when paused or switched off).",
        )
        parser.add_argument("--due", action="store_true", help="Sync every connection that is due now.")

    def handle(self, *args, connection: list[int], due: bool, **options):
        if not connection and not due:
            raise CommandError("Say which connections: --connection ID [ID ...] and/or --due.")
        missing = set(connection) - set(Connection.objects.filter(pk__in=connection).values_list("pk", flat=True))
        if missing:
            raise CommandError(f"No connection with id {', '.join(map(str, sorted(missing)))}.")
        jobs = [
            (pk, functools.partial(connection_sync_leased, connection_id=pk, trigger=SyncRun.Trigger.MANUAL, switched_off_too=True))
            for pk in connection
        ]
        if due:
            claims = connections_claim_due()
            for claim in claims:
                if claim.connection_id in connection:  # synced above, as asked
                    connection_release_lease(connection_id=claim.connection_id, holder=claim.holder)
            jobs += [
                (
                    claim.connection_id,
                    functools.partial(connection_sync_leased, connection_id=claim.connection_id, holder=claim.holder),
                )
                for claim in claims
                if claim.connection_id not in connection
            ]
        for pk, sync in jobs:
            self._sync(pk, sync)
        if not jobs:
            self.stdout.write("Nothing is due.")

    def _sync(self, pk: int, sync) -> None:
        started = time.monotonic()
        run = sync()
        elapsed_ms = (time.monotonic() - started) * 1000
        name = str(Connection.objects.select_related("property", "portal").get(pk=pk))
        if run is None:
            self.stdout.write(f"{pk} {name}: skipped (switched off, export-only, or another worker has it)")
            return
        counts = f"+{run.events_added} ~{run.events_updated} -{run.events_removed}"
        if run.removals_held:
            counts += f" held {run.events_held}"
        line = f"{pk} {name}: {run.outcome} {counts} {elapsed_ms:.0f} ms"
        if run.error_code:
            line += f" ({describe(run.error_code, run.error_params)})"
        self.stdout.write(line)
