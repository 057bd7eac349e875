"""/api/v1/blocks/: nights closed here (manual blocks and direct bookings), with the pages'
checks (the dates the service keeps) and services."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from syncs.api.base import ApiViewSet, body, object_id
from syncs.api.serializers import BlockInput, BlockSerializer
from syncs.clean_text import clean
from syncs.id_inputs import parse_id
from syncs.models import Block
from syncs.operator_actions import property_block_add, property_block_remove
from syncs.selectors import property_get


def _made_here(user):
    """The account's current blocks made here on live properties."""
    return Block.objects.for_user(user).current().filter(source__isnull=True, property__archived_at__isnull=True)


class BlockViewSet(ApiViewSet):
    """Nights closed here, ordered by id: they are in every portal's export of the property."""

    @extend_schema(
        parameters=[OpenApiParameter("property", OpenApiTypes.INT, description="Only this property's blocks.")],
        responses=BlockSerializer(many=True),
    )
    def list(self, request):
        blocks = _made_here(request.user)
        if "property" in request.query_params:
            property_id = parse_id(request.query_params["property"])
            if property_id is None:
                raise exceptions.ValidationError({"property": [exceptions.ErrorDetail(_("Give a property's id."), code="invalid")]})
            blocks = blocks.filter(property_id=property_id)
        return self.paginated(blocks, lambda page: BlockSerializer(page, many=True).data)

    @extend_schema(responses=BlockSerializer)
    def retrieve(self, request, pk=None):
        return Response(BlockSerializer(get_object_or_404(_made_here(request.user), pk=object_id(pk))).data)

    @extend_schema(request=BlockInput, responses={201: BlockSerializer})
    def create(self, request):
        given = BlockInput(data=body(request))
        given.is_valid(raise_exception=True)
        data = given.validated_data
        prop = property_get(user=request.user, property_id=object_id(data["property"]))
        block = property_block_add(
            property=prop, start=data["start"], end=data["end"], kind=data["kind"], summary=clean(data["summary"]),
            user=request.user,
        )
        return Response(BlockSerializer(block).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        """Opens the nights again: the portals that read our calendar see them free at their next read."""
        block = get_object_or_404(_made_here(request.user), pk=object_id(pk))
        property_block_remove(block=block, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
