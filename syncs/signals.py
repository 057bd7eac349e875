"""Every exporting connection, and every property, has an export URL from the moment it exists,
however it was created (form, admin, seed, shell), and every connection saved whole has its state
decided on what was saved (syncs.sync_state); a deleted sync's nights leave the
property's exports at once; and a language chosen on the log-in page is saved at sign-in."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from syncs.blocks import property_calendar_changed
from syncs.export_tokens import export_token_ensure
from syncs.languages import language_adopt_at_sign_in
from syncs.models import Account, Connection, Property
from syncs.sync_state import state_record


@receiver(post_save, sender=Property, dispatch_uid="property_export_url")
def give_property_an_export_url(sender, instance: Property, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        export_token_ensure(property=instance)


@receiver(post_save, sender=Property, dispatch_uid="property_saved_main_zone")
@receiver(post_delete, sender=Property, dispatch_uid="property_deleted_main_zone")
def property_changes_the_main_zone(sender, instance: Property, raw: bool = False, **kwargs) -> None:
    Account.main_time_zone_changed(instance.account_id)


@receiver(post_save, sender=Connection, dispatch_uid="connection_export_url")
def give_connection_an_export_url(sender, instance: Connection, raw: bool = False, **kwargs) -> None:
    """Its export URL; then its state, decided on what was saved (a row saved whole may change
    any field the rules read)."""
    if raw:
        return
    if instance.exports:
        export_token_ensure(property=instance.property, connection=instance)
    state_record([instance.pk])


@receiver(post_delete, sender=Connection, dispatch_uid="connection_deleted_calendar_changed")
def deleted_sync_changes_the_calendar(sender, instance: Connection, **kwargs) -> None:
    """Its blocks went with it (in the same transaction): the property's calendar changed."""
    property_calendar_changed(property_id=instance.property_id)


@receiver(user_logged_in, dispatch_uid="language_chosen_before_sign_in")
def save_the_language_chosen_before_sign_in(sender, request, user, **kwargs) -> None:
    language_adopt_at_sign_in(request=request, user=user)
