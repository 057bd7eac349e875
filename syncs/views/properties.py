from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from syncs.explain import describe_readers
from syncs.export_tokens import export_token_ensure, export_url
from syncs.models import Account
from syncs.readers import connection_export_facts
from syncs.selectors import connection_get, connection_recent_runs, property_get


@require_GET
@login_required
def property_detail(request: HttpRequest, property_id: int) -> HttpResponse:
    prop = property_get(user=request.user, property_id=property_id)
    connections = prop.connections.select_related("portal").order_by("portal__position", "pk")
    return render(
        request,
        "syncs/property_detail.html",
        {
            "account": Account.of_user(request.user),
            "property": prop,
            "connections": connections,
            "export_url": export_url(export_token_ensure(property=prop)),
        },
    )


@require_GET
@login_required
def connection_detail(request: HttpRequest, connection_id: int) -> HttpResponse:
    connection = connection_get(user=request.user, connection_id=connection_id)
    exports = {}
    if connection.exports:
        exports = {
            "export_url": export_url(export_token_ensure(property=connection.property, connection=connection)),
            "readers": describe_readers(connection_export_facts(connection=connection), portal=connection.portal.name),
        }
    return render(
        request,
        "syncs/connection_detail.html",
        {
            "account": Account.of_user(request.user),
            "connection": connection,
            "runs": connection_recent_runs(connection=connection),
            **exports,
        },
    )
