"""Personal API tokens: made on the profile page (shown once, stored hashed), listed with when
and from where they were last used, revoked; made by ``create_api_token``; acting with the
member's role as it is at each request."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from syncs.models import ApiToken, Membership
from tests.api_client import ApiClient, account_with_members, token_of
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_a_token_made_on_the_profile_page_is_shown_once_and_stored_hashed(client):
    membership = MembershipFactory(role="owner")
    client.force_login(membership.user)
    response = client.post(reverse("profile"), {"form": "api_token_create", "name": "PMS sync", "account": membership.pk})
    assert response.status_code == 200
    token = ApiToken.objects.get()
    page = response.content.decode()
    secret = page.split('<code>cm_', 1)[1].split("</code>", 1)[0]
    secret = "cm_" + secret
    assert token.name == "PMS sync" and token.account_id == membership.account_id
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {token.name, token.prefix, token.secret_hash}
    # Shown once: the next visit lists the token by name, never its secret.
    again = client.get(reverse("profile")).content.decode()
    assert "PMS sync" in again and secret not in again and token.prefix in again


def test_the_profile_lists_each_token_with_account_role_and_last_use(client):
    team = account_with_members()
    client.force_login(team.viewer.user)
    ApiClient(team.tokens["viewer"], REMOTE_ADDR="203.0.113.9").get("/api/v1/properties/")
    page = client.get(reverse("profile")).content.decode()
    assert "viewer script" in page and team.account.name in page and "Viewer" in page
    assert "203.0.113.9" in page
    assert "manager script" not in page  # another person's token
    # How to send it, as text: "<token>" is not swallowed as an HTML tag.
    assert "Authorization: Bearer &lt;token&gt;" in page


def test_a_viewer_makes_a_token_that_reads_and_never_writes():
    team = account_with_members()
    api = ApiClient(token_of(team.viewer))
    assert api.get("/api/v1/properties/").status_code == 200
    refused = api.post("/api/v1/properties/", {"name": "New", "timezone": "Europe/Lisbon"})
    assert refused.status_code == 403
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.json()["code"] == "permission_denied"
    assert "Viewer" in refused.json()["detail"]


def test_revoking_a_token_refuses_its_next_request(client):
    team = account_with_members()
    api = ApiClient(team.tokens["manager"])
    assert api.get("/api/v1/syncs/").status_code == 200
    token = ApiToken.objects.get(name="manager script")
    client.force_login(team.manager.user)
    response = client.post(reverse("profile"), {"form": "api_token_revoke", "token": token.pk}, follow=True)
    assert "Revoked the API token" in response.content.decode()
    refused = api.get("/api/v1/syncs/")
    assert refused.status_code == 401
    assert refused.json()["code"] == "authentication_failed"
    assert refused["WWW-Authenticate"].startswith("Bearer")


def test_one_cannot_revoke_another_persons_token(client):
    team = account_with_members()
    token = ApiToken.objects.get(name="owner script")
    client.force_login(team.viewer.user)
    client.post(reverse("profile"), {"form": "api_token_revoke", "token": token.pk})
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None
    assert ApiClient(team.tokens["owner"]).get("/api/v1/properties/").status_code == 200


def test_a_demoted_members_token_loses_its_rights_at_once_and_a_removed_members_token_stops():
    team = account_with_members()
    api = ApiClient(team.tokens["manager"])
    path = f"/api/v1/syncs/{team.connection.pk}/switch/"
    assert api.post(path, {"enabled": False}).status_code == 200
    Membership.objects.filter(pk=team.manager.pk).update(role="viewer")
    assert api.post(path, {"enabled": True}).status_code == 403
    Membership.objects.filter(pk=team.manager.pk).delete()
    assert api.get("/api/v1/syncs/").status_code == 401


def test_a_token_acts_in_its_own_account_whichever_account_is_current_on_the_pages():
    team, other = account_with_members("Casa Azul"), account_with_members("Villa Verde")
    # The owner of the first account is a viewer of the second, and works there on the pages.
    Membership.objects.filter(user=team.owner.user).update(is_current=False)
    MembershipFactory(user=team.owner.user, account=other.account, role="viewer", is_current=True)
    api = ApiClient(team.tokens["owner"])
    names = [row["name"] for row in api.get("/api/v1/properties/").json()["results"]]
    assert names == ["Casa Azul"]
    assert api.post("/api/v1/properties/", {"name": "Casa Nova", "timezone": "Europe/Lisbon"}).status_code == 201
    assert set(other.account.properties.values_list("name", flat=True)) == {"Villa Verde"}


@pytest.mark.parametrize("header", ["Bearer", "Bearer cm_nope", "Bearer a b", "Bearer cm_" + "x" * 500, "Bearer \u00e9t\u00e9"])
def test_a_wrong_token_is_refused_with_401(header):
    response = ApiClient(None, HTTP_AUTHORIZATION=header).get("/api/v1/properties/")
    assert response.status_code == 401
    assert response.json()["status"] == 401


def test_no_token_is_a_401_that_says_how_to_authenticate():
    response = ApiClient(None).get("/api/v1/syncs/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert "Bearer" in response["WWW-Authenticate"]


def test_create_api_token_prints_the_token_alone_on_its_last_line():
    membership = MembershipFactory(role="manager", user__username="ana", account__name="Sol Rentals")
    out = io.StringIO()
    call_command("create_api_token", "--user", "ana", "--account", "Sol Rentals", "--name", "nightly", stdout=out)
    secret = out.getvalue().strip().splitlines()[-1]
    assert secret.startswith("cm_") and " " not in secret
    token = ApiToken.objects.get()
    assert token.name == "nightly" and token.account_id == membership.account_id
    assert ApiClient(secret).get("/api/v1/overview/").status_code == 200


def test_create_api_token_refuses_a_person_who_is_not_a_member():
    MembershipFactory(user__username="ana", account__name="Sol Rentals")
    with pytest.raises(Exception, match="not a member"):
        call_command("create_api_token", "--user", "ana", "--account", "Other", stdout=io.StringIO())
    assert not ApiToken.objects.exists()


def test_a_removed_members_tokens_stay_revoked_when_they_join_again():
    from syncs.members import membership_remove

    team = account_with_members()
    api = ApiClient(team.tokens["manager"])
    membership_remove(membership=team.manager, by=team.owner.user)
    assert api.get("/api/v1/syncs/").status_code == 401
    MembershipFactory(user=team.manager.user, account=team.account, role="manager")
    assert api.get("/api/v1/syncs/").status_code == 401
    assert ApiToken.objects.get(name="manager script").revoked_at is not None
