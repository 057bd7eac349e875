"""Every exporting connection, and every property, has an export URL from the moment it exists,
however it was created (form, admin, seed, shell)."""

from __future__ import annotations

from django.db.models.signals import post_save
from django.dispatch import receiver

from syncs.export_tokens import export_token_ensure
from syncs.models import Connection, Property


@receiver(post_save, sender=Property, dispatch_uid="property_export_url")
def give_property_an_export_url(sender, instance: Property, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        export_token_ensure(property=instance)


@receiver(post_save, sender=Connection, dispatch_uid="connection_export_url")
def give_connection_an_export_url(sender, instance: Connection, raw: bool = False, **kwargs) -> None:
    if instance.exports and not raw:
        export_token_ensure(property=instance.property, connection=instance)
