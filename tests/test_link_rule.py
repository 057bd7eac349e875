"""A portal's calendar link belongs to one sync of the account: refused on a second property
(the add form, the edit form, the fix checklist's new link, a CSV's preview and import), named
with a link to the property that has it; allowed, with a warning, in another account (a
hand-over between managers); free again once its sync is removed, saying which had it."""

from __future__ import annotations

import html

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse

from syncs import editing
from syncs.models import Account, Connection, Membership, OnboardingUpload
from syncs.onboarding.jobs import onboarding_import, onboarding_preview
from syncs.removal import connections_remove
from tests.factories import ConnectionFactory, MembershipFactory, PropertyFactory, portal

pytestmark = pytest.mark.django_db

LINK = "https://www.airbnb.com/calendar/ical/1234567.ics?s=0a1b2c3d4e5f"
# The same feed as LINK, spelt as operators paste it (the duplicate check's normalisation:
# syncs.engine.fetch.link_identity); the last two are other feeds (the path and query are case-sensitive).
SAME = [
    LINK,
    "  " + LINK + "  \n",
    LINK.replace("https://www.airbnb.com", "HTTPS://WWW.AIRBNB.COM"),
    LINK.replace("https://", "http://"),
    LINK.replace("https://", "webcal://"),
    LINK.replace("www.airbnb.com", "www.airbnb.com.:443"),
    LINK + "#calendar",
    "<" + LINK + ">",
    "www.airbnb.com/calendar/ical/1234567.ics?s=0a1b2c3d4e5f",
]
OTHER = [LINK.replace("s=0a1b", "s=0A1B"), LINK.replace("/calendar/", "/Calendar/")]


@pytest.fixture
def account(operator):
    return Account.of_user(operator)


@pytest.fixture
def casa(account):
    """Casa Azul imports LINK."""
    prop = PropertyFactory(account=account, name="Casa Azul")
    return ConnectionFactory(property=prop, portal=portal("airbnb"), import_url=LINK)


@pytest.fixture
def loft(account):
    return PropertyFactory(account=account, name="Beach Loft")


def add_sync(client, prop, import_url, **fields):
    data = {"import_url": import_url, "portal": "", "direction": "two_way", "sync_interval_minutes": 30,
            "export_summary": "Not available", **fields}
    return client.post(reverse("connection-create", args=[prop.pk]), data)


def edit_sync(client, connection, **fields):
    data = {"import_url": connection.import_url, "portal": connection.portal_id, "direction": connection.direction,
            "sync_interval_minutes": connection.sync_interval_minutes, "export_summary": connection.export_summary,
            **fields}
    return client.post(reverse("connection-edit", args=[connection.pk]), data)


def link_errors(response) -> list[str]:
    return [str(e) for e in response.context["form"].errors.get("import_url", [])]


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


TAKEN = (
    "Casa Azul already imports this link, in its Airbnb sync. A portal's calendar link belongs to one sync: "
    "paste the link of this property's own listing, or remove that sync first."
)


@pytest.mark.parametrize("pasted", SAME)
def test_a_link_another_property_imports_is_refused_however_it_is_spelt(operator_client, casa, loft, pasted):
    response = add_sync(operator_client, loft, pasted)

    assert response.status_code == 200
    assert link_errors(response) == [TAKEN]
    assert not loft.connections.exists()


@pytest.mark.parametrize("pasted", OTHER)
def test_a_link_whose_path_or_query_differs_in_case_is_another_feed(operator_client, casa, loft, pasted):
    response = add_sync(operator_client, loft, pasted)

    assert response.status_code == 302
    assert loft.connections.get().import_url == pasted


def test_the_refusal_links_to_the_property_and_the_sync_that_have_it(operator_client, casa, loft):
    page = add_sync(operator_client, loft, LINK).content.decode()

    property_link = f'<a href="{reverse("property-detail", args=[casa.property_id])}">Casa Azul</a>'
    sync_link = f'<a href="{reverse("connection-detail", args=[casa.pk])}">Airbnb</a>'
    assert f"{property_link} already imports this link, in its {sync_link} sync." in page


def test_a_property_name_in_the_refusal_is_shown_as_written_never_as_html(operator_client, account, loft):
    villa = PropertyFactory(account=account, name='<b>Villa</b> "Sol" & Mar')
    ConnectionFactory(property=villa, import_url=LINK)

    page = add_sync(operator_client, loft, LINK).content.decode()

    assert "&lt;b&gt;Villa&lt;/b&gt; &quot;Sol&quot; &amp; Mar</a> already imports this link" in page
    assert "<b>Villa</b>" not in page


def test_the_same_property_keeps_its_own_words(operator_client, casa):
    response = add_sync(operator_client, casa.property, LINK.replace("https", "http"))

    assert link_errors(response) == ["This property already imports this link, in its Airbnb sync. Edit that sync instead."]


def test_editing_a_sync_to_another_propertys_link_is_refused_and_changes_nothing(operator_client, casa, loft):
    mine = ConnectionFactory(property=loft, portal=portal("airbnb"))
    before = mine.import_url

    response = edit_sync(operator_client, mine, import_url=SAME[2])

    assert link_errors(response) == [TAKEN]
    mine.refresh_from_db()
    assert mine.import_url == before


def test_editing_a_sync_keeps_its_own_link(operator_client, casa):
    response = edit_sync(operator_client, casa, sync_interval_minutes=45)

    assert response.status_code == 302
    casa.refresh_from_db()
    assert casa.sync_interval_minutes == 45


def test_the_fix_checklists_new_link_follows_the_rule(operator_client, casa, loft):
    mine = ConnectionFactory(property=loft, portal=portal("airbnb"))

    response = operator_client.post(
        reverse("connection-fix-step", args=[mine.pk, "link"]), {"action": "new_link", "import_url": LINK}
    )

    assert "Casa Azul</a> already imports this link" in html.unescape(response.content.decode())
    mine.refresh_from_db()
    assert mine.import_url != LINK


def test_the_service_refuses_it_too_whatever_the_form_said(casa, loft, operator):
    """The form's check and the save are moments apart: the save checks again, under the account's lock."""
    with pytest.raises(ValidationError) as refused:
        editing.connection_create(
            user=operator, property=loft, portal=portal("airbnb"), direction="two_way", import_url=LINK.replace("https", "http"),
            sync_interval_minutes=30, export_summary="Not available",
        )
    assert refused.value.message_dict["import_url"] == [TAKEN]
    assert not loft.connections.exists()


# --------------------------------------------------------------------------- two accounts


def test_another_account_may_import_the_same_link_and_is_warned_in_the_form_and_after_saving(client, casa):
    other = MembershipFactory(role=Membership.Role.MANAGER)
    theirs = PropertyFactory(account=other.account, name="Handed Over")
    client.force_login(other.user)

    shown = add_sync(client, theirs, LINK, sync_interval_minutes=2)  # refused for its interval: the form shows again
    assert "Another account of this service imports this link too" in html.unescape(shown.content.decode())
    assert "Casa Azul" not in shown.content.decode()  # the other account is never named

    response = add_sync(client, theirs, LINK.replace("https", "http"))
    assert response.status_code == 302
    assert theirs.connections.count() == 1
    assert any(m.startswith("Another account of this service imports this link too") for m in said(response))
    assert not any("Casa Azul" in m for m in said(response))


def test_a_link_of_another_account_is_not_a_warning_once_that_sync_is_removed(client, casa):
    connections_remove(user=None, connections=[casa])
    other = MembershipFactory(role=Membership.Role.MANAGER)
    client.force_login(other.user)

    response = add_sync(client, PropertyFactory(account=other.account), LINK)

    assert response.status_code == 302
    assert not any("Another account" in m for m in said(response))


# --------------------------------------------------------------------------- removed syncs


def test_a_removed_syncs_link_is_free_again_and_the_warning_names_the_property_that_had_it(clock, operator_client, casa, loft):
    connections_remove(user=None, connections=[casa])

    response = add_sync(operator_client, loft, LINK)

    assert response.status_code == 302
    assert loft.connections.get().import_url == LINK
    [warning] = [m for m in said(response) if "removed on" in m]
    assert warning.startswith("The Airbnb sync of Casa Azul, removed on 10 January 2027")
    assert warning.endswith("imported this link: with this one saved, it can no longer be restored.")


# --------------------------------------------------------------------------- by file


def test_a_csv_row_with_another_propertys_link_is_refused_naming_the_property(operator, account, casa):
    data = (
        "Property,Time zone,Portal,Import link\n"
        "Beach Loft,Europe/Lisbon,Vrbo,https://www.vrbo.com/icalendar/abc.ics\n"
        f"Beach Loft,Europe/Lisbon,Airbnb,{LINK.replace('https', 'http')}\n"
        "Sea View,Europe/Lisbon,Vrbo,https://WWW.VRBO.COM/icalendar/abc.ics\n"
    )
    upload, problems = onboarding_preview(user=operator, account=account, filename="f.csv", data=data.encode())

    assert problems == []
    errors = {row["line"]: row["errors"] for row in upload.rows}
    # The words as stored and shown in the preview: plain text, no markup.
    assert errors[2] == []
    assert errors[3] == [TAKEN]
    assert errors[4] == [TAKEN.replace("Casa Azul", "Beach Loft").replace("Airbnb sync", "Vrbo sync")]

    # The whole file is saved or nothing is: with rows in error, nothing.
    onboarding_import(upload=OnboardingUpload.objects.get(pk=upload.pk))
    assert not Connection.objects.filter(property__name="Beach Loft").exists()
    assert Connection.objects.filter(import_url__icontains="1234567").count() == 1


def test_a_csv_of_another_account_with_the_same_link_is_not_refused(casa):
    other = MembershipFactory(role=Membership.Role.MANAGER)
    data = f"Handed Over,Europe/Lisbon,Airbnb,{LINK}\n".encode()

    upload, _problems = onboarding_preview(user=other.user, account=other.account, filename="f.csv", data=data)

    assert [row["errors"] for row in upload.rows] == [[]]
