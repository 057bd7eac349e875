"""/api/v1/overview/: the overview's counts, from the function the overview page reads."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from syncs.api.base import ApiView
from syncs.api.serializers import OverviewSerializer
from syncs.dashboard import dashboard_summary


class OverviewView(ApiView):
    @extend_schema(responses=OverviewSerializer)
    def get(self, request):
        """The overview's counts: syncs per state, those needing attention, double bookings."""
        summary = dashboard_summary(user=request.user)
        return Response(OverviewSerializer({
            "total": summary.total, "counts": summary.counts,
            "needing_attention": len(summary.attention) + summary.attention_more,
            "double_bookings": summary.conflicts_total, "double_bookings_handled": summary.handled_total,
            "nothing_needs_attention": summary.nothing_needs_attention,
        }).data)
