"""Imported when the app is ready, so that the worker knows these modules' tasks (Celery's
autodiscovery reads only syncs.tasks) and the worker's metrics are recorded."""

from __future__ import annotations

from syncs import digests, onboarding, webhooks  # noqa: F401
from syncs.metrics import connect_worker_signals

connect_worker_signals()
