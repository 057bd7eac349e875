"""Django admin for every model. Staff who are not superusers see only their own account."""

from __future__ import annotations

from django.contrib import admin
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from syncs.models import (
    Account,
    Activity,
    Block,
    BlockChange,
    Connection,
    Membership,
    PauseEpisode,
    Portal,
    Property,
    SyncRun,
)
from syncs.sync_settings import (
    connection_settings_update,
    portal_settings_update,
    property_settings_update,
)


def _changed_values(obj, form) -> dict:
    """The fields the admin's form changed, as the object now holds them: only these are written,
    never the whole row, whose other fields the sync engine writes at any moment."""
    return {name: getattr(obj, name) for name in form.changed_data}


class AccountScopedAdmin(admin.ModelAdmin):
    """Scopes the list, the detail pages and the foreign-key choices to the staff member's account."""

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.for_user(request.user)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        if not request.user.is_superuser and hasattr(related.objects, "for_user"):
            kwargs["queryset"] = related.objects.for_user(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(memberships__user=request.user)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "account", "language", "created_at")
    list_select_related = ("user", "account")
    search_fields = ("user__username", "account__name")

    def has_module_permission(self, request):
        return request.user.is_superuser


@admin.register(Portal)
class PortalAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "pickup_delay_min_minutes", "pickup_delay_max_minutes", "position")
    ordering = ("position",)

    def save_model(self, request, obj: Portal, form, change: bool) -> None:
        if not change:
            return super().save_model(request, obj, form, change)
        # New labels read every feed of the portal again, and void the polls made with the old.
        portal_settings_update(portal_id=obj.pk, values=_changed_values(obj, form))


@admin.register(Property)
class PropertyAdmin(AccountScopedAdmin):
    list_display = ("name", "account", "timezone", "updated_at")
    list_filter = ("account",)
    list_select_related = ("account",)
    search_fields = ("name",)
    # Engine-owned: bumped with every change to the property's blocks.
    readonly_fields = ("calendar_version", "calendar_changed_at", "created_at", "updated_at")

    def save_model(self, request, obj: Property, form, change: bool) -> None:
        if not change:
            return super().save_model(request, obj, form, change)
        # A new zone reads every feed of the property again, and voids the polls made in the old.
        property_settings_update(property_id=obj.pk, values={**_changed_values(obj, form), "updated_at": timezone.now()})


@admin.register(Connection)
class ConnectionAdmin(AccountScopedAdmin):
    list_display = ("__str__", "direction", "enabled", "status_label", "consecutive_failures", "last_success_at", "next_sync_at")
    list_filter = ("enabled", "direction", "portal")
    list_select_related = ("property", "portal")
    search_fields = ("property__name",)
    # The sync engine's own fields: shown, never edited here (a form saving them whole would put
    # back what the engine changed meanwhile). The operator's switch and settings stay editable.
    readonly_fields = (
        "paused_at", "pause_reason", "pause_params", "consecutive_failures", "last_error_code", "last_error_params",
        "sync_requested_at", "last_attempt_at", "last_success_at", "next_sync_at", "etag", "last_modified",
        "body_fingerprint", "held_answer", "held_since", "held_removals", "held_accepted_answer", "probe_next_at",
        "probe_failures", "ready_to_resume_at", "https_works", "lease_holder", "lease_until", "created_at",
        "updated_at",
    )

    def save_model(self, request, obj: Connection, form, change: bool) -> None:
        if not change:
            obj.next_sync_at = timezone.now()  # a new sync is read at once, as the add form does
            return super().save_model(request, obj, form, change)
        # As the operator's edit form does, through the one settings service: only the changed
        # fields are written, a new link is read from scratch, and a sync in flight with the old
        # settings is dropped.
        connection_settings_update(connection_id=obj.pk, values={**_changed_values(obj, form), "updated_at": timezone.now()})

    @admin.display(description=_("status"))
    def status_label(self, obj: Connection) -> str:
        return obj.get_status_display()


@admin.register(Block)
class BlockAdmin(AccountScopedAdmin):
    list_display = ("property", "source", "kind", "start_date", "end_date", "removed_at")
    list_filter = ("kind",)
    list_select_related = ("property", "source__portal", "source__property")
    date_hierarchy = "start_date"
    raw_id_fields = ("removed_by_run",)


@admin.register(SyncRun)
class SyncRunAdmin(AccountScopedAdmin):
    list_display = ("connection", "trigger", "started_at", "outcome", "events_added", "events_updated", "events_removed", "removals_held")
    list_filter = ("outcome", "trigger", "removals_held")
    list_select_related = ("connection__property", "connection__portal")
    date_hierarchy = "started_at"


@admin.register(PauseEpisode)
class PauseEpisodeAdmin(AccountScopedAdmin):
    list_display = ("connection", "reason", "started_at", "ended_at", "ended_by", "notified_at")
    list_filter = ("reason", "ended_by")
    list_select_related = ("connection__property", "connection__portal")
    date_hierarchy = "started_at"


@admin.register(BlockChange)
class BlockChangeAdmin(admin.ModelAdmin):
    list_display = ("block", "run", "action", "old_start_date", "old_end_date", "new_start_date", "new_end_date")
    list_filter = ("action",)
    list_select_related = ("block__property", "run")
    raw_id_fields = ("block", "run")

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(block__in=Block.objects.for_user(request.user))


@admin.register(Activity)
class ActivityAdmin(AccountScopedAdmin):
    """The activity log, read-only: a record of what people did is not for editing."""

    list_display = ("created_at", "user", "action", "connection", "property")
    list_filter = ("action",)
    list_select_related = ("user", "connection__portal", "connection__property", "property")
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
