"""Create the demo account: an operator, three properties, and their portal connections.

The import URLs point at the demo portal feeds the app itself serves under /demo/portal/ (see
syncs/demo.py), including one that answers 404 so that a paused sync shows.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.urls import reverse

from syncs.models import Account, Connection, Membership, Portal, Property

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

    def handle(self, *args, if_empty: bool = False, **options):
        if not settings.DEMO_MODE:
            raise CommandError("seed_demo needs DEMO_MODE=1: its feeds are served only in demo mode.")
        if if_empty and Account.objects.exists():
            self.stdout.write("Database already has data: demo not seeded again.")
            return
        with transaction.atomic():
            self._seed()
        self.stdout.write(self.style.SUCCESS(f"Demo ready. Log in as {DEMO_USERNAME} / {DEMO_PASSWORD}"))

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
