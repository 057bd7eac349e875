from __future__ import annotations

from django.urls import include, path

from syncs.views import account, actions, activity, demo, export, fix, health, home, properties

urlpatterns = [
    path("", home.home, name="home"),
    path("overview/status/", home.overview_status, name="overview-status"),
    path("healthz", health.healthz, name="healthz"),
    path("activity/", activity.activity_list, name="activity"),
    path("settings/", account.account_settings, name="account-settings"),
    path("properties/", properties.property_list, name="property-list"),
    path("properties/<int:property_id>/", properties.property_detail, name="property-detail"),
    path("properties/<int:property_id>/blocks/", actions.property_block_add_view, name="property-block-add"),
    path("properties/<int:property_id>/export.ics", export.property_export_download, name="property-export-download"),
    path("blocks/<int:block_id>/remove/", actions.property_block_remove_view, name="block-remove"),
    path("connections/<int:connection_id>/", properties.connection_detail, name="connection-detail"),
    path("connections/<int:connection_id>/fix/", fix.connection_fix, name="connection-fix"),
    path("connections/<int:connection_id>/fix/<slug:step>/", fix.connection_fix_step, name="connection-fix-step"),
    path("connections/<int:connection_id>/row/", properties.connection_row, name="connection-row"),
    path("connections/<int:connection_id>/sync-state/", properties.connection_sync_state, name="connection-sync-state"),
    path("connections/<int:connection_id>/switch/", actions.connection_switch, name="connection-switch"),
    path("connections/<int:connection_id>/sync/", actions.connection_sync_now, name="connection-sync-now"),
    path("connections/<int:connection_id>/accept-held/", actions.connection_accept_held_view, name="connection-accept-held"),
    path("connections/<int:connection_id>/export/rotate/", actions.connection_export_rotate, name="connection-export-rotate"),
    path(
        "connections/<int:connection_id>/export.ics", export.connection_export_download, name="connection-export-download"
    ),
    path("demo/portal/<slug:portal>/<slug:key>.ics", demo.demo_portal_feed, name="demo-portal-feed"),
    path("", include("syncs.urls_forms")),
    path("", include("syncs.urls_scale")),
]
