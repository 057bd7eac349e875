from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SyncsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "syncs"
    verbose_name = _("Calendar syncs")

    def ready(self) -> None:
        # signals connects the receivers; scale_tasks registers issue 21's tasks and worker metrics.
        from syncs import scale_tasks, signals  # noqa: F401
