from __future__ import annotations

from django.urls import path

from syncs.views import demo, export, health, home, properties

urlpatterns = [
    path("", home.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("properties/<int:property_id>/", properties.property_detail, name="property-detail"),
    path("connections/<int:connection_id>/", properties.connection_detail, name="connection-detail"),
    path("properties/<int:property_id>/export.ics", export.property_export_download, name="property-export-download"),
    path(
        "connections/<int:connection_id>/export.ics", export.connection_export_download, name="connection-export-download"
    ),
    path(
        "connections/<int:connection_id>/export/rotate/", export.connection_export_rotate, name="connection-export-rotate"
    ),
    path("ical/<str:token>.ics", export.export_feed, name="export-feed"),
    path("demo/portal/<slug:portal>/<slug:key>.ics", demo.demo_portal_feed, name="demo-portal-feed"),
]
