"""/api/v1/syncs/: the account's calendar syncs: read with their state and why, made and edited
with the form's checks, switched, synced now, removed. The same services as the pages."""

from __future__ import annotations

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.response import Response

from syncs import editing, operator_actions, removal
from syncs.api.base import ApiViewSet, body, checked, form_refused, object_id
from syncs.api.problems import problem_response
from syncs.api.serializers import (
    ExportSerializer,
    ProblemSerializer,
    RunSerializer,
    SwitchInput,
    SyncInput,
    SyncPatch,
    SyncSerializer,
)
from syncs.explain import describe, describe_readers, describe_state
from syncs.export_tokens import export_token_ensure, export_url
from syncs.forms import DEFAULT_EXPORT_SUMMARY, ConnectionForm
from syncs.id_inputs import parse_id
from syncs.models import Connection, ExportToken, Portal, SyncRun, SyncState
from syncs.readers import connection_export_facts
from syncs.roles import Role, membership_of
from syncs.selectors import connection_get, property_get
from syncs.sync_requests import connection_request_sync
from syncs.sync_state import connection_statuses


def run_data(run: SyncRun | None, *, portal: str | None) -> dict | None:
    if run is None:
        return None
    return {
        "id": run.pk, "trigger": run.trigger, "started_at": run.started_at, "finished_at": run.finished_at,
        "outcome": run.outcome, "http_status": run.http_status, "events_seen": run.events_seen,
        "events_added": run.events_added, "events_updated": run.events_updated, "events_removed": run.events_removed,
        "error_code": run.error_code, "error": describe(run.error_code, run.error_params, portal=portal) if run.error_code else "",
    }


def syncs_data(connections: list[Connection], *, secrets: bool) -> list[dict]:
    """The syncs as the API shows them: their stored state worded as the pages word it, and
    their last run, in three queries whatever their number."""
    now = timezone.now()
    statuses = connection_statuses(connections, now=now)
    runs = SyncRun.objects.in_bulk([c.last_run_id for c in connections if getattr(c, "last_run_id", None)])
    rows = []
    for connection in connections:
        status_ = statuses[connection.pk]
        portal = connection.portal.name_in_sentence
        code = connection.last_error_code
        rows.append({
            "id": connection.pk, "property_id": connection.property_id, "portal": connection.portal,
            "direction": connection.direction, "enabled": connection.enabled,
            "state": status_.state.value, "state_label": status_.label, "state_words": describe_state(status_, now),
            "state_since": connection.state_since,
            "error_code": code, "error": describe(code, connection.last_error_params, portal=portal) if code else "",
            "last_run": run_data(runs.get(getattr(connection, "last_run_id", None)), portal=portal),
            "last_attempt_at": connection.last_attempt_at, "last_success_at": connection.last_success_at,
            "next_sync_at": connection.next_sync_at, "sync_requested_at": connection.sync_requested_at,
            "sync_interval_minutes": connection.sync_interval_minutes, "export_summary": connection.export_summary,
            "import_url": connection.import_url if secrets else None, "created_at": connection.created_at,
        })
    return SyncSerializer(rows, many=True).data


def _with_last_run(connections):
    last = SyncRun.objects.filter(connection=OuterRef("pk")).order_by("-started_at", "-pk").values("pk")[:1]
    return connections.select_related("portal", "property").annotate(last_run_id=Subquery(last))


FILTERS = [
    OpenApiParameter("state", OpenApiTypes.STR, enum=SyncState.values, description="Only syncs in this state."),
    OpenApiParameter("portal", OpenApiTypes.STR, description="Only syncs of this portal (its slug)."),
    OpenApiParameter("property", OpenApiTypes.INT, description="Only syncs of this property (its id)."),
]


class SyncViewSet(ApiViewSet):
    """The account's calendar syncs, ordered by id, each with its state as the dashboard shows it."""

    def _secrets(self) -> bool:
        membership = membership_of(self.request)
        return membership is not None and membership.can_manage

    def _one(self, pk) -> Connection:
        connection = connection_get(user=self.request.user, connection_id=object_id(pk))
        return self._as_now(connection)

    def _as_now(self, connection: Connection) -> Connection:
        """The sync read again with its last run; 404 if a request made beside this one removed
        it meanwhile."""
        connection = _with_last_run(Connection.objects.filter(pk=connection.pk)).first()
        if connection is None:
            raise Http404
        return connection

    def _answer(self, connection: Connection, code: int = status.HTTP_200_OK) -> Response:
        return Response(syncs_data([self._as_now(connection)], secrets=self._secrets())[0], status=code)

    @extend_schema(parameters=FILTERS, responses=SyncSerializer(many=True))
    def list(self, request):
        connections = Connection.objects.for_user(request.user)
        query = request.query_params
        if "state" in query:
            if query["state"] not in SyncState.values:
                raise exceptions.ValidationError({"state": [exceptions.ErrorDetail(
                    _("Choose one of: %(states)s.") % {"states": ", ".join(SyncState.values)}, code="invalid_choice")]})
            connections = connections.filter(state=query["state"])
        if "portal" in query:
            connections = connections.filter(portal__slug=query["portal"])
        if "property" in query:
            property_id = parse_id(query["property"])
            if property_id is None:
                raise exceptions.ValidationError({"property": [exceptions.ErrorDetail(_("Give a property's id."), code="invalid")]})
            connections = connections.filter(property_id=property_id)
        secrets = self._secrets()
        return self.paginated(
            _with_last_run(connections), lambda page: syncs_data(page, secrets=secrets)
        )

    @extend_schema(responses=SyncSerializer)
    def retrieve(self, request, pk=None):
        return Response(syncs_data([self._one(pk)], secrets=self._secrets())[0])

    @extend_schema(request=SyncInput, responses={201: SyncSerializer})
    def create(self, request):
        data = checked(SyncInput, body(request))
        prop = property_get(user=request.user, property_id=object_id(data["property"]))
        form = ConnectionForm(self._form_data(data, defaults={
            "direction": Connection.Direction.TWO_WAY, "sync_interval_minutes": settings.SYNC_DEFAULT_INTERVAL_MINUTES,
            "export_summary": DEFAULT_EXPORT_SUMMARY,
        }), user=request.user, property=prop)
        if not form.is_valid():
            raise form_refused(form)
        connection = editing.connection_create(user=request.user, property=prop, **form.connection_values())
        return self._answer(connection, status.HTTP_201_CREATED)

    @extend_schema(request=SyncPatch, responses=SyncSerializer)
    def partial_update(self, request, pk=None):
        connection = connection_get(user=request.user, connection_id=object_id(pk))
        defaults = {
            "import_url": connection.import_url, "portal": connection.portal.slug, "direction": connection.direction,
            "sync_interval_minutes": connection.sync_interval_minutes, "export_summary": connection.export_summary,
        }
        form = ConnectionForm(self._form_data(checked(SyncPatch, body(request)), defaults=defaults), user=request.user,
                              property=connection.property, instance=connection)
        if not form.is_valid():
            raise form_refused(form)
        paused = connection.enabled and connection.paused_at is not None
        changed = editing.connection_edit(user=request.user, connection=connection, **form.connection_values())
        if paused and ("import_url" in changed or "portal" in changed):
            # As on the edit page: a new link of a paused sync is read at once, and resumes it if it works.
            operator_actions.connection_read_new_link(connection=connection, user=request.user)
        return self._answer(connection)

    def _form_data(self, data: dict, *, defaults: dict) -> dict:
        """The JSON body as the form's data: defaults for what is left out, the portal by slug."""
        data = {**defaults, **{key: value for key, value in data.items() if key in SyncPatch().fields}}
        portal = data.get("portal")
        if portal in (None, ""):
            data["portal"] = ""
        else:
            found = Portal.objects.filter(slug=str(portal)).values_list("pk", flat=True).first()
            if found is None:
                raise exceptions.ValidationError({"portal": [exceptions.ErrorDetail(
                    _("“%(portal)s” is not a portal we know.") % {"portal": str(portal)[:50]}, code="invalid_choice")]})
            data["portal"] = found
        if data.get("check_now") is not True:
            data.pop("check_now", None)
        return data

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        """Removes the sync; it can be restored from its page for 30 days."""
        connection = connection_get(user=request.user, connection_id=object_id(pk))
        removal.connections_remove(user=request.user, connections=[connection])
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=SwitchInput, responses=SyncSerializer)
    @action(detail=True, methods=["post"])
    def switch(self, request, pk=None):
        """Switch the sync on or off. Switching on a sync paused by errors reads its feed at once;
        it works again only if that read works."""
        connection = connection_get(user=request.user, connection_id=object_id(pk))
        enabled = checked(SwitchInput, body(request))["enabled"]
        operator_actions.connection_set_enabled(connection=connection, enabled=enabled, user=request.user)
        return self._answer(connection)

    @extend_schema(request=None, responses={202: SyncSerializer, 409: ProblemSerializer})
    @action(detail=True, methods=["post"], url_path="sync-now")
    def sync_now(self, request, pk=None):
        """Ask a worker to sync now (refused with 409 for a switched-off sync)."""
        connection = connection_get(user=request.user, connection_id=object_id(pk))
        if not connection_request_sync(connection=connection, user=request.user, origin="api"):
            return problem_response(status_code=status.HTTP_409_CONFLICT, code="switched_off", detail=_(
                "The %(portal)s sync is switched off, so it was not synced: nothing is imported until you switch it on."
            ) % {"portal": connection.portal.display_name})
        return self._answer(connection, status.HTTP_202_ACCEPTED)


    @extend_schema(responses=RunSerializer(many=True))
    @action(detail=True, methods=["get"])
    def runs(self, request, pk=None):
        """The sync's runs, newest first."""
        connection = connection_get(user=request.user, connection_id=object_id(pk), removed=True)
        portal = connection.portal.name_in_sentence
        return self.paginated(
            connection.runs.all(), lambda page: RunSerializer([run_data(run, portal=portal) for run in page], many=True).data,
            ordering="-pk",
        )

    @extend_schema(responses={200: ExportSerializer, 409: ProblemSerializer})
    @action(detail=True, methods=["get"], read_role=Role.MANAGER)
    def export(self, request, pk=None):
        """The sync's export URL, and whether its portal reads it. A secret: managers and owners only."""
        connection = connection_get(user=request.user, connection_id=object_id(pk))
        return self._export(connection)

    @extend_schema(request=None, responses={200: ExportSerializer, 409: ProblemSerializer})
    @action(detail=True, methods=["post"], url_path="export/rotate")
    def export_rotate(self, request, pk=None):
        """Issue a new export URL; the old one keeps answering for EXPORT_ROTATION_GRACE_HOURS."""
        connection = connection_get(user=request.user, connection_id=object_id(pk))
        if connection.exports:
            operator_actions.connection_rotate_export(connection=connection, user=request.user)
        return self._export(connection)

    def _export(self, connection: Connection) -> Response:
        if not connection.exports:
            return problem_response(status_code=status.HTTP_409_CONFLICT, code="not_exporting", detail=_(
                "This sync only imports: it has no export URL. Make it two-way to have one."))
        token = export_token_ensure(property=connection.property, connection=connection)
        now = timezone.now()
        old = (
            ExportToken.objects.serving(now).filter(connection=connection, expires_at__isnull=False)
            .order_by("-expires_at").values_list("expires_at", flat=True).first()
        )
        return Response(ExportSerializer({
            "url": export_url(token), "created_at": token.created_at, "last_read_at": token.last_read_at,
            "readers": describe_readers(connection_export_facts(connection=connection), portal=connection.portal.name_in_sentence),
            "old_url_works_until": old,
        }).data)
