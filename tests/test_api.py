"""The API's resources do what the pages do, with the same services and the same words:
properties and syncs made, edited, switched, synced now and removed; states and errors read in
the requested language; the overview's counts; cursors, ETags, throttling; odd inputs never a
500; every write in the activity log with the token's name."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone, translation

from syncs import editing, removal
from syncs.dashboard import dashboard_summary
from syncs.explain import describe
from syncs.models import Activity, ApiToken, Connection, Property, SyncState
from syncs.sync_state import state_record
from tests.api_client import ApiClient, account_with_members
from tests.factories import BlockFactory, ConnectionFactory, PropertyFactory, portal

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return account_with_members()


@pytest.fixture
def manager_api(team):
    return ApiClient(team.tokens["manager"])


# --------------------------------------------------------------------------- properties


def test_a_property_is_made_edited_and_removed_with_each_step_in_the_activity_log(team, manager_api):
    made = manager_api.post("/api/v1/properties/", {"name": "  Casa   Nova ", "timezone": "europe/lisbon"})
    assert made.status_code == 201
    body = made.json()
    assert (body["name"], body["timezone"]) == ("Casa Nova", "Europe/Lisbon")  # tidied as the form tidies
    path = f"/api/v1/properties/{body['id']}/"
    assert manager_api.patch(path, {"timezone": "America/New_York"}).json()["timezone"] == "America/New_York"
    assert manager_api.delete(path).status_code == 204
    assert manager_api.get(path).status_code == 404
    assert Property.all_objects.get(pk=body["id"]).archived_at is not None
    entries = Activity.objects.filter(property_id=body["id"]).order_by("pk")
    assert [(e.action, e.params.get("api_token"), e.user_id) for e in entries] == [
        (Activity.Action.PROPERTY_CREATED, "manager script", team.manager.user_id),
        (Activity.Action.PROPERTY_EDITED, "manager script", team.manager.user_id),
        (Activity.Action.PROPERTY_REMOVED, "manager script", team.manager.user_id),
    ]


def test_a_property_name_the_account_has_is_refused_with_the_forms_words(team, manager_api):
    response = manager_api.post("/api/v1/properties/", {"name": "casa azul", "timezone": "Europe/Lisbon"})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "invalid" and problem["status"] == 400
    assert problem["errors"]["name"][0]["code"] == "duplicate"
    assert "Casa Azul" in problem["errors"]["name"][0]["message"] or "casa azul" in problem["errors"]["name"][0]["message"]
    assert Property.objects.filter(account=team.account).count() == 1


def test_an_unknown_time_zone_is_refused_in_the_requested_language(manager_api):
    english = manager_api.post("/api/v1/properties/", {"name": "X", "timezone": "Mars/Olympus"}).json()
    portuguese = manager_api.post(
        "/api/v1/properties/", {"name": "X", "timezone": "Mars/Olympus"}, HTTP_ACCEPT_LANGUAGE="pt"
    ).json()
    assert "is not a time zone name" in english["errors"]["timezone"][0]["message"]
    with translation.override("pt"):
        from django.utils.translation import gettext

        words = gettext("“%(value)s” is not a time zone name. Choose one from the list, such as Europe/Lisbon.")
    assert portuguese["errors"]["timezone"][0]["message"] == words % {"value": "Mars/Olympus"}


# --------------------------------------------------------------------------- syncs


def test_a_sync_is_made_with_the_forms_checks_and_its_portal_recognised_from_the_link(team, manager_api):
    url = "https://www.airbnb.com/calendar/ical/987.ics?s=abc"
    made = manager_api.post("/api/v1/syncs/", {"property": team.property.pk, "import_url": f"  {url}\n"})
    assert made.status_code == 201, made.content
    body = made.json()
    assert (body["portal"], body["import_url"], body["state"]) == ("airbnb", url, SyncState.WAITING)
    connection = Connection.objects.get(pk=body["id"])
    assert connection.property_id == team.property.pk and connection.sync_interval_minutes == 30
    entry = Activity.objects.get(action=Activity.Action.CONNECTION_CREATED, connection=connection)
    assert entry.params["api_token"] == "manager script"
    # The same link again: refused as the form refuses it, nothing made.
    again = manager_api.post("/api/v1/syncs/", {"property": team.property.pk, "import_url": url})
    assert again.status_code == 400
    assert "import_url" in again.json()["errors"]
    assert Connection.objects.filter(import_url=url).count() == 1


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"import_url": "ftp://example.com/cal.ics"}, "import_url"),
        ({"import_url": "https://www.airbnb.com/calendar/ical/1.ics", "portal": "booking"}, "portal"),
        ({"import_url": "https://www.airbnb.com/x.ics", "portal": "nowhere"}, "portal"),
        ({"import_url": "https://www.airbnb.com/x.ics", "sync_interval_minutes": 2}, "sync_interval_minutes"),
        ({"direction": "sideways", "import_url": "https://www.airbnb.com/x.ics"}, "direction"),
        ({"import_url": ""}, "import_url"),
    ],
)
def test_a_sync_the_form_would_refuse_is_refused_with_its_field_named(team, manager_api, given, field):
    response = manager_api.post("/api/v1/syncs/", {"property": team.property.pk, **given})
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert Connection.objects.filter(property=team.property).count() == 1


def test_editing_a_sync_changes_only_what_is_sent(team, manager_api):
    path = f"/api/v1/syncs/{team.connection.pk}/"
    body = manager_api.patch(path, {"sync_interval_minutes": 90, "export_summary": "Closed"}).json()
    assert (body["sync_interval_minutes"], body["export_summary"], body["import_url"]) == (
        90, "Closed", team.connection.import_url
    )
    entry = Activity.objects.get(action=Activity.Action.CONNECTION_EDITED)
    assert sorted(entry.params["fields"]) == ["export_summary", "sync_interval_minutes"]
    assert entry.params["api_token"] == "manager script"


def test_a_sync_removed_by_another_request_while_it_is_edited_answers_404_not_a_500(team, manager_api, monkeypatch):
    """Two scripts at once: one edits a sync while the other removes it. The edit's answer reads
    the sync again, and finds it gone."""
    edit = editing.connection_edit

    def edit_then_removed_beside(**kwargs):
        changed = edit(**kwargs)
        removal.connections_remove(user=team.owner.user, connections=[kwargs["connection"]])
        return changed

    monkeypatch.setattr(editing, "connection_edit", edit_then_removed_beside)
    answer = manager_api.patch(f"/api/v1/syncs/{team.connection.pk}/", {"sync_interval_minutes": 90})
    assert answer.status_code == 404
    assert answer["Content-Type"] == "application/problem+json" and answer.json()["code"] == "not_found"


def test_switching_off_and_on_and_sync_now_are_recorded_and_a_switched_off_sync_is_not_synced(team, manager_api):
    base = f"/api/v1/syncs/{team.connection.pk}"
    off = manager_api.post(f"{base}/switch/", {"enabled": False})
    assert (off.json()["enabled"], off.json()["state"]) == (False, SyncState.SWITCHED_OFF)
    refused = manager_api.post(f"{base}/sync-now/")
    assert refused.status_code == 409 and refused.json()["code"] == "switched_off"
    assert manager_api.post(f"{base}/switch/", {"enabled": True}).json()["enabled"] is True
    asked = manager_api.post(f"{base}/sync-now/")
    assert asked.status_code == 202 and asked.json()["sync_requested_at"]
    actions = list(Activity.objects.filter(connection=team.connection).order_by("pk").values_list("action", "params"))
    assert [action for action, _params in actions] == [
        Activity.Action.SWITCHED_OFF, Activity.Action.SWITCHED_ON, Activity.Action.SYNC_REQUESTED,
    ]
    assert all(params["api_token"] == "manager script" for _action, params in actions)


@pytest.mark.parametrize("given", [{}, {"enabled": "maybe"}, {"enabled": None}, []])
def test_a_switch_without_a_yes_or_no_is_refused_and_changes_nothing(team, manager_api, given):
    response = manager_api.post(f"/api/v1/syncs/{team.connection.pk}/switch/", given)
    assert response.status_code == 400
    assert Connection.objects.get(pk=team.connection.pk).enabled is True


def test_removing_a_sync_archives_it(team, manager_api):
    assert manager_api.delete(f"/api/v1/syncs/{team.connection.pk}/").status_code == 204
    assert Connection.all_objects.get(pk=team.connection.pk).archived_at is not None
    assert manager_api.get("/api/v1/syncs/").json()["results"] == []


def _paused(connection, *, status=404):
    Connection.objects.filter(pk=connection.pk).update(
        paused_at=timezone.now(), pause_reason="http_4xx", pause_params={"status": status},
        last_error_code="http_4xx", last_error_params={"status": status}, consecutive_failures=3,
    )
    state_record([connection.pk])


def test_a_syncs_state_and_error_are_worded_as_the_pages_word_them_in_the_requested_language(team, manager_api):
    _paused(team.connection)
    for language in ("en", "pt", "es"):
        body = manager_api.get(f"/api/v1/syncs/{team.connection.pk}/", HTTP_ACCEPT_LANGUAGE=language).json()
        with translation.override(language):
            words = describe("http_4xx", {"status": 404}, portal="Airbnb")
            label = str(SyncState.PAUSED.label)
        assert (body["state"], body["error_code"], body["error"], body["state_label"]) == ("paused", "http_4xx", words, label)
        assert words in body["state_words"]
    assert body["last_run"]["id"] == team.run.pk


def test_syncs_are_filtered_by_state_portal_and_property(team, manager_api):
    other = ConnectionFactory(property=PropertyFactory(account=team.account), portal=portal("booking"))
    _paused(other)
    ids = lambda query: [row["id"] for row in manager_api.get(f"/api/v1/syncs/?{query}").json()["results"]]  # noqa: E731
    assert ids("state=paused") == [other.pk]
    assert ids("portal=airbnb") == [team.connection.pk]
    assert ids(f"property={other.property_id}") == [other.pk]
    assert ids("state=paused&portal=airbnb") == []
    for query in ("state=broken", "property=abc", "property=99999999999999999999999"):
        response = manager_api.get(f"/api/v1/syncs/?{query}")
        assert response.status_code == 400, query
        assert response["Content-Type"] == "application/problem+json"


def test_the_overview_counts_what_the_overview_page_counts(team, manager_api):
    _paused(ConnectionFactory(property=team.property, portal=portal("vrbo")))
    body = manager_api.get("/api/v1/overview/").json()
    summary = dashboard_summary(user=team.manager.user)
    assert body["total"] == summary.total == 2
    assert body["counts"] == summary.counts
    assert body["counts"]["paused"] == 1
    assert body["needing_attention"] == len(summary.attention) + summary.attention_more


# --------------------------------------------------------------------------- reading


def test_a_read_carries_an_etag_and_answers_304_until_the_row_changes(team, manager_api):
    path = f"/api/v1/syncs/{team.connection.pk}/"
    first = manager_api.get(path)
    etag = first["ETag"]
    assert manager_api.get(path, HTTP_IF_NONE_MATCH=etag).status_code == 304
    manager_api.patch(path, {"sync_interval_minutes": 60})
    changed = manager_api.get(path, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag


def test_pages_follow_the_cursor_in_a_stable_order(team, manager_api):
    for n in range(4):
        PropertyFactory(account=team.account, name=f"Flat {n}")
    seen, url = [], "/api/v1/properties/?page_size=2"
    while url:
        page = manager_api.get(url.replace("http://testserver", "")).json()
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
    assert seen == sorted(Property.objects.filter(account=team.account).values_list("pk", flat=True))
    assert manager_api.get("/api/v1/properties/?cursor=bogus").status_code == 404
    for size in ("0", "abc", "-1"):
        assert manager_api.get(f"/api/v1/properties/?page_size={size}").status_code == 400


def test_over_the_rate_a_token_is_answered_429_with_retry_after(team, settings):
    settings.API_THROTTLE_RATE = "3/min"
    api, other = ApiClient(team.tokens["viewer"]), ApiClient(team.tokens["manager"])
    assert [api.get("/api/v1/overview/").status_code for _ in range(3)] == [200, 200, 200]
    refused = api.get("/api/v1/overview/")
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert 0 < int(refused["Retry-After"]) <= 60
    assert other.get("/api/v1/overview/").status_code == 200  # counted per token


# --------------------------------------------------------------------------- odd inputs


@pytest.mark.parametrize(
    "payload",
    ["[]", '"x"', "null", "{", "1e999", '{"name": null, "timezone": null}', '{"name": {"a": 1}, "timezone": ["UTC"]}',
     '{"name": "' + "x" * 5000 + '", "timezone": "UTC"}',
     '{"name": "Ok", "timezone": "' + "Europe/" * 300 + '"}', "\xff\xfe"],
)
def test_odd_bodies_are_refused_never_a_server_error(team, manager_api, payload):
    for path in ("/api/v1/properties/", f"/api/v1/properties/{team.property.pk}/"):
        method = "POST" if path.endswith("properties/") else "PATCH"
        response = manager_api.request(method, path, payload)
        assert 400 <= response.status_code < 500, (path, payload, response.content[:200])
    if not payload.startswith("{\""):  # not an object: refused by every route that reads one
        for path in ("/api/v1/syncs/", f"/api/v1/syncs/{team.connection.pk}/", f"/api/v1/syncs/{team.connection.pk}/switch/"):
            response = manager_api.request("PATCH" if path.count("/") == 5 else "POST", path, payload)
            assert 400 <= response.status_code < 500, (path, payload, response.content[:200])
    assert Property.objects.filter(account=team.account).count() == 1


def test_control_characters_are_removed_from_texts_as_the_pages_remove_them(team, manager_api):
    made = manager_api.post("/api/v1/properties/", '{"name": "Casa\\u0000 Nova\\u0007", "timezone": "UTC"}')
    assert made.status_code == 201 and made.json()["name"] == "Casa Nova"


@pytest.mark.parametrize(
    "body",
    [{"property": "abc"}, {"property": 99999999999999999999999}, {"property": -1}, {"property": 1.5}, {"property": None},
     {"property": [1]}, {"property": "{id}", "portal": {"slug": "airbnb"}}, {"property": "{id}", "sync_interval_minutes": "1e9"},
     {"property": "{id}", "import_url": "https://www.airbnb.com/" + "a" * 3000 + ".ics"}, {"property": "{id}", "check_now": "yes"}],
)
def test_odd_sync_bodies_are_refused_never_a_server_error(team, manager_api, body):
    body = {key: team.property.pk if value == "{id}" else value for key, value in body.items()}
    response = manager_api.post("/api/v1/syncs/", body)
    assert 400 <= response.status_code < 500, response.content[:300]
    assert Connection.objects.filter(property__account=team.account).count() == 1


@pytest.mark.parametrize("path", ["/api/v1/syncs/99999999999999999999999/", "/api/v1/properties/0/", "/api/v1/nothing/", "/api/v1/syncs/1/x/"])
def test_paths_that_name_nothing_are_a_404_problem(manager_api, path):
    response = manager_api.get(path)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_a_body_that_is_not_json_is_a_415_problem(team, manager_api):
    response = manager_api.client.post(
        "/api/v1/properties/", data="name=x", content_type="application/x-www-form-urlencoded", **manager_api.headers
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


# --------------------------------------------------------------------------- sessions, schema


def test_a_signed_in_session_uses_the_api_with_csrf_on_writes(team):
    client = Client(enforce_csrf_checks=True)
    client.force_login(team.manager.user)
    assert client.get("/api/v1/properties/").status_code == 200
    body = json.dumps({"name": "Casa Nova", "timezone": "Europe/Lisbon"})
    refused = client.post("/api/v1/properties/", body, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    client.get("/me/")  # the page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    made = client.post("/api/v1/properties/", body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert made.status_code == 201
    # A session's write is recorded without a token's name.
    entry = Activity.objects.get(action=Activity.Action.PROPERTY_CREATED)
    assert entry.user_id == team.manager.user_id and "api_token" not in entry.params


def test_the_schema_is_openapi_3_1_and_the_reference_page_runs_under_the_csp(client):
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    document = json.loads(schema.content)
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["bearerAuth"]["description"]
    }
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<script>" not in html and "<style>" not in html  # nothing inline: the CSP allows 'self' only
    assert "script-src 'self'" in page["Content-Security-Policy"]
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content


def test_a_token_is_touched_with_the_address_it_was_used_from(team):
    ApiClient(team.tokens["owner"], REMOTE_ADDR="198.51.100.7").get("/api/v1/overview/")
    token = ApiToken.objects.get(name="owner script")
    assert token.last_used_ip == "198.51.100.7" and token.last_used_at is not None


# --------------------------------------------------------------------------- runs, exports, blocks, double bookings, activity


def test_a_syncs_runs_are_paged_newest_first(team, manager_api):
    from tests.factories import SyncRunFactory

    later = [SyncRunFactory(connection=team.connection, outcome="ok_unchanged") for _ in range(2)]
    page = manager_api.get(f"/api/v1/syncs/{team.connection.pk}/runs/?page_size=2").json()
    assert [run["id"] for run in page["results"]] == [later[1].pk, later[0].pk]
    rest = manager_api.get(page["next"].replace("http://testserver", "")).json()
    assert [run["id"] for run in rest["results"]] == [team.run.pk]


def test_the_export_url_is_the_pages_and_rotating_it_keeps_the_old_one_for_the_grace(team, manager_api):
    from syncs.export_tokens import export_token_ensure, export_url

    path = f"/api/v1/syncs/{team.connection.pk}/export/"
    shown = manager_api.get(path).json()
    assert shown["url"] == export_url(export_token_ensure(property=team.property, connection=team.connection))
    assert shown["old_url_works_until"] is None
    rotated = manager_api.post(f"{path}rotate/").json()
    assert rotated["url"] != shown["url"] and rotated["old_url_works_until"]
    entry = Activity.objects.get(action=Activity.Action.EXPORT_ROTATED)
    assert entry.params["api_token"] == "manager script"
    import_only = ConnectionFactory(property=team.property, portal=portal("vrbo"), direction="import_only")
    refused = manager_api.get(f"/api/v1/syncs/{import_only.pk}/export/")
    assert refused.status_code == 409 and refused.json()["code"] == "not_exporting"


def test_nights_closed_here_are_made_listed_and_opened_again(team, manager_api):
    from datetime import timedelta

    from syncs.models import Block

    start = timezone.localdate() + timedelta(days=40)
    made = manager_api.post("/api/v1/blocks/", {
        "property": team.property.pk, "start": start.isoformat(), "end": (start + timedelta(days=2)).isoformat(),
        "kind": "reserved", "summary": "Direct: Ana",
    })
    assert made.status_code == 201, made.content
    block = Block.objects.get(pk=made.json()["id"])
    assert (block.source_id, block.kind, block.nights) == (None, "reserved", 2)
    listed = manager_api.get(f"/api/v1/blocks/?property={team.property.pk}").json()["results"]
    assert {row["id"] for row in listed} == {team.block.pk, block.pk}
    assert manager_api.delete(f"/api/v1/blocks/{block.pk}/").status_code == 204
    assert Block.objects.get(pk=block.pk).removed_at is not None
    actions = Activity.objects.filter(action__in=["block_added", "block_removed"]).values_list("action", "params__api_token")
    assert sorted(actions) == [("block_added", "manager script"), ("block_removed", "manager script")]
    # An imported block is the portal's: not among these, not removable here.
    imported = Block.objects.exclude(source=None).get()
    assert manager_api.delete(f"/api/v1/blocks/{imported.pk}/").status_code == 404


@pytest.mark.parametrize(
    ("start", "end", "words"),
    [(45, 43, "The check-out day must be after the first night."), (-400, -398, "The first night must be"),
     (40, 40 + 3000, "The check-out day must be")],
)
def test_nights_outside_what_the_service_keeps_are_refused_with_the_pages_words(team, manager_api, start, end, words):
    from datetime import timedelta

    today = timezone.localdate()
    response = manager_api.post("/api/v1/blocks/", {
        "property": team.property.pk, "start": (today + timedelta(days=start)).isoformat(),
        "end": (today + timedelta(days=end)).isoformat(),
    })
    assert response.status_code == 400
    assert words in response.json()["detail"]


def test_double_bookings_are_listed_with_their_clashing_nights_and_marked_handled(team, manager_api):
    (listed,) = manager_api.get("/api/v1/double-bookings/").json()["results"]
    assert (listed["first_night"], listed["nights"], listed["handled"]) == (team.block.start_date.isoformat(), 3, False)
    assert listed["runs"] == [[team.block.start_date.isoformat(), team.block.end_date.isoformat()]]
    assert {stay["source"] for stay in listed["stays"]} == {"Airbnb", "made here"}
    stale = manager_api.post("/api/v1/double-bookings/handle/", {
        "property": team.property.pk, "key": listed["key"], "fingerprint": "0" * 64,
    })
    assert stale.status_code == 400 and "changed" in stale.json()["detail"]
    handled = manager_api.post("/api/v1/double-bookings/handle/", {
        "property": team.property.pk, "key": listed["key"], "fingerprint": listed["fingerprint"], "note": "Moved the guest",
    })
    assert handled.status_code == 201
    (again,) = manager_api.get("/api/v1/double-bookings/").json()["results"]
    assert (again["handled"], again["note"]) == (True, "Moved the guest")
    assert manager_api.get("/api/v1/overview/").json()["double_bookings"] == 0


def test_double_bookings_are_paged_each_once_the_unhandled_first_and_a_forged_cursor_is_refused(team, manager_api):
    others = [PropertyFactory(account=team.account, name=f"Flat {n}") for n in range(3)]
    for n, prop in enumerate(others):
        airbnb = ConnectionFactory(property=prop, portal=portal("airbnb"))
        start = team.block.start_date + timedelta(days=10 * (n + 1))
        BlockFactory(property=prop, source=None, kind="reserved", start_date=start, end_date=start + timedelta(days=2))
        BlockFactory(property=prop, source=airbnb, kind="reserved", start_date=start, end_date=start + timedelta(days=2))
    first = manager_api.get("/api/v1/double-bookings/").json()["results"]
    assert len(first) == 4
    handled = manager_api.post("/api/v1/double-bookings/handle/", {
        "property": first[0]["property"], "key": first[0]["key"], "fingerprint": first[0]["fingerprint"],
    })
    assert handled.status_code == 201

    seen, url = [], "/api/v1/double-bookings/?page_size=1"
    while url:
        page = manager_api.get(url.removeprefix("http://testserver")).json()
        assert len(page["results"]) == 1
        seen += page["results"]
        url = page["next"]
    assert [(row["property"], row["handled"]) for row in seen] == [
        *[(row["property"], False) for row in first[1:]], (first[0]["property"], True)
    ]
    forged = manager_api.get("/api/v1/double-bookings/?cursor=bm90LWEtY3Vyc29y")
    assert forged.status_code == 400 and forged.json()["code"] == "invalid"


def test_the_activity_log_is_paged_newest_first_and_filtered_by_time(team, manager_api):
    from datetime import timedelta

    Activity.objects.all().delete()
    now = timezone.now()
    old = Activity.objects.create(account=team.account, action="switched_off", created_at=now - timedelta(days=2))
    manager_api.post(f"/api/v1/syncs/{team.connection.pk}/sync-now/")
    rows = manager_api.get("/api/v1/activity/").json()["results"]
    assert [row["action"] for row in rows] == ["sync_requested", "switched_off"]
    assert rows[0]["api_token"] == "manager script" and rows[0]["user"] == team.manager.user.username
    since = (now - timedelta(days=1)).isoformat()
    recent = manager_api.client.get("/api/v1/activity/", {"since": since}, **manager_api.headers).json()["results"]
    assert [row["action"] for row in recent] == ["sync_requested"]
    before = manager_api.client.get("/api/v1/activity/", {"until": since}, **manager_api.headers).json()["results"]
    assert [row["id"] for row in before] == [old.pk]
    # A moment without its zone, or one the database cannot hold, is refused; an odd offset is read.
    odd = manager_api.client.get("/api/v1/activity/", {"since": "1383-05-21T16:16:14.273998-16:33"}, **manager_api.headers)
    assert odd.status_code == 200
    for value in ("yesterday", "2027-01-01T10:00:00", "2027-13-01T00:00:00Z", "0001-01-01T00:00:00+01:00"):
        response = manager_api.client.get("/api/v1/activity/", {"since": value}, **manager_api.headers)
        assert response.status_code == 400, value


def test_the_activity_page_names_the_token_that_made_a_change(team, manager_api, client):
    manager_api.post(f"/api/v1/syncs/{team.connection.pk}/switch/", {"enabled": False})
    client.force_login(team.owner.user)
    page = client.get("/activity/").content.decode()
    row = page[page.index('data-action="switched_off"'):]
    row = row[:row.index("</tr>")]
    assert team.manager.user.username in row and "with the API token “manager script”" in row
