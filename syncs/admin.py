"""Django admin for every model.

Superusers see everything. The admins of other apps (Django's users and groups, django-otp's
devices, django-axes' attempts and logs, and any app added later) are for superusers only,
whatever permissions a staff user was given: they hold every account's people, their
two-factor keys and the keys to the admin itself (``is_superuser``, ``is_staff``, groups,
permissions), so staff can change none of those, their own included. Other staff see their own
account only, on every page: lists, forms,
the choices of every foreign key (raw-id look-ups and autocompletes go through the same
querysets), filters, and saves, where an id of another account is refused like any invalid
choice. Accounts, memberships and portals are for superusers only: a membership is the key to
an account, and portals are shared by every account. Staff who are not superusers also need the
manager or owner role in their current account (syncs.roles): a viewer's role forbids changes and
secret links, and the admin shows both.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import NON_FIELD_ERRORS
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from syncs.blocks import property_calendar_changed
from syncs.forms import ConnectionForm
from syncs.models import (
    Account,
    Activity,
    Block,
    BlockChange,
    BulkAction,
    Connection,
    DoubleBooking,
    Membership,
    OnboardingUpload,
    PauseEpisode,
    Portal,
    Property,
    StateChange,
    SyncRun,
    Webhook,
    WebhookDelivery,
)
from syncs.sync_settings import (
    connection_settings_update,
    portal_settings_update,
    property_settings_update,
)
from syncs.sync_state import connection_status, connection_statuses


def scoped(model, user, queryset=None):
    """The rows of ``model`` (of ``queryset``) a staff user may see or pick: their account's."""
    queryset = model._default_manager.all() if queryset is None else queryset
    if user.is_superuser:
        return queryset
    account = Account.of_user(user)
    if hasattr(queryset, "for_account"):
        return queryset.for_account(account)
    if account is None:
        return queryset.none()
    if model is Account:
        return queryset.filter(pk=account.pk)
    if model is BlockChange:
        return queryset.filter(block__property__account=account)
    if model is Portal:
        return queryset  # shared by every account, read-only to staff
    if model is get_user_model():
        return queryset.filter(memberships__account=account)
    return queryset.none()  # a model nobody scoped: nothing, rather than everything


class DayListChangeList(ChangeList):
    """Django's list page, where a date drill-down at the ends of the calendar
    (``?start_date__year=9999&start_date__month=12&start_date__day=31``: the day after it is no
    date) is a wrong filter, answered as any other (the list again, with "?e=1"), not an error."""

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as exc:
            raise IncorrectLookupParameters(exc) from exc


class DayListMixin:
    def get_changelist(self, request, **kwargs):
        return DayListChangeList


class SuperuserOnlyMixin(DayListMixin):
    """Pages only superusers may open, whatever permissions a staff user was given."""

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser


class SuperuserOnlyAdmin(SuperuserOnlyMixin, admin.ModelAdmin):
    pass


def other_apps_superuser_only(*, own_app: str, site: admin.AdminSite = admin.site) -> None:
    """Make every admin page of an app other than ``own_app`` (a label) superuser-only: the
    registered ModelAdmin is replaced by a subclass that keeps everything it does and refuses
    everyone else. Run once every app registered its admin (SyncsConfig.ready)."""
    for model, model_admin in list(site._registry.items()):
        if model._meta.app_label == own_app or isinstance(model_admin, SuperuserOnlyMixin):
            continue
        guarded = type(f"SuperuserOnly{type(model_admin).__name__}", (SuperuserOnlyMixin, type(model_admin)), {})
        site._registry[model] = guarded(model, site)


class ReadOnlySuperuserAdmin(SuperuserOnlyAdmin):
    """Records the product keeps for operators (bulk actions, double bookings, webhooks, sync
    files): shown to superusers for support, changed only through the product's own pages,
    which apply its rules (marks dropped when a stay changes, secrets shown once)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _manages_current_account(request) -> bool:
    """Superusers, and staff whose role in their current account is manager or owner."""
    if request.user.is_superuser:
        return True
    membership = Membership.current_of(request.user)
    return membership is not None and membership.can_manage


def _changed_values(obj, form) -> dict:
    """The fields the admin's form changed, as the object now holds them: only these are written,
    never the whole row, whose other fields the sync engine writes at any moment."""
    return {name: getattr(obj, name) for name in form.changed_data}


class AccountScopedAdmin(DayListMixin, admin.ModelAdmin):
    """Scopes the list, the detail pages, the foreign-key choices and the related filters to the
    staff member's account, for staff who manage it."""

    def has_module_permission(self, request):
        return _manages_current_account(request) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return _manages_current_account(request) and super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return _manages_current_account(request) and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return _manages_current_account(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return _manages_current_account(request) and super().has_delete_permission(request, obj)

    def get_queryset(self, request):
        return scoped(self.model, request.user, super().get_queryset(request))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        kwargs["queryset"] = scoped(db_field.related_model, request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        kwargs["queryset"] = scoped(db_field.related_model, request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_list_filter(self, request):
        # A related filter lists every row of the related model (every account's names):
        # offer only the values found in the rows this user sees.
        return [
            (name, admin.RelatedOnlyFieldListFilter) if isinstance(name, str) and self._is_relation(name) else name
            for name in super().get_list_filter(request)
        ]

    def _is_relation(self, name: str) -> bool:
        field = self.model._meta.get_field(name) if "__" not in name else None
        return field is not None and field.is_relation


@admin.register(Account)
class AccountAdmin(SuperuserOnlyAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)


@admin.register(Membership)
class MembershipAdmin(SuperuserOnlyAdmin):
    list_display = ("user", "account", "role", "language", "created_at")
    list_filter = ("role",)
    list_select_related = ("user", "account")
    search_fields = ("user__username", "account__name")


@admin.register(Portal)
class PortalAdmin(SuperuserOnlyAdmin):
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


class ConnectionAdminForm(forms.ModelForm):
    """A sync's form in the admin, checked by the dashboard's own form (syncs.forms.ConnectionForm)
    before anything is saved: the link's shape and address (no loopback, private or special
    address), the portal it belongs to, and that no other sync reads the same calendar. Its
    cleaned values (the tidied link, the portal recognised from it) are the ones saved."""

    request = None  # the admin's request, set by ConnectionAdmin.get_form

    class Meta:
        model = Connection
        # What the operator sets; the engine's own fields are the admin's read-only ones.
        fields = ("property", "portal", "direction", "import_url", "enabled", "sync_interval_minutes", "export_summary")

    def clean(self) -> dict:
        data = super().clean()
        prop = data.get("property") or (self.instance.property if self.instance.pk else None)
        if prop is None:
            return data  # the property's own error says what to fix first
        portal = data.get("portal")
        dashboard = ConnectionForm(
            {
                "import_url": data.get("import_url", ""), "portal": portal.pk if portal else "",
                "direction": data.get("direction", ""), "sync_interval_minutes": data.get("sync_interval_minutes", ""),
                "export_summary": data.get("export_summary", ""), "check_now": "",  # the admin saves without a live check
            },
            user=self.request.user, property=prop, instance=self.instance if self.instance.pk else None,
        )
        if dashboard.is_valid():
            for name in ("import_url", "portal", "export_summary"):
                if name in self.fields:
                    data[name] = dashboard.cleaned_data[name]
            return data
        typed = data.get("import_url", "")
        for name, errors in dashboard.errors.items():
            for error in errors:
                self.add_error(name if name in self.fields and name != NON_FIELD_ERRORS else None, error)
        # One problem, one error: the link refused stays on the unsaved instance, or the model's
        # own check (Connection.clean) would add "paste a link" to the reason it was refused.
        data.setdefault("import_url", typed)
        return data


@admin.register(Connection)
class ConnectionAdmin(AccountScopedAdmin):
    form = ConnectionAdminForm

    list_display = ("__str__", "direction", "enabled", "status_label", "consecutive_failures", "last_success_at", "next_sync_at")
    list_filter = ("state", "enabled", "direction", "portal")
    list_select_related = ("property", "portal")
    search_fields = ("property__name",)
    # The sync engine's own fields: shown, never edited here (a form saving them whole would put
    # back what the engine changed meanwhile). The operator's switch and settings stay editable.
    readonly_fields = (
        "paused_at", "pause_reason", "pause_params", "consecutive_failures", "last_error_code", "last_error_params",
        "sync_requested_at", "last_attempt_at", "last_success_at", "next_sync_at", "etag", "last_modified",
        "body_fingerprint", "held_answer", "held_since", "held_removals", "held_accepted_answer", "probe_next_at",
        "probe_failures", "ready_to_resume_at", "https_works", "checking_since", "lease_holder", "lease_until", "created_at",
        "updated_at",
    )

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request = request  # a class made for this request (modelform_factory)
        return form

    def save_model(self, request, obj: Connection, form, change: bool) -> None:
        if not change:
            obj.next_sync_at = timezone.now()  # a new sync is read at once, as the add form does
            return super().save_model(request, obj, form, change)
        # As the operator's edit form does, through the one settings service: only the changed
        # fields are written, a new link is read from scratch, and a sync in flight with the old
        # settings is dropped.
        connection_settings_update(connection_id=obj.pk, values={**_changed_values(obj, form), "updated_at": timezone.now()})

    def get_changelist(self, request, **kwargs):
        return _ConnectionChangeList

    @admin.display(description=_("status"))
    def status_label(self, obj: Connection) -> str:
        """The sync's state, as every page says it (syncs/sync_state.py)."""
        status = getattr(obj, "sync_status", None) or connection_status(obj)
        return status.label


class _ConnectionChangeList(DayListChangeList):
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

    # Every change to a property's blocks bumps its calendar version (syncs.blocks), so that its
    # exports change at once.
    def save_model(self, request, obj: Block, form, change: bool) -> None:
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            property_calendar_changed(property_id=obj.property_id)

    def delete_model(self, request, obj: Block) -> None:
        with transaction.atomic():
            super().delete_model(request, obj)
            property_calendar_changed(property_id=obj.property_id)

    def delete_queryset(self, request, queryset) -> None:
        with transaction.atomic():
            properties = set(queryset.values_list("property_id", flat=True))
            super().delete_queryset(request, queryset)
            for property_id in properties:
                property_calendar_changed(property_id=property_id)


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
class BlockChangeAdmin(AccountScopedAdmin):
    list_display = ("block", "run", "action", "old_start_date", "old_end_date", "new_start_date", "new_end_date")
    list_filter = ("action",)
    list_select_related = ("block__property", "run")
    raw_id_fields = ("block", "run")


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


@admin.register(BulkAction)
class BulkActionAdmin(ReadOnlySuperuserAdmin):
    list_display = ("created_at", "account", "user", "kind")
    list_filter = ("kind",)
    list_select_related = ("account", "user")
    date_hierarchy = "created_at"


@admin.register(DoubleBooking)
class DoubleBookingAdmin(ReadOnlySuperuserAdmin):
    list_display = ("property", "start_date", "end_date", "first_seen_at", "handled_at", "handled_by")
    list_select_related = ("property__account", "handled_by")
    date_hierarchy = "start_date"


@admin.register(Webhook)
class WebhookAdmin(ReadOnlySuperuserAdmin):
    list_display = ("account", "url", "enabled", "created_at")
    list_select_related = ("account",)
    exclude = ("secret_nonce",)  # the secret is shown once, to the owner who made it


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlySuperuserAdmin):
    list_display = ("created_at", "webhook", "event", "test", "status", "attempts", "finished_at")
    list_filter = ("status", "event")
    list_select_related = ("webhook__account",)
    date_hierarchy = "created_at"


@admin.register(StateChange)
class StateChangeAdmin(ReadOnlySuperuserAdmin):
    list_display = ("at", "account", "connection", "from_state", "to_state", "webhooks_told_at")
    list_filter = ("to_state", "from_state")
    list_select_related = ("account", "connection__property", "connection__portal")
    raw_id_fields = ("connection", "account")
    date_hierarchy = "at"


@admin.register(OnboardingUpload)
class OnboardingUploadAdmin(ReadOnlySuperuserAdmin):
    list_display = ("created_at", "account", "user", "filename", "imported_at")
    list_select_related = ("account", "user")
    date_hierarchy = "created_at"
