"""Syncs from a file: rows checked by the pages' own rules, the whole file saved or nothing, and
the export that is the file to edit and upload back."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from syncs.export_tokens import export_token_ensure, export_url
from syncs.models import Activity, Connection, Membership, OnboardingUpload, Property
from syncs.onboarding import jobs
from syncs.onboarding.file import file_read
from syncs.onboarding.jobs import onboarding_import, onboarding_preview
from syncs.sync_state import state_record
from tests.factories import ConnectionFactory, MembershipFactory, PropertyFactory, portal

pytestmark = pytest.mark.django_db

FILE = """Property,Time zone,Portal,Import link
Casa Azul,Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/111.ics?s=a
Casa Azul,Europe/Lisbon,Booking.com,https://admin.booking.com/hotel/hoteladmin/ical.html?t=b
Casa Azul,Europe/Lisbon,Airbnb,http://www.airbnb.com/calendar/ical/111.ics?s=a
Beach Loft,Europe/Madrid,,https://www.vrbo.com/icalendar/abc.ics
Beach Loft,Europe/Madrid,Vrbo,https://www.vrbo.com/icalendar/abc.ics
Old Flat,Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/999.ics?s=old
Private,Europe/Lisbon,Other,http://192.168.1.20/cal.ics
Loopback,Europe/Lisbon,Other,http://127.0.0.1/cal.ics
nonsense
Bad Zone,Mars/Olympus,Airbnb,https://www.airbnb.com/calendar/ical/5.ics
Unknown Portal,Europe/Lisbon,Hotels4U,https://example.com/5.ics
"""
GOOD_LINES = (1, 2, 3, 5)  # the header and the rows that pass, as file lines (1-based)


@pytest.fixture
def manager(client):
    membership = MembershipFactory(role=Membership.Role.MANAGER)
    old = PropertyFactory(account=membership.account, name="Old Flat", timezone="Europe/Lisbon")
    ConnectionFactory(property=old, import_url="https://www.airbnb.com/calendar/ical/999.ics?s=old")
    client.force_login(membership.user)
    return membership


def upload(client, content: str | bytes, name: str = "syncs.csv"):
    data = content.encode() if isinstance(content, str) else content
    return client.post(reverse("onboarding"), {"file": SimpleUploadedFile(name, data, "text/csv")}, follow=True)


def page_text(response) -> str:
    return response.content.decode().replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&")


def export(client) -> bytes:
    response = client.get(reverse("exports-csv"))
    assert response.status_code == 200
    return response.content


def parsed(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def written(rows: list[list[str]]) -> bytes:
    """A CSV as a spreadsheet saves it (Excel's dialect, CRLF), with the UTF-8 byte order mark."""
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return ("\ufeff" + out.getvalue()).encode()


def test_a_file_gives_one_message_per_bad_row_and_saves_nothing_while_a_row_is_in_error(client, manager):
    page = page_text(upload(client, FILE))
    assert Connection.objects.count() == 1  # the check saved nothing
    checked = OnboardingUpload.objects.get()
    errors = {row["line"]: row["errors"] for row in checked.rows}
    assert {line for line, found in errors.items() if not found} == {2, 3, 5}
    assert all(len(errors[line]) == 1 for line in (4, 6, 7, 8, 9, 10, 11, 12)), errors
    assert "already imports this link" in errors[4][0]  # the same link earlier in the file (http = https)
    assert "already imports this link" in errors[6][0]  # the same link twice in the file
    assert "already imports this link" in errors[7][0]  # an existing sync
    assert "private or local network address" in errors[8][0]
    assert "private or local network address" in errors[9][0]
    assert "This line has 1 cell, and the first line names 4 columns" in errors[10][0]
    assert "is not a time zone name" in errors[11][0]
    assert "not a portal we know" in errors[12][0]
    for line in (4, 8, 10, 12):
        assert errors[line][0] in page
    assert "Nothing is saved while a row has an error" in page
    assert 'id="import-button"' not in page

    # Saving anyway (a crafted POST) saves nothing either: the whole file or nothing.
    client.post(reverse("onboarding-import", args=[checked.pk]))
    assert Connection.objects.count() == 1 and not Property.objects.filter(name="Casa Azul").exists()

    # The good rows alone are saved, in one go.
    good = "\n".join(line for number, line in enumerate(FILE.splitlines(), start=1) if number in GOOD_LINES)
    page = page_text(upload(client, good))
    assert "3 to add" in page and 'id="import-button"' in page
    fixed = OnboardingUpload.objects.latest("pk")
    page = page_text(client.post(reverse("onboarding-import", args=[fixed.pk]), follow=True))
    assert "Saved: 3 syncs added, 0 syncs changed." in page
    made = Connection.objects.exclude(property__name="Old Flat").select_related("property", "portal")
    assert sorted((c.property.name, c.portal.slug) for c in made) == [
        ("Beach Loft", "vrbo"), ("Casa Azul", "airbnb"), ("Casa Azul", "booking")
    ]
    assert Property.objects.get(name="Beach Loft").timezone == "Europe/Madrid"
    assert Activity.objects.get(action="syncs_imported").params["count"] == 3
    # Each sync was added as the add form adds it: its own activity entry, its export URL.
    assert Activity.objects.filter(action="connection_created").count() == 3
    assert all(c.export_tokens.exists() for c in made)
    # A second click adds nothing.
    page = page_text(client.post(reverse("onboarding-import", args=[fixed.pk]), follow=True))
    assert "This file was saved already." in page
    assert Connection.objects.count() == 4


def test_semicolons_and_the_original_four_columns_without_names_and_a_file_that_is_not_a_csv(client, manager):
    upload(client, "Casa;Europe/Lisbon;Airbnb;https://www.airbnb.com/calendar/ical/7.ics\n")
    [row] = OnboardingUpload.objects.get().rows
    assert row["errors"] == [] and row["action"] == "add" and row["property_new"]
    page = client.post(reverse("onboarding"), {"file": SimpleUploadedFile("x.xlsx", b"PK\x03\x04\x00\x00", "application/zip")})
    assert "not a CSV file" in page.content.decode()


def test_a_thousand_rows_are_checked_with_a_few_queries_each_and_nothing_saved(manager, django_assert_max_num_queries):
    """What keeps a big file's check quick whatever the machine's load: a bounded number of
    queries per row. A sync's row costs three (our own export pasted back, the same link twice,
    the insert), a new property's two (its name taken, the insert); the portals and the
    account's syncs are read once for the whole file, and each chunk of 250 rows writes the rows
    above it again in batches (SQLite takes about 60 rows a statement)."""
    lines = [f"Flat {n // 3},Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/{n}.ics?s=x" for n in range(1000)]
    with django_assert_max_num_queries(3 * 1000 + 2 * 334 + 120):
        made = jobs.onboarding_check_file.run(*_queued(manager, "\n".join(lines)))
    checked = OnboardingUpload.objects.get()
    assert made is None and checked.stage == "checked" and all(row["action"] == "add" for row in checked.rows)
    assert Connection.objects.count() == 1 and not Property.objects.filter(name="Flat 1").exists()


def _queued(membership, text: str) -> tuple[int, int]:
    """A file stored for the worker to check (as a big upload is), without checking it."""
    read = file_read(text.encode())
    upload_row = OnboardingUpload.objects.create(
        account=membership.account, user=membership.user, filename="big.csv", rows=read.rows,
        stage="checking", job_attempt=1, job_queued_at=timezone.now(),
    )
    return upload_row.pk, 1


# --------------------------------------------------------------------------- the export, both ways


@pytest.fixture
def syncs_of(manager):
    """Two properties, one with a name a spreadsheet would run, and four kinds of sync."""
    formula = PropertyFactory(account=manager.account, name="=1+1", timezone="Europe/Lisbon")
    cmd = PropertyFactory(account=manager.account, name="-2+3+cmd|' /C calc'!A0", timezone="Atlantic/Madeira")
    return {
        "airbnb": ConnectionFactory(property=formula, import_url="https://www.airbnb.com/calendar/ical/1.ics?s=one"),
        "booking": ConnectionFactory(
            property=formula, portal=portal("booking"), direction="import_only", sync_interval_minutes=45,
            import_url="https://admin.booking.com/hotel/hoteladmin/ical.html?t=two",
        ),
        "vrbo": ConnectionFactory(property=cmd, portal=portal("vrbo"), import_url="https://www.vrbo.com/icalendar/3.ics"),
        "google": ConnectionFactory(property=cmd, portal=portal("google"), direction="export_only", import_url="", enabled=False),
    }


def test_the_export_has_every_column_the_upload_reads_and_disarms_formulas(client, manager, syncs_of):
    rows = parsed(export(client))
    assert rows[0] == ["Sync id", "Property", "Time zone", "Portal", "Import link", "Direction", "Switched on",
                       "Interval (minutes)", "State", "Export URL"]
    by_id = {row[0]: row for row in rows[1:]}
    booking = syncs_of["booking"]
    assert by_id[str(booking.pk)][:8] == [
        str(booking.pk), "'=1+1", "Europe/Lisbon", "Booking.com", booking.import_url, "Import only", "yes", "45",
    ]
    assert by_id[str(booking.pk)][9] == ""  # an import-only sync has no export URL
    google = syncs_of["google"]
    assert by_id[str(google.pk)][1] == "'-2+3+cmd|' /C calc'!A0"  # OWASP: a leading apostrophe
    assert by_id[str(google.pk)][4:7] == ["", "Export only", "no"]
    assert by_id[str(google.pk)][9] == export_url(export_token_ensure(property=google.property, connection=google))
    for row in rows:
        assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row)


def test_the_export_uploaded_unchanged_changes_nothing_and_says_so(client, manager, syncs_of):
    before = list(Connection.objects.order_by("pk").values())
    page = page_text(upload(client, export(client)))
    checked = OnboardingUpload.objects.get()
    assert [row["errors"] for row in checked.rows] == [[]] * 5
    assert {row["action"] for row in checked.rows} == {"same"}
    assert "Nothing to change: the file says what your account already has." in page
    assert 'id="import-button"' not in page and "untouched" not in page
    assert list(Connection.objects.order_by("pk").values()) == before
    assert not Property.objects.filter(name="'=1+1").exists()


def test_an_edited_export_changes_exactly_its_edited_cells_and_exports_back_as_edited(client, manager, syncs_of):
    """The round trip: export, upload (no change), edit 3 cells, upload, save, export again:
    the same file, but for the state of the sync switched off."""
    first = export(client)
    rows = parsed(first)
    assert first == written(rows)  # the export is a spreadsheet's CSV: the test writes files the same way
    by_id = {row[0]: row for row in rows[1:]}
    airbnb, booking, vrbo = syncs_of["airbnb"], syncs_of["booking"], syncs_of["vrbo"]
    by_id[str(airbnb.pk)][7] = "60"
    by_id[str(booking.pk)][6] = "no"
    by_id[str(vrbo.pk)][4] = "https://www.vrbo.com/icalendar/4.ics"
    edited = written(rows)
    versions = {c.pk: c.settings_version for c in Connection.objects.all()}

    page = page_text(upload(client, edited))
    checked = OnboardingUpload.objects.get()
    actions = {row["cells"]["id"]: row["action"] for row in checked.rows}
    old = Connection.objects.get(property__name="Old Flat")
    assert actions == {str(airbnb.pk): "change", str(booking.pk): "change", str(vrbo.pk): "change",
                       str(syncs_of["google"].pk): "same", str(old.pk): "same"}
    assert "interval: 30 minutes → 60 minutes" in page
    assert "switched on: yes → no" in page
    assert "link: https://www.vrbo.com/…3.ics → https://www.vrbo.com/…4.ics" in page
    assert "3 to change" in page and "Save these 3 changes" in page
    assert Connection.objects.get(pk=airbnb.pk).sync_interval_minutes == 30  # nothing saved yet

    client.post(reverse("onboarding-import", args=[checked.pk]))
    airbnb.refresh_from_db(), booking.refresh_from_db(), vrbo.refresh_from_db()
    assert (airbnb.sync_interval_minutes, booking.enabled, vrbo.import_url) == (60, False, "https://www.vrbo.com/icalendar/4.ics")
    # Through the pages' services: a new settings version for each, one activity entry each.
    assert all(c.settings_version > versions[c.pk] for c in (airbnb, booking, vrbo))
    assert Connection.objects.get(pk=syncs_of["google"].pk).settings_version == versions[syncs_of["google"].pk]
    entries = Activity.objects.order_by("pk")
    assert sorted((e.action, e.connection_id) for e in entries if e.action != "syncs_imported") == sorted([
        ("connection_edited", airbnb.pk), ("switched_off", booking.pk), ("connection_edited", vrbo.pk),
    ])
    assert entries.get(action="syncs_imported").params == {"count": 0, "changed": 3, "rows": 5, "file": "syncs.csv"}
    log = page_text(client.get(reverse("activity")))
    assert "saved syncs from a file" in log and "0 syncs added and 3 changed, from syncs.csv" in log

    again = parsed(export(client))
    by_id[str(booking.pk)][8] = "Switched off"  # the state: read-only, and now what it is
    assert again == rows
    assert export(client) == written(rows)


def test_a_new_row_in_the_export_adds_a_sync_and_keeps_a_formula_name(client, manager, syncs_of):
    rows = parsed(export(client))
    rows.append(["", "=HYPERLINK(\"x\")", "Europe/Lisbon", "", "https://www.airbnb.com/calendar/ical/77.ics", "", "", "", "", ""])
    upload(client, written(rows))
    checked = OnboardingUpload.objects.get()
    assert [row["action"] for row in checked.rows][-1] == "add"
    client.post(reverse("onboarding-import", args=[checked.pk]))
    made = Connection.objects.get(import_url="https://www.airbnb.com/calendar/ical/77.ics")
    assert made.property.name == '=HYPERLINK("x")' and made.portal.slug == "airbnb" and made.enabled
    assert made.direction == "two_way" and made.sync_interval_minutes == 30
    assert '\'=HYPERLINK(""x"")' in export(client).decode()


def test_a_row_may_change_a_propertys_time_zone_through_the_property_edit(client, manager, syncs_of):
    rows = parsed(export(client))
    for row in rows[1:]:
        if row[1] == "'=1+1":
            row[2] = "Europe/Madrid"
            break
    upload(client, written(rows))
    checked = OnboardingUpload.objects.get()
    changes = [row["changes"] for row in checked.rows if row["changes"]]
    assert changes == [[{"field": "timezone", "old": "Europe/Lisbon", "new": "Europe/Madrid"}]]
    versions = {c.pk: c.settings_version for c in Connection.objects.all()}
    client.post(reverse("onboarding-import", args=[checked.pk]))
    assert Property.objects.get(name="=1+1").timezone == "Europe/Madrid"
    assert Activity.objects.get(action="property_edited").params == {"fields": ["timezone"]}
    # Every feed of the property is read again in its new zone, as after the property's edit page.
    for connection in Connection.objects.filter(property__name="=1+1"):
        assert connection.settings_version > versions[connection.pk]


def test_two_different_new_zones_for_one_property_are_refused(client, manager, syncs_of):
    rows = parsed(export(client))
    mine = [row for row in rows[1:] if row[1] == "'=1+1"]
    mine[0][2], mine[1][2] = "Europe/Madrid", "Europe/Paris"
    upload(client, written(rows))
    errors = [row["errors"] for row in OnboardingUpload.objects.get().rows if row["errors"]]
    assert len(errors) == 1 and "gives =1+1 the time zone Europe/Madrid" in errors[0][0]


def test_a_new_link_on_a_paused_sync_is_read_at_once_as_after_the_edit_page(client, manager, syncs_of):
    vrbo = syncs_of["vrbo"]
    Connection.objects.filter(pk=vrbo.pk).update(paused_at=timezone.now(), pause_reason="http_4xx")
    state_record([vrbo.pk])  # written raw: decided as the product's writes are
    rows = parsed(export(client))
    for row in rows[1:]:
        if row[0] == str(vrbo.pk):
            row[4] = "https://www.vrbo.com/icalendar/new.ics"
    upload(client, written(rows))
    client.post(reverse("onboarding-import", args=[OnboardingUpload.objects.get().pk]))
    vrbo.refresh_from_db()
    assert vrbo.import_url == "https://www.vrbo.com/icalendar/new.ics"
    assert vrbo.checking_since is not None and vrbo.sync_requested_at is not None  # "switched on, checking"


def test_a_sync_of_another_account_or_an_unknown_id_is_that_rows_error_and_nothing_is_touched(client, manager):
    theirs = ConnectionFactory(
        property=PropertyFactory(name="Their Villa"), import_url="https://www.airbnb.com/calendar/ical/55.ics?s=theirs"
    )
    before = list(Connection.objects.filter(pk=theirs.pk).values())
    text = (
        "Sync id,Property,Import link,Interval (minutes)\n"
        f"{theirs.pk},Old Flat,https://www.airbnb.com/calendar/ical/56.ics,60\n"
        "999999,Old Flat,https://www.airbnb.com/calendar/ical/57.ics,60\n"
        "abc,Old Flat,https://www.airbnb.com/calendar/ical/58.ics,60\n"
        "²,Old Flat,https://www.airbnb.com/calendar/ical/59.ics,²\n"
    )
    page = page_text(upload(client, text))
    errors = [row["errors"] for row in OnboardingUpload.objects.get().rows]
    assert errors == [
        [f"Your account has no sync {theirs.pk}: leave the id empty to add a new sync."],
        ["Your account has no sync 999999: leave the id empty to add a new sync."],
        ["“abc” is not a sync id: leave the cell empty to add a new sync."],
        ["“²” is not a sync id: leave the cell empty to add a new sync."],
    ]
    assert "Their Villa" not in page and "55.ics" not in page
    assert list(Connection.objects.filter(pk=theirs.pk).values()) == before


def test_a_sync_named_twice_or_moved_to_another_property_is_refused(client, manager):
    old = Connection.objects.get()
    text = (
        "Sync id,Property,Interval (minutes)\n"
        f"{old.pk},Old Flat,60\n"
        f"{old.pk},Old Flat,90\n"
        f"{old.pk},Casa Nova,60\n"
    )
    upload(client, text)
    errors = [row["errors"] for row in OnboardingUpload.objects.get().rows]
    assert errors[0] == []
    assert errors[1] == [f"Sync {old.pk} is on line 2 already."]
    assert errors[2] == [f"Sync {old.pk} is on line 2 already."]


def test_a_file_with_some_syncs_only_changes_those_and_counts_the_others(client, manager, syncs_of):
    rows = parsed(export(client))
    kept = [rows[0], rows[1]]
    page = page_text(upload(client, written(kept)))
    assert "4 syncs of your account are not in this file: nothing changes for them." in page


def test_one_link_on_two_properties_in_one_file_is_refused(client, manager):
    text = (
        "Property,Time zone,Portal,Import link\n"
        "Casa Azul,Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/42.ics?s=a\n"
        "Beach Loft,Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/42.ics?s=a\n"
    )
    upload(client, text)
    errors = [row["errors"] for row in OnboardingUpload.objects.get().rows]
    assert errors[0] == [] and "Casa Azul" in " ".join(errors[1])


# --------------------------------------------------------------------------- all or nothing, once


def test_a_row_that_fails_at_save_time_saves_nothing_of_the_file_and_says_why(client, manager):
    text = (
        "Property,Time zone,Portal,Import link\n"
        "Casa Azul,Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/1.ics?s=a\n"
        "Old Flat,Europe/Lisbon,Booking.com,https://admin.booking.com/hotel/hoteladmin/ical.html?t=b\n"
    )
    upload(client, text)
    checked = OnboardingUpload.objects.get()
    assert [row["action"] for row in checked.rows] == ["add", "add"]
    # Meanwhile, someone adds the same Booking.com link to Old Flat on the add page.
    ConnectionFactory(property=Property.objects.get(name="Old Flat"), portal=portal("booking"),
                      import_url="https://admin.booking.com/hotel/hoteladmin/ical.html?t=b")
    page = page_text(client.post(reverse("onboarding-import", args=[checked.pk]), follow=True))
    assert "Nothing was saved: 1 row could not be saved now" in page
    assert not Property.objects.filter(name="Casa Azul").exists()
    assert not Activity.objects.filter(action__in=["syncs_imported", "connection_created", "property_created"]).exists()
    checked.refresh_from_db()
    assert checked.stage == "checked" and checked.imported_at is None
    assert "already imports this link" in checked.rows[1]["errors"][0]


def test_a_row_whose_sync_changed_since_the_check_is_refused_rather_than_overwritten(client, manager):
    old = Connection.objects.get()
    upload(client, f"Sync id,Property,Time zone,Import link,Interval (minutes)\n{old.pk},Old Flat,,{old.import_url},30\n"
                   ",Old Flat,,https://www.airbnb.com/calendar/ical/2.ics,\n")
    checked = OnboardingUpload.objects.get()
    assert [row["action"] for row in checked.rows] == ["same", "add"]
    Connection.objects.filter(pk=old.pk).update(sync_interval_minutes=90)  # changed on its page meanwhile
    state_record([old.pk])  # written raw: decided as the product's writes are
    client.post(reverse("onboarding-import", args=[checked.pk]))
    assert Connection.objects.get(pk=old.pk).sync_interval_minutes == 90
    assert Connection.objects.count() == 1
    checked.refresh_from_db()
    assert "something changed in your account that this row touches" in checked.rows[0]["errors"][0]
    # "Check again" shows what the row would do now.
    client.post(reverse("onboarding-recheck", args=[checked.pk]))
    checked.refresh_from_db()
    assert checked.rows[0]["changes"] == [{"field": "interval", "old": 90, "new": 30}]


def test_saving_twice_saves_once(client, manager):
    upload(client, "Casa Azul,Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/1.ics?s=a\n")
    checked = OnboardingUpload.objects.get()
    assert onboarding_import(upload=checked) is True
    assert onboarding_import(upload=checked) is False
    client.post(reverse("onboarding-import", args=[checked.pk]))
    assert Connection.objects.filter(property__name="Casa Azul").count() == 1
    assert Activity.objects.filter(action="syncs_imported").count() == 1


def test_the_export_csv_lists_every_export_url_and_only_managers_get_it(client, manager):
    connections = [ConnectionFactory(property=PropertyFactory(account=manager.account)) for _ in range(3)]
    rows = parsed(export(client))
    urls = {row[-1] for row in rows[1:]}
    for connection in [*connections, Connection.objects.get(property__name="Old Flat")]:
        assert export_url(export_token_ensure(property=connection.property, connection=connection)) in urls
    assert len(rows) == 5
    viewer = MembershipFactory(account=manager.account, role=Membership.Role.VIEWER)
    client.force_login(viewer.user)
    assert client.get(reverse("exports-csv")).status_code == 403


def test_the_preview_function_keeps_its_shape(manager):
    made, problems = onboarding_preview(
        user=manager.user, account=manager.account, filename="x.csv",
        data=b"Casa Nova,Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/4242.ics?s=abc\n",
    )
    assert problems == [] and made.stage == "checked" and made.rows[0]["action"] == "add"


def test_a_name_saved_with_a_control_character_before_they_were_removed_still_matches(client, manager):
    ConnectionFactory(property=PropertyFactory(account=manager.account, name="Casa\x1b Azul\u009b"))
    upload(client, export(client))
    checked = OnboardingUpload.objects.get()
    assert [row["errors"] for row in checked.rows] == [[], []]
    assert {row["action"] for row in checked.rows} == {"same"}


def test_an_interval_that_is_not_a_whole_number_or_too_short_gets_the_forms_error(client, manager):
    old = Connection.objects.get()
    upload(client, "Sync id,Property,Time zone,Import link,Interval (minutes)\n"
                   f"{old.pk},Old Flat,,{old.import_url},²\n"
                   ",Old Flat,,https://www.airbnb.com/calendar/ical/3.ics,3\n")
    errors = [row["errors"] for row in OnboardingUpload.objects.get().rows]
    assert errors[0] == ["Enter a whole number."]
    assert "greater than or equal to 5" in errors[1][0]


def test_rows_checked_in_another_language_say_so_and_check_again_in_the_readers(client, manager):
    set_language = reverse("set_language")
    client.post(set_language, {"language": "es"})
    upload(client, FILE)
    checked = OnboardingUpload.objects.get()
    spanish = {row["line"]: row["errors"] for row in checked.rows}[12][0]
    assert "not a portal we know" not in spanish  # written in Spanish
    client.post(set_language, {"language": "en"})
    page = page_text(client.get(reverse("onboarding-preview", args=[checked.pk])))
    assert "The rows below were checked in español" in page and spanish in page
    page = page_text(client.post(reverse("onboarding-recheck", args=[checked.pk]), follow=True))
    checked.refresh_from_db()
    english = {row["line"]: row["errors"] for row in checked.rows}[12][0]
    assert "not a portal we know" in english and english in page and 'id="checked-in"' not in page
