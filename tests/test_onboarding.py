"""Onboarding by file: good, duplicate, private-address and garbage rows; the export list."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from syncs.export_tokens import export_token_ensure, export_url
from syncs.models import Activity, Connection, Membership, OnboardingUpload, Property
from syncs.onboarding import onboarding_preview
from tests.factories import ConnectionFactory, MembershipFactory, PropertyFactory

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


@pytest.fixture
def manager(client):
    membership = MembershipFactory(role=Membership.Role.MANAGER)
    old = PropertyFactory(account=membership.account, name="Old Flat", timezone="Europe/Lisbon")
    ConnectionFactory(property=old, import_url="https://www.airbnb.com/calendar/ical/999.ics?s=old")
    client.force_login(membership.user)
    return membership


def upload(client, text: str):
    return client.post(reverse("onboarding"), {"file": SimpleUploadedFile("syncs.csv", text.encode(), "text/csv")}, follow=True)


def test_a_file_gives_one_message_per_bad_row_and_creates_exactly_the_good_ones(client, manager):
    page = upload(client, FILE).content.decode()
    assert Connection.objects.count() == 1  # the preview saved nothing
    upload_row = OnboardingUpload.objects.get()
    errors = {row["line"]: row["errors"] for row in upload_row.rows}
    assert {line for line, found in errors.items() if not found} == {2, 3, 5}
    assert all(len(errors[line]) == 1 for line in (4, 6, 7, 8, 9, 10, 11, 12)), errors
    assert "already imports this link" in errors[4][0]  # the same link earlier in the file (http = https)
    assert "already imports this link" in errors[6][0]  # the same link twice in the file
    assert "already imports this link" in errors[7][0]  # an existing sync
    assert "private or local network address" in errors[8][0]
    assert "private or local network address" in errors[9][0]
    assert "each line needs 4" in errors[10][0]
    assert "is not a time zone name" in errors[11][0]
    assert "not a portal we know" in errors[12][0]
    for line in (4, 8, 10, 12):
        assert errors[line][0] in page.replace("&#x27;", "'").replace("&quot;", '"') or line == 4

    client.post(reverse("onboarding-import", args=[upload_row.pk]))
    made = Connection.objects.exclude(property__name="Old Flat").select_related("property", "portal")
    assert sorted((c.property.name, c.portal.slug) for c in made) == [
        ("Beach Loft", "vrbo"), ("Casa Azul", "airbnb"), ("Casa Azul", "booking")
    ]
    assert Property.objects.get(name="Beach Loft").timezone == "Europe/Madrid"
    assert Activity.objects.get(action="syncs_imported").params["count"] == 3
    # A second click adds nothing.
    client.post(reverse("onboarding-import", args=[upload_row.pk]))
    assert Connection.objects.count() == 4


def test_semicolons_and_a_file_that_is_not_a_csv(client, manager):
    upload(client, "Casa;Europe/Lisbon;Airbnb;https://www.airbnb.com/calendar/ical/7.ics\n")
    assert [row["errors"] for row in OnboardingUpload.objects.get().rows] == [[]]
    page = client.post(reverse("onboarding"), {"file": SimpleUploadedFile("x.xlsx", b"PK\x03\x04\x00\x00", "application/zip")})
    assert "not a CSV file" in page.content.decode()


def test_a_thousand_rows_are_previewed_with_a_few_queries_each_and_nothing_saved(manager, django_assert_max_num_queries):
    """The speed target (1,000 rows in under 5 s) is measured by bench/timeline.py; here, what
    makes it hold whatever the machine's load: a bounded number of queries per row. A sync's row
    costs three (our own export pasted back, the same link twice, the insert), a new property's
    two (its name taken, the insert); the portals are read once for the whole file."""
    lines = [f"Flat {n // 3},Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/{n}.ics?s=x" for n in range(1000)]
    with django_assert_max_num_queries(3 * 1000 + 2 * 334 + 20):
        made, problems = onboarding_preview(
            user=manager.user, account=manager.account, filename="big.csv", data="\n".join(lines).encode()
        )
    assert problems == [] and all(not row["errors"] for row in made.rows)
    assert Connection.objects.count() == 1 and not Property.objects.filter(name="Flat 1").exists()


def test_the_export_csv_lists_every_export_url_and_only_managers_get_it(client, manager):
    connections = [ConnectionFactory(property=PropertyFactory(account=manager.account)) for _ in range(3)]
    response = client.get(reverse("exports-csv"))
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    urls = {row[-1] for row in rows[1:]}
    for connection in [*connections, Connection.objects.get(property__name="Old Flat")]:
        assert export_url(export_token_ensure(property=connection.property, connection=connection)) in urls
    assert len(rows) == 5
    viewer = MembershipFactory(account=manager.account, role=Membership.Role.VIEWER)
    client.force_login(viewer.user)
    assert client.get(reverse("exports-csv")).status_code == 403
