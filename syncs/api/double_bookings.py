"""/api/v1/double-bookings/: the account's possible double bookings with their clashing nights,
as the overview finds them, and marking one handled (syncs.conflicts)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from syncs.api.base import ApiView, body, object_id
from syncs.api.serializers import DoubleBookingSerializer, HandleInput
from syncs.conflicts import (
    account_conflict_groups,
    conflicts_marked,
    conflicts_of,
    double_booking_mark_handled,
)
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


class DoubleBookingListView(ApiView):
    @extend_schema(responses=DoubleBookingSerializer(many=True))
    def get(self, request):
        """Every possible double booking of the account whose nights are not over, the soonest
        first: those nobody marked handled, then those marked handled."""
        account = Account.of_user(request.user)
        unhandled, handled = conflicts_marked(conflicts_of(account_conflict_groups(account=account)))
        return Response(DoubleBookingSerializer([_data(m) for m in unhandled + handled], many=True).data)


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
