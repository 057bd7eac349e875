"""Django admin for every model. Staff who are not superusers see only their own account."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.utils.translation import gettext_lazy as _

from syncs.editing import sync_state_after_edit
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
from syncs.sync_state import connection_status, connection_statuses


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
    list_display = ("user", "account", "role", "language", "created_at")
    list_filter = ("role",)
    list_select_related = ("user", "account")
    search_fields = ("user__username", "account__name")

    def has_module_permission(self, request):
        return request.user.is_superuser


@admin.register(Portal)
class PortalAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "pickup_delay_min_minutes", "pickup_delay_max_minutes", "position")
    ordering = ("position",)


@admin.register(Property)
class PropertyAdmin(AccountScopedAdmin):
    list_display = ("name", "account", "timezone", "updated_at")
    list_filter = ("account",)
    list_select_related = ("account",)
    search_fields = ("name",)


@admin.register(Connection)
class ConnectionAdmin(AccountScopedAdmin):
    list_display = ("__str__", "direction", "enabled", "status_label", "consecutive_failures", "last_success_at", "next_sync_at")
    list_filter = ("enabled", "direction", "portal")
    list_select_related = ("property", "portal")
    search_fields = ("property__name",)
    readonly_fields = ("lease_holder", "lease_until", "etag", "last_modified", "body_fingerprint", "created_at", "updated_at")

    def save_model(self, request, obj: Connection, form, change: bool) -> None:
        # As the operator's edit form does: a new link reads the feed from scratch, and a sync in
        # flight with the old settings is dropped.
        if change:
            for field, value in sync_state_after_edit(form.changed_data).items():
                setattr(obj, field, value)
        super().save_model(request, obj, form, change)

    def get_changelist(self, request, **kwargs):
        return _ConnectionChangeList

    @admin.display(description=_("status"))
    def status_label(self, obj: Connection) -> str:
        """The sync's state, as every page says it (syncs/sync_state.py)."""
        status = getattr(obj, "sync_status", None) or connection_status(obj)
        return status.label


class _ConnectionChangeList(ChangeList):
    """The page of connections, each with its state: read for the whole page at once."""

    def get_results(self, request):
        super().get_results(request)
        statuses = connection_statuses(self.result_list)
        for connection in self.result_list:
            connection.sync_status = statuses[connection.pk]


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
