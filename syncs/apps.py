from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SyncsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "syncs"
    verbose_name = _("Calendar syncs")

    def ready(self) -> None:
        # Imported here, not at the top, as Django asks of anything that needs the models loaded:
        # signals connects the receivers; registrations makes the worker know the tasks written
        # outside syncs.tasks and records the worker's metrics.
        from syncs import registrations, signals  # noqa: F401

        # Every app's admin is registered by now (the admin app, first in INSTALLED_APPS, ran
        # autodiscover in its own ready()): the other apps' admins become superuser-only.
        from syncs.admin import other_apps_superuser_only

        other_apps_superuser_only(own_app=self.label)
