"""Every change to what a sync reads, made while a claimed poll waits on its portal: the portal
answers 304, the poll's result is dropped instead of written over the change, and the next sync
reads with the new settings. One test per kind of change, the admin's included."""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace
from unittest import mock

import pytest
from django.contrib.admin.sites import site
from django.utils import timezone
from werkzeug import Response

from syncs import tasks
from syncs.connection_state import connection_switch
from syncs.editing import connection_edit, property_edit
from syncs.engine import task
from syncs.engine.task import connection_sync_leased
from syncs.models import Block, Connection, Portal, Property, SyncRun
from syncs.operator_actions import connection_use_https
from syncs.sync_settings import connection_settings_update
from tests.factories import ConnectionFactory, PropertyFactory, portal
from tests.helpers import dispatched

pytestmark = pytest.mark.django_db

# A stay given in UTC times: its nights depend on the property's zone (Lisbon: the 20th and
# 21st; Tokyo, nine hours ahead: the 21st only).
FEED = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Airbnb Inc//Hosting Calendar 1.0//EN\r\n"
    b"BEGIN:VEVENT\r\nUID:stay@airbnb.com\r\nDTSTAMP:20270101T000000Z\r\nDTSTART:20270120T200000Z\r\n"
    b"DTEND:20270122T100000Z\r\nSUMMARY:Reserved\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)
LISBON_NIGHTS = [(date(2027, 1, 20), date(2027, 1, 22), "reserved")]


def portal_with_etag(request):
    if request.headers.get("If-None-Match") == '"v1"':
        return Response(b"", status=304, headers={"ETag": '"v1"'})
    return Response(FEED, content_type="text/calendar", headers={"ETag": '"v1"'})


@pytest.fixture
def connection(clock, httpserver, settings):
    settings.FETCH_ALLOW_LOOPBACK = True
    httpserver.expect_request("/feed.ics").respond_with_handler(portal_with_etag)
    prop = PropertyFactory(timezone="Europe/Lisbon")
    connection = ConnectionFactory(property=prop, portal=portal("airbnb"), import_url=httpserver.url_for("/feed.ics"))
    assert connection_sync_leased(connection_id=connection.pk).outcome == "ok_changed"
    assert nights(connection) == LISBON_NIGHTS
    return connection


def nights(connection) -> list[tuple]:
    return list(
        Block.objects.filter(source=connection, removed_at__isnull=True).values_list("start_date", "end_date", "kind")
    )


def edit(connection, **changes) -> None:
    current = {
        "portal": connection.portal, "direction": connection.direction, "import_url": connection.import_url,
        "sync_interval_minutes": connection.sync_interval_minutes, "export_summary": connection.export_summary,
    }
    connection_edit(user=None, connection=connection, **{**current, **changes})


def admin_save(model, obj, **changes) -> None:
    """What the admin's change form does with a valid form that changed these fields."""
    for name, value in changes.items():
        setattr(obj, name, value)
    site._registry[model].save_model(request=None, obj=obj, form=SimpleNamespace(changed_data=list(changes)), change=True)


def requests_to(httpserver) -> list:
    return [request for request, _ in httpserver.log]


CHANGES = {
    "link": lambda c, server: edit(c, import_url=server.url_for("/feed.ics") + "?moved=1"),
    "portal": lambda c, server: edit(c, portal=portal("vrbo")),
    "direction": lambda c, server: edit(c, direction=Connection.Direction.IMPORT_ONLY),
    "interval": lambda c, server: edit(c, sync_interval_minutes=240),
    "switch": lambda c, server: connection_switch(connection=c, enabled=False),
    "property zone": lambda c, server: property_edit(user=None, property=c.property, name=c.property.name, timezone="Asia/Tokyo"),
    "portal labels": lambda c, server: admin_save(Portal, Portal.objects.get(pk=c.portal_id), labels={"tentative": ["Reserved"]}),
    "use https": lambda c, server: connection_use_https(connection=c, user=None),
    "admin: link": lambda c, server: admin_save(
        Connection, Connection.objects.get(pk=c.pk), import_url=server.url_for("/feed.ics") + "?admin=1"
    ),
    "admin: interval": lambda c, server: admin_save(Connection, Connection.objects.get(pk=c.pk), sync_interval_minutes=240),
    "admin: property zone": lambda c, server: admin_save(Property, Property.objects.get(pk=c.property_id), timezone="Asia/Tokyo"),
}
READ_FROM_SCRATCH = {"link", "portal", "property zone", "portal labels", "use https", "admin: link", "admin: property zone"}


@pytest.mark.parametrize("kind", list(CHANGES))
def test_a_change_made_while_a_claimed_poll_waits_on_its_portal_wins_over_the_poll(kind, clock, connection, httpserver):
    clock.shift(timedelta(minutes=31))
    message = dispatched(connection)
    runs_before = SyncRun.objects.count()
    version_before = Connection.objects.get(pk=connection.pk).settings_version
    real_fetch = task.fetch_feed

    def change_then_answer(*args, **kwargs):
        CHANGES[kind](Connection.objects.select_related("property", "portal").get(pk=connection.pk), httpserver)
        fetched = real_fetch(*args, **kwargs)
        assert fetched.status == 304  # the poll read with the old settings and was told "unchanged"
        return fetched

    with mock.patch.object(task, "fetch_feed", change_then_answer):
        assert tasks.sync_connection(*message) is None

    # Nothing of the poll was written over the change: no run, no validators, no schedule.
    assert SyncRun.objects.count() == runs_before
    after = Connection.objects.get(pk=connection.pk)
    assert after.settings_version == version_before + 1
    assert after.lease_holder == ""
    if kind in READ_FROM_SCRATCH:
        assert (after.etag, after.body_fingerprint) == ("", "")
    if kind != "switch":
        assert after.next_sync_at <= timezone.now()  # the sync with the new settings comes at once
    else:
        connection_switch(connection=after, enabled=True)

    run = connection_sync_leased(connection_id=connection.pk)

    last = requests_to(httpserver)[-1]
    after = Connection.objects.get(pk=connection.pk)
    if kind in READ_FROM_SCRATCH and kind != "use https":
        assert "If-None-Match" not in last.headers  # read in full, as a new feed
    if kind in ("link", "admin: link"):
        assert last.query_string in (b"moved=1", b"admin=1")
    if kind in ("property zone", "admin: property zone"):
        assert nights(connection) == [(date(2027, 1, 21), date(2027, 1, 22), "reserved")]
    if kind == "portal labels":
        assert [kind for _, _, kind in nights(connection)] == ["tentative"]
    if kind in ("interval", "admin: interval"):
        assert after.next_sync_at >= timezone.now() + timedelta(minutes=239)
    if kind == "use https":
        # The loopback portal speaks only plain HTTP: the https:// link fails its TLS handshake.
        assert after.import_url.startswith("https://") and run.error_code == "tls"
    else:
        assert run.outcome in ("ok_changed", "ok_unchanged")


def test_a_change_of_the_export_title_alone_leaves_a_poll_in_flight_alone(connection):
    assert connection_settings_update(connection_id=connection.pk, values={"export_summary": "Closed"}) == []
    assert Connection.objects.get(pk=connection.pk).settings_version == 0


def test_the_admin_form_leaves_the_engine_fields_out(admin_client):
    connection = ConnectionFactory()
    page = admin_client.get(f"/admin/syncs/connection/{connection.pk}/change/")
    assert page.status_code == 200
    form_fields = set(page.context["adminform"].form.fields)
    for engine_owned in ("paused_at", "held_answer", "held_since", "next_sync_at", "lease_holder", "etag", "settings_version"):
        assert engine_owned not in form_fields
    assert "import_url" in form_fields and "enabled" in form_fields
    prop_page = admin_client.get(f"/admin/syncs/property/{connection.property_id}/change/")
    assert "calendar_version" not in set(prop_page.context["adminform"].form.fields)


SETTINGS_NAMES = {"import_url", "portal", "portal_id", "direction", "sync_interval_minutes", "enabled", "timezone", "labels"}


def test_no_module_writes_what_a_sync_reads_but_the_settings_service():
    """An update() of a field a sync reads, anywhere but syncs/sync_settings.py, would let a poll
    in flight write its old reading over the change."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "syncs"
    found = []
    for path in root.rglob("*.py"):
        if "migrations" in path.parts or path.name == "sync_settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update"
                and ".objects" in ast.unparse(node.func.value)  # a queryset's update(), not a dict's
            ):
                written = {keyword.arg for keyword in node.keywords} & SETTINGS_NAMES
                if written:
                    found.append(f"{path.name}:{node.lineno} {sorted(written)}")
    assert found == []
