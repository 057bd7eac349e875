"""/api/v1/activity/: the activity log, newest first, paged by cursor, filterable by time."""

from __future__ import annotations

from datetime import UTC

from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions

from syncs.api.base import ApiViewSet
from syncs.api.serializers import ActivitySerializer
from syncs.explain import describe_activity
from syncs.models import Activity


def _moment(request, name: str):
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        moment = parse_datetime(value.strip())
    except ValueError:
        moment = None
    if moment is not None and moment.tzinfo is not None:
        try:
            # In UTC: the database refuses offsets of 16 hours or more, which Python reads.
            return moment.astimezone(UTC)
        except OverflowError:  # year 1 or 9999 moved past the calendar's ends
            pass
    raise exceptions.ValidationError({name: [exceptions.ErrorDetail(
        _("Give a date and time with its zone, such as 2027-03-01T09:00:00Z."), code="invalid")]})


def _data(entries) -> list:
    return ActivitySerializer([
        {"id": e.pk, "created_at": e.created_at, "action": e.action, "action_words": e.get_action_display(),
         "details": describe_activity(e) or e.member_words, "user": e.user.get_username() if e.user_id else None,
         "automatic": e.automatic, "api_token": e.params.get("api_token"), "property_id": e.property_id,
         "connection_id": e.connection_id}
        for e in entries
    ], many=True).data


class ActivityViewSet(ApiViewSet):
    """Who did what, and what the system did by itself, newest first."""

    @extend_schema(
        parameters=[
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="Only entries at or after this moment."),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="Only entries before this moment."),
        ],
        responses=ActivitySerializer(many=True),
    )
    def list(self, request):
        entries = Activity.objects.for_user(request.user).select_related("user", "connection__portal")
        since, until = _moment(request, "since"), _moment(request, "until")
        if since is not None:
            entries = entries.filter(created_at__gte=since)
        if until is not None:
            entries = entries.filter(created_at__lt=until)
        return self.paginated(entries, _data, ordering=("-created_at", "-pk"))
