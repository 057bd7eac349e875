"""The API's tenancy and role matrix, over every route and method of the schema: a viewer's token
reads and never writes, a manager's and an owner's do what the pages let them, and a token of one
account never reads or changes another's rows (404, as the pages answer for another account's
ids)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from syncs.models import Activity, Block, Connection, ExportToken, Property, SyncRun
from tests.api_client import ApiClient, account_with_members

pytestmark = pytest.mark.django_db

VIEWER, MANAGER = "viewer", "manager"
RANK = {"viewer": 0, "manager": 1, "owner": 2}

# (method, route, least role, body): every operation of the schema, with a body that does
# something when it is let through. {property} and {connection} are the rows aimed at.
MATRIX = [
    ("GET", "/api/v1/overview/", VIEWER, None),
    ("GET", "/api/v1/properties/", VIEWER, None),
    ("POST", "/api/v1/properties/", MANAGER, {"name": "Casa Nova", "timezone": "Europe/Lisbon"}),
    ("GET", "/api/v1/properties/{property}/", VIEWER, None),
    ("PATCH", "/api/v1/properties/{property}/", MANAGER, {"name": "Renamed"}),
    ("DELETE", "/api/v1/properties/{property}/", MANAGER, None),
    ("GET", "/api/v1/syncs/", VIEWER, None),
    ("POST", "/api/v1/syncs/", MANAGER, {"property": "{property}", "direction": "export_only", "portal": "booking"}),
    ("GET", "/api/v1/syncs/{connection}/", VIEWER, None),
    ("PATCH", "/api/v1/syncs/{connection}/", MANAGER, {"sync_interval_minutes": 45}),
    ("DELETE", "/api/v1/syncs/{connection}/", MANAGER, None),
    ("POST", "/api/v1/syncs/{connection}/switch/", MANAGER, {"enabled": False}),
    ("POST", "/api/v1/syncs/{connection}/sync-now/", MANAGER, None),
    ("GET", "/api/v1/syncs/{connection}/runs/", VIEWER, None),
    # Export URLs are secrets: viewers never see them.
    ("GET", "/api/v1/syncs/{connection}/export/", MANAGER, None),
    ("POST", "/api/v1/syncs/{connection}/export/rotate/", MANAGER, None),
    ("GET", "/api/v1/blocks/", VIEWER, None),
    ("POST", "/api/v1/blocks/", MANAGER, {"property": "{property}", "start": "{in 30 days}", "end": "{in 33 days}"}),
    ("GET", "/api/v1/blocks/{block}/", VIEWER, None),
    ("DELETE", "/api/v1/blocks/{block}/", MANAGER, None),
    ("GET", "/api/v1/double-bookings/", VIEWER, None),
    ("POST", "/api/v1/double-bookings/handle/", MANAGER, {"property": "{property}", "key": "{key}", "fingerprint": "{fingerprint}"}),
    ("GET", "/api/v1/activity/", VIEWER, None),
]
# What the {id} of each collection's paths names.
ID_NAMES = {"properties": "property", "syncs": "connection", "blocks": "block"}
# The operations that aim at a row: by its id in the path, or in the body.
AIMED = [row for row in MATRIX if "{" in row[1] or "{property}" in str(row[3])]


def _fill(value, team):
    """The route or body with the rows of ``team`` in place of {property} and {connection}."""
    if isinstance(value, dict):
        return {key: _fill(item, team) for key, item in value.items()}
    if value == "{property}":
        return team.property.pk
    if value in ("{in 30 days}", "{in 33 days}"):
        return (timezone.localdate() + timedelta(days=int(value.split()[1]))).isoformat()
    if isinstance(value, str):
        for name in ("property", "connection", "block"):
            value = value.replace(f"{{{name}}}", str(getattr(team, name).pk))
        return value.replace("{key}", team.key).replace("{fingerprint}", team.fingerprint)
    return value


def their_rows(team) -> tuple:
    """Everything a request could change in the account."""
    return (
        list(Property.all_objects.filter(account=team.account).values()),
        list(Connection.all_objects.filter(property__account=team.account).values()),
        list(Block.objects.filter(property__account=team.account).values()),
        list(ExportToken.objects.filter(property__account=team.account).values()),
        SyncRun.objects.filter(connection__property__account=team.account).count(),
        Activity.objects.filter(account=team.account).count(),
    )


def test_the_matrix_covers_every_operation_of_the_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = {
        (method.upper(), path.replace("{id}", f"{{{ID_NAMES.get(path.split('/')[3])}}}"))
        for path, methods in schema["paths"].items() for method in methods
    }
    assert operations == {(method, route) for method, route, _role, _body in MATRIX}


@pytest.mark.parametrize("role", ["viewer", "manager", "owner"])
@pytest.mark.parametrize(("method", "route", "least", "body"), MATRIX, ids=[f"{m} {r}" for m, r, _l, _b in MATRIX])
def test_each_role_does_what_its_rank_allows_in_its_own_account(role, method, route, least, body):
    team = account_with_members()
    api = ApiClient(team.tokens[role])
    before = their_rows(team)
    response = api.request(method, _fill(route, team), _fill(body, team))
    if RANK[role] >= RANK[least]:
        assert response.status_code in (200, 201, 202, 204), response.content
        if method != "GET":
            assert their_rows(team) != before, "a write that changed nothing"
    else:
        assert response.status_code == 403, response.content
        assert response.json()["code"] == "permission_denied"
        assert their_rows(team) == before


@pytest.mark.parametrize("role", ["viewer", "manager", "owner"])
@pytest.mark.parametrize(("method", "route", "least", "body"), AIMED, ids=[f"{m} {r}" for m, r, _l, _b in AIMED])
def test_a_token_never_reads_or_changes_another_accounts_rows(role, method, route, least, body):
    mine, theirs = account_with_members("Casa Azul"), account_with_members("Villa Verde")
    api = ApiClient(mine.tokens[role])
    before = their_rows(theirs)
    response = api.request(method, _fill(route, theirs), _fill(body, theirs))
    # A viewer is refused any write before the row is looked for, as on the pages; else the
    # other account's row does not exist for this token.
    expected = 403 if RANK[role] < RANK[least] else 404
    assert response.status_code == expected, response.content
    assert "Villa Verde" not in response.content.decode()
    assert their_rows(theirs) == before


@pytest.mark.parametrize("role", ["viewer", "manager", "owner"])
def test_lists_and_counts_hold_only_the_tokens_account(role):
    mine, theirs = account_with_members("Casa Azul"), account_with_members("Villa Verde")
    api = ApiClient(mine.tokens[role])
    assert [p["name"] for p in api.get("/api/v1/properties/").json()["results"]] == ["Casa Azul"]
    assert [s["id"] for s in api.get("/api/v1/syncs/").json()["results"]] == [mine.connection.pk]
    assert api.get(f"/api/v1/syncs/?property={theirs.property.pk}").json()["results"] == []
    assert api.get("/api/v1/overview/").json()["total"] == 1


def test_a_viewer_never_sees_a_secret_link_and_a_manager_does():
    team = account_with_members()
    path = f"/api/v1/syncs/{team.connection.pk}/"
    assert ApiClient(team.tokens["viewer"]).get(path).json()["import_url"] is None
    assert team.connection.import_url not in ApiClient(team.tokens["viewer"]).get("/api/v1/syncs/").content.decode()
    assert ApiClient(team.tokens["manager"]).get(path).json()["import_url"] == team.connection.import_url
