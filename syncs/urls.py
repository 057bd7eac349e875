from __future__ import annotations

from django.urls import path

from syncs.views import demo, health, home, properties

urlpatterns = [
    path("", home.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("properties/<int:property_id>/", properties.property_detail, name="property-detail"),
    path("connections/<int:connection_id>/", properties.connection_detail, name="connection-detail"),
    path("demo/portal/<slug:portal>/<slug:key>.ics", demo.demo_portal_feed, name="demo-portal-feed"),
]
