"""/api/: the schema, its reference page, and the resources of /api/v1/."""

from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from syncs.api import activity, blocks, double_bookings, overview, properties, syncs
from syncs.api.views import not_found

router = SimpleRouter(use_regex_path=False)
router.register("properties", properties.PropertyViewSet, basename="api-property")
router.register("syncs", syncs.SyncViewSet, basename="api-sync")
router.register("blocks", blocks.BlockViewSet, basename="api-block")
router.register("activity", activity.ActivityViewSet, basename="api-activity")

urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api/swagger_ui.html"),
        name="api-docs",
    ),
    path("api/v1/overview/", overview.OverviewView.as_view(), name="api-overview"),
    path("api/v1/double-bookings/", double_bookings.DoubleBookingListView.as_view(), name="api-double-bookings"),
    path(
        "api/v1/double-bookings/handle/", double_bookings.DoubleBookingHandleView.as_view(),
        name="api-double-booking-handle",
    ),
    path("api/v1/", include(router.urls)),
    re_path(r"^api/", not_found),
]
