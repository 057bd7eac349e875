"""Operating at scale: the timeline, bulk actions, alerts, double bookings, onboarding by file, metrics."""

from __future__ import annotations

from django.urls import path

from syncs.views import alerts, bulk, conflicts, onboarding, timeline

urlpatterns = [
    path("timeline/", timeline.timeline, name="timeline"),
    path("bulk/", bulk.bulk_action, name="bulk-action"),
    path("bulk/<int:bulk_id>/", bulk.bulk_detail, name="bulk-detail"),
    path("bulk/<int:bulk_id>/progress/", bulk.bulk_progress_view, name="bulk-progress"),
    path("me/alerts/", alerts.my_alerts, name="my-alerts"),
    path("properties/assign/", alerts.property_assign, name="property-assign"),
    path("alerts/webhooks/", alerts.webhooks, name="webhooks"),
    path("alerts/webhooks/<int:webhook_id>/remove/", alerts.webhook_remove_view, name="webhook-remove"),
    path("alerts/webhooks/<int:webhook_id>/test/", alerts.webhook_test, name="webhook-test"),
    path("onboarding/", onboarding.onboarding, name="onboarding"),
    path("onboarding/<int:upload_id>/", onboarding.onboarding_preview_view, name="onboarding-preview"),
    path("onboarding/<int:upload_id>/progress/", onboarding.onboarding_progress, name="onboarding-progress"),
    path("onboarding/<int:upload_id>/live/", onboarding.onboarding_live, name="onboarding-live"),
    path("onboarding/<int:upload_id>/import/", onboarding.onboarding_import_view, name="onboarding-import"),
    path("syncs/export-urls.csv", onboarding.exports_csv, name="exports-csv"),
    path("properties/<int:property_id>/double-bookings/handle/", conflicts.double_booking_handle, name="double-booking-handle"),
]
