"""The Celery application: settings come from Django's, under the CELERY_ prefix."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, task_postrun, task_prerun
from django.db import close_old_connections

from channelmgr.log_masking import MaskSecretsFilter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "channelmgr.settings")

app = Celery("channelmgr")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def close_old_database_connections(sender=None, **_) -> None:
    """Around each task, what Django does around each request: a pooled connection goes back to
    its pool, a kept one is closed if it had an error or is older than CONN_MAX_AGE (see
    settings.CELERY_DB_REUSE_MAX). Not for eager tasks: they run inside the caller's request or
    transaction."""
    if getattr(sender.request, "is_eager", False):
        return
    close_old_connections()


@after_setup_logger.connect
@after_setup_task_logger.connect
def mask_secrets_in_worker_logs(logger=None, **_) -> None:
    """The worker gives its task logger handlers of its own, which do not pass through Django's
    (settings.LOGGING): the same filter goes on them, so a task's line never shows a token."""
    for handler in logger.handlers if logger is not None else ():
        if not any(isinstance(f, MaskSecretsFilter) for f in handler.filters):
            handler.addFilter(MaskSecretsFilter())
