"""Create the demo account: an operator, three properties, and their portal connections.

The import URLs point at the demo portal feeds the app itself serves under /demo/portal/ (see
syncs/demo.py), including one that answers 404 so that a paused sync shows.

With ``--sync`` (what `make run` does) the demo is imported at once, by the real engine, and the
pause email goes out: the first page a newcomer sees shows synced calendars, the paused sync
and its reason, whatever the order in which web, worker and beat start afterwards. The web app
that serves the demo feeds is not running yet, so this command serves them itself meanwhile, at
the same address (DEMO_PORTAL_BASE_URL), with the same Django app.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.core.wsgi import get_wsgi_application
from django.db import transaction
from django.urls import Resolver404, resolve, reverse

from syncs.engine.fetch import close_kept_connections
from syncs.models import Account, Connection, Membership, Portal, Property
from syncs.notifications import pause_notifications_send

log = logging.getLogger(__name__)

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"
DEMO_ACCOUNT = "Demo Rentals"
DEMO_PROPERTIES = (
    ("Casa do Rio", "Europe/Lisbon", "casa-do-rio"),
    ("Apartamento Sol", "Europe/Madrid", "apartamento-sol"),
    ("Beach Loft Algarve", "Europe/Lisbon", "beach-loft"),
)
DEMO_PORTALS = ("airbnb", "booking", "vrbo")


class Command(BaseCommand):
    help = "Create the demo account, operator (demo / demo), properties and connections."

    def add_arguments(self, parser):
        parser.add_argument(
            "--if-empty", action="store_true", help="Do nothing when the database already has an account."
        )
        parser.add_argument(
            "--sync", action="store_true",
            help="Import the demo feeds now, in this process, and send the pause email (what `make run` does).",
        )

    def handle(self, *args, if_empty: bool = False, sync: bool = False, **options):
        if not settings.DEMO_MODE:
            raise CommandError("seed_demo needs DEMO_MODE=1: its feeds are served only in demo mode.")
        if if_empty and Account.objects.exists():
            self.stdout.write("Database already has data: demo not seeded again.")
            return
        with transaction.atomic():
            self._seed()
        if sync:
            self._sync()
        self.stdout.write(self.style.SUCCESS(f"Demo ready. Log in as {DEMO_USERNAME} / {DEMO_PASSWORD}"))

    def _sync(self) -> None:
        """Import every demo feed that is due, serving the feeds from here while it runs."""
        address = urlsplit(settings.DEMO_PORTAL_BASE_URL)
        try:
            server = make_server(
                address.hostname or "127.0.0.1", address.port or 80, _demo_feeds_only(get_wsgi_application()),
                handler_class=_QuietHandler,
            )
        except OSError as error:
            # Something else listens there: the worker imports the demo on its first turn instead.
            self.stdout.write(f"Demo not imported now ({address.netloc} is busy: {error.strerror}); the worker will.")
            return
        thread = threading.Thread(target=server.serve_forever, name="demo-feeds", daemon=True)
        thread.start()
        try:
            call_command("sync_connections", "--due", stdout=self.stdout)
            pause_notifications_send()
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            close_kept_connections()

    def _seed(self) -> None:
        account, _ = Account.objects.get_or_create(name=DEMO_ACCOUNT)
        user, created = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME, defaults={"email": "demo@example.com", "first_name": "Demo"}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        Membership.objects.update_or_create(
            user=user, account=account, defaults={"role": Membership.Role.OWNER, "is_current": True}
        )
        portals = {portal.slug: portal for portal in Portal.objects.filter(slug__in=DEMO_PORTALS)}
        base = settings.DEMO_PORTAL_BASE_URL
        for name, zone, key in DEMO_PROPERTIES:
            prop, _ = Property.objects.get_or_create(account=account, name=name, defaults={"timezone": zone})
            for slug in DEMO_PORTALS:
                feed = reverse("demo-portal-feed", kwargs={"portal": slug, "key": f"{key}-{slug}"})
                Connection.objects.get_or_create(
                    property=prop, portal=portals[slug], defaults={"import_url": f"{base}{feed}"}
                )


def _demo_feeds_only(app):
    """The app, for its demo portal feeds only: anything else (a browser opened early) is told
    to come back, so that nobody logs in to a server about to go away."""

    def serve(environ, start_response):
        try:
            name = resolve(environ.get("PATH_INFO", "")).url_name
        except Resolver404:
            name = None
        if name != "demo-portal-feed":
            start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("Retry-After", "2")])
            return [b"channelmgr is starting: try again in a moment.\n"]
        return app(environ, start_response)

    return serve


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:
        log.debug("demo feed " + format, *args)
