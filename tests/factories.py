from __future__ import annotations

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from syncs.blocks import property_calendar_changed
from syncs.models import Account, Block, Connection, Membership, Portal, Property, SyncRun


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account

    name = factory.Sequence(lambda n: f"Rentals {n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"operator{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct horse battery")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    account = factory.SubFactory(AccountFactory)
    # Owners unless a test says otherwise: the operator of the tests written before roles.
    role = Membership.Role.OWNER
    email_alerts = factory.LazyAttribute(lambda m: Membership.defaults_for(m.role)["email_alerts"])


class PropertyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Property

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"Flat {n}")
    timezone = "Europe/Lisbon"


def portal(slug: str = "airbnb") -> Portal:
    """The seeded portal (the data migration created them all)."""
    return Portal.objects.get(slug=slug)


class ConnectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Connection

    property = factory.SubFactory(PropertyFactory)
    portal = factory.LazyFunction(portal)
    import_url = factory.Sequence(lambda n: f"https://www.airbnb.com/calendar/ical/{1000 + n}.ics?s=secret{n}")


class BlockFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Block

    property = factory.SubFactory(PropertyFactory)
    start_date = factory.LazyFunction(lambda: timezone.localdate() + timedelta(days=10))
    end_date = factory.LazyAttribute(lambda b: b.start_date + timedelta(days=3))

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # As every writer of blocks does (syncs.blocks): the calendar's version, its double bookings.
        block = super()._create(model_class, *args, **kwargs)
        property_calendar_changed(property_id=block.property_id)
        return block


class SyncRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SyncRun

    connection = factory.SubFactory(ConnectionFactory)
    outcome = "ok_changed"
