"""Operating at scale: the timeline, bulk actions, alerts, double bookings, onboarding by file, metrics."""

from __future__ import annotations

from django.urls import path

from syncs.views import bulk, timeline

urlpatterns = [
    path("timeline/", timeline.timeline, name="timeline"),
    path("bulk/", bulk.bulk_action, name="bulk-action"),
    path("bulk/<int:bulk_id>/", bulk.bulk_detail, name="bulk-detail"),
    path("bulk/<int:bulk_id>/progress/", bulk.bulk_progress_view, name="bulk-progress"),
]
