from __future__ import annotations

from django.urls import path

from syncs.views import editing

urlpatterns = [
    path("properties/new/", editing.property_create, name="property-create"),
    path("properties/<int:property_id>/edit/", editing.property_edit, name="property-edit"),
    path(
        "properties/<int:property_id>/connections/new/", editing.connection_create, name="connection-create"
    ),
    path("connections/<int:connection_id>/edit/", editing.connection_edit, name="connection-edit"),
]
