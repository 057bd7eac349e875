"""/api/v1/properties/: the account's properties, with the pages' checks and services."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from syncs import editing, removal
from syncs.api.base import ApiViewSet, body, checked, form_refused, object_id
from syncs.api.serializers import PropertyInput, PropertyPatch, PropertySerializer
from syncs.forms import PropertyForm
from syncs.models import Property
from syncs.selectors import property_get


class PropertyViewSet(ApiViewSet):
    """The account's properties (flats, houses), ordered by id."""

    @extend_schema(responses=PropertySerializer(many=True))
    def list(self, request):
        properties = Property.objects.for_user(request.user)
        return self.paginated(properties, lambda page: PropertySerializer(page, many=True).data)

    @extend_schema(responses=PropertySerializer)
    def retrieve(self, request, pk=None):
        prop = property_get(user=request.user, property_id=object_id(pk))
        return Response(PropertySerializer(prop).data)

    @extend_schema(request=PropertyInput, responses={201: PropertySerializer})
    def create(self, request):
        data = checked(PropertyInput, body(request))
        form = PropertyForm(data, user=request.user)
        if not form.is_valid():
            raise form_refused(form)
        prop = editing.property_create(user=request.user, **form.property_values())
        return Response(PropertySerializer(prop).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PropertyPatch, responses=PropertySerializer)
    def partial_update(self, request, pk=None):
        prop = property_get(user=request.user, property_id=object_id(pk))
        data = {"name": prop.name, "timezone": prop.timezone, **checked(PropertyPatch, body(request))}
        form = PropertyForm(data, user=request.user, instance=prop)
        if not form.is_valid():
            raise form_refused(form)
        editing.property_edit(user=request.user, property=prop, **form.property_values())
        prop.refresh_from_db()
        return Response(PropertySerializer(prop).data)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        """Removes the property and its syncs; they can be restored from the pages for 30 days."""
        prop = property_get(user=request.user, property_id=object_id(pk))
        removal.property_remove(user=request.user, property=prop)
        return Response(status=status.HTTP_204_NO_CONTENT)
