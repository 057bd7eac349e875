"""/api/v1/double-bookings/: the account's possible double bookings with their clashing nights,
as the overview finds them, and marking one handled (syncs.conflicts)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date

from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from syncs.api.base import ApiView, Cursor, body, object_id
from syncs.api.serializers import DoubleBookingSerializer, HandleInput
from syncs.conflicts import DoubleBookingPlace, double_booking_mark_handled, double_bookings_page
from syncs.explain import clash_words
from syncs.models import Account
from syncs.selectors import property_get


def _data(marked) -> dict:
    conflict, clash = marked.conflict, marked.conflict.clash
    return {
        "property": conflict.property.pk, "property_name": conflict.property.name, "key": marked.key,
        "fingerprint": marked.fingerprint, "handled": marked.handled,
        "note": marked.mark.note if marked.mark is not None else "",
        "first_night": clash.first_night, "last_night": clash.last_night, "nights": clash.nights,
        "nights_words": clash_words(clash), "runs": [list(run) for run in clash.runs],
        "stays": [
            {"block": stay.pk, "sync": stay.source, "source": conflict.source_of(stay), "first_night": stay.first_night,
             "check_out": stay.check_out, "kind": stay.kind}
            for stay in conflict.stays
        ],
    }


def _cursor(place: DoubleBookingPlace) -> str:
    handled, first_night, property_id, key = place
    return base64.urlsafe_b64encode(json.dumps([handled, first_night.isoformat(), property_id, key]).encode()).decode()


def _place(cursor: str) -> DoubleBookingPlace:
    """Where the page a cursor names starts; 400 for a cursor this API did not give."""
    try:
        handled, first_night, property_id, key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        place = (handled, date.fromisoformat(first_night), property_id, key)
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        place = None
    if place is None or not (isinstance(place[0], bool) and type(place[2]) is int and isinstance(place[3], str)):
        raise exceptions.ValidationError({"cursor": [exceptions.ErrorDetail(_("This cursor is not one we gave: start from the first page."), code="invalid")]})
    return place


class DoubleBookingListView(ApiView):
    @extend_schema(
        parameters=[
            OpenApiParameter("cursor", OpenApiTypes.STR, description="The `next` of the page before."),
            OpenApiParameter("page_size", OpenApiTypes.INT, description="Up to 200 (50 if not given)."),
        ],
        responses=inline_serializer("PaginatedDoubleBookingList", {
            "next": serializers.URLField(allow_null=True, help_text="The next page; null on the last."),
            "results": DoubleBookingSerializer(many=True),
        }),
    )
    def get(self, request):
        """The account's possible double bookings whose nights are not over, by page: those nobody
        marked handled, then those marked handled, each the soonest first."""
        account = Account.of_user(request.user)
        cursor = request.query_params.get("cursor")
        listed, next_place = double_bookings_page(
            account=account, after=_place(cursor) if cursor is not None else None, size=Cursor().get_page_size(request),
        )
        next_url = None
        if next_place is not None:
            next_url = replace_query_param(request.build_absolute_uri(), "cursor", _cursor(next_place))
        return Response({"next": next_url, "results": DoubleBookingSerializer([_data(m) for m in listed], many=True).data})


class DoubleBookingHandleView(ApiView):
    @extend_schema(request=HandleInput, responses={201: None})
    def post(self, request):
        """Mark a double booking handled, as seen (its key and fingerprint): refused (400) if a
        stay changed since; it comes back if either stay changes later."""
        given = HandleInput(data=body(request))
        given.is_valid(raise_exception=True)
        data = given.validated_data
        prop = property_get(user=request.user, property_id=object_id(data["property"]))
        double_booking_mark_handled(user=request.user, property=prop, key=data["key"], fingerprint=data["fingerprint"], note=data["note"])
        return Response(status=status.HTTP_201_CREATED)
