"""Members and roles: invitations by email, roles, removals, several accounts per person, the
first owner of a fresh installation, and who did what in the activity log."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from syncs.models import Account, Activity, Invitation, Membership, PauseEpisode
from syncs.notifications import send_pause_notifications
from tests.factories import (
    AccountFactory,
    ConnectionFactory,
    MembershipFactory,
    PropertyFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

Role = Membership.Role
LINK = re.compile(r"https?://\S+/invitations/[\w-]+/")


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner():
    return MembershipFactory(account__name="Sol Rentals", user__username="olga", role=Role.OWNER)


def invite(client: Client, email: str, role: str, language: str = "en"):
    return client.post(reverse("member-invite"), {"email": email, "role": role, "language": language})


def link_in(email) -> str:
    return LINK.search(email.body).group(0)


# --------------------------------------------------------------------------- inviting


def test_an_owner_invites_by_email_and_the_link_works_once_for_a_new_person(owner, mailoutbox, settings):
    settings.SITE_URL = "https://app.example.com"
    response = invite(signed_in(owner.user), "Vera@Example.com", Role.VIEWER)
    assert response.status_code == 302

    (email,) = mailoutbox
    assert email.to == ["vera@example.com"]
    assert email.subject == "You are invited to Sol Rentals on channelmgr"
    assert "olga invites you to Sol Rentals" in email.body and "as Viewer" in email.body
    link = link_in(email)
    assert link.startswith("https://app.example.com/invitations/")
    invitation = Invitation.objects.get()
    assert link.rsplit("/", 2)[1] not in invitation.token_hash  # only the hash is stored

    visitor = Client()
    path = link.removeprefix("https://app.example.com")
    page = visitor.get(path).content.decode()
    assert "Join Sol Rentals" in page and "vera@example.com" in page
    joined = visitor.post(path, {"username": "vera", "password1": "a long pass phrase 7", "password2": "a long pass phrase 7"})
    assert joined.status_code == 302 and joined["Location"] == reverse("home")

    vera = get_user_model().objects.get(username="vera")
    assert vera.email == "vera@example.com"
    membership = Membership.objects.get(user=vera)
    assert (membership.account, membership.role, membership.email_alerts) == (owner.account, Role.VIEWER, "none")
    assert "Sol Rentals" in visitor.get(reverse("home")).content.decode()  # signed in, working in it

    # The link worked once.
    again = Client().get(path)
    assert again.status_code == 410
    assert "accepted already" in again.content.decode()
    assert Activity.objects.filter(action=Activity.Action.MEMBER_JOINED, user=vera, params__role="viewer").exists()


def test_the_new_persons_password_goes_through_djangos_validators(owner, mailoutbox):
    invite(signed_in(owner.user), "vera@example.com", Role.MANAGER)
    path = link_in(mailoutbox[0]).split("localhost:8000", 1)[-1]
    page = Client().post(path, {"username": "vera", "password1": "12345678", "password2": "12345678"})
    assert page.status_code == 200
    assert "This password is too common." in page.content.decode()
    assert not get_user_model().objects.filter(username="vera").exists()
    assert Invitation.objects.get().accepted_at is None


def test_a_person_with_a_sign_in_logs_in_and_joins_a_second_account(owner, mailoutbox):
    other = MembershipFactory(account__name="Mar Rentals", user__username="ana", user__email="ana@example.com")
    invite(signed_in(owner.user), "ana@example.com", Role.MANAGER)
    path = "/" + link_in(mailoutbox[0]).split("/", 3)[3]

    anonymous = Client().get(path).content.decode()
    assert "has a sign-in already" in anonymous and 'name="password1"' not in anonymous

    ana = signed_in(other.user)
    assert "Join Sol Rentals as ana" in ana.get(path).content.decode()
    assert ana.post(path).status_code == 302
    assert set(Membership.objects.filter(user=other.user).values_list("account__name", "role")) == {
        ("Mar Rentals", Role.OWNER), ("Sol Rentals", Role.MANAGER),
    }
    # The account just joined is the current one, shown in the header with the switcher.
    header = ana.get(reverse("home")).content.decode()
    assert 'id="account-switcher"' in header
    assert re.search(r"<summary[^>]*>Sol Rentals</summary>", header)


def test_someone_signed_in_with_another_address_is_told_so_and_cannot_accept(owner, mailoutbox):
    """A viewer of another account holds the link sent to vera: she sees whom it is for, a way to
    sign out and continue as vera, and her posts join nothing."""
    intruder = MembershipFactory(account__name="Mar Rentals", user__username="bea", user__email="bea@example.com",
                                 role=Role.VIEWER)
    invite(signed_in(owner.user), "vera@example.com", Role.MANAGER)
    path = "/" + link_in(mailoutbox[0]).split("/", 3)[3]
    bea = signed_in(intruder.user)

    page = bea.get(path).content.decode()
    assert "This invitation was sent to vera@example.com, and you are signed in as bea." in page
    assert "Sign out and continue as vera@example.com" in page
    assert "Join Sol Rentals as bea" not in page
    refused = bea.post(path)
    assert refused.status_code == 403
    assert not Membership.objects.filter(user=intruder.user, account=owner.account).exists()
    assert Invitation.objects.get().accepted_at is None

    # Signing out from there comes back to the invitation, as a visitor who can sign up as vera.
    signed_out = bea.post(reverse("logout"), {"next": path})
    assert signed_out["Location"] == path
    page = bea.get(path).content.decode()
    assert 'name="password1"' in page and "vera@example.com" in page


def test_the_service_refuses_an_invitation_to_anyone_but_its_address_in_any_case(owner, mailoutbox):
    from django.core.exceptions import ValidationError

    from syncs.members import invitation_accept

    invite(signed_in(owner.user), "Vera@Example.com", Role.VIEWER)
    invitation = Invitation.objects.get()
    someone = UserFactory(username="someone", email="someone@example.com")
    with pytest.raises(ValidationError, match=r"sent to vera@example\.com"):
        invitation_accept(invitation=invitation, user=someone)
    no_address = UserFactory(username="nobody", email="")
    with pytest.raises(ValidationError):
        invitation_accept(invitation=invitation, user=no_address)
    vera = UserFactory(username="vera", email="VERA@example.COM")
    assert invitation_accept(invitation=invitation, user=vera).account == owner.account


def test_the_invited_address_signed_in_joins_with_one_button(owner, mailoutbox):
    vera = MembershipFactory(account__name="Mar Rentals", user__username="vera", user__email="Vera@Example.com")
    invite(signed_in(owner.user), "vera@example.com", Role.VIEWER)
    path = "/" + link_in(mailoutbox[0]).split("/", 3)[3]
    client = signed_in(vera.user)
    assert "Join Sol Rentals as vera" in client.get(path).content.decode()
    assert client.post(path)["Location"] == reverse("home")
    assert Membership.objects.filter(user=vera.user, account=owner.account, role=Role.VIEWER).exists()


def test_an_invitation_expires_after_seven_days_and_sending_it_again_makes_a_new_link(owner, mailoutbox):
    owner_client = signed_in(owner.user)
    invite(owner_client, "vera@example.com", Role.VIEWER)
    first = "/" + link_in(mailoutbox[0]).split("/", 3)[3]
    invitation = Invitation.objects.get()
    assert invitation.expires_at - invitation.sent_at == timedelta(days=7)

    with time_machine.travel(timezone.now() + timedelta(days=7, minutes=1)):
        expired = Client().get(first)
        assert expired.status_code == 410 and "has expired" in expired.content.decode()
        assert "expired" in owner_client.get(reverse("members")).content.decode()
        owner_client.post(reverse("invitation-resend", args=[invitation.pk]))
        second = "/" + link_in(mailoutbox[1]).split("/", 3)[3]
        assert second != first
        assert Client().get(first).status_code == 404  # the old link died with the new one
        assert Client().get(second).status_code == 200


def test_a_withdrawn_invitation_no_longer_works(owner, mailoutbox):
    owner_client = signed_in(owner.user)
    invite(owner_client, "vera@example.com", Role.VIEWER)
    path = "/" + link_in(mailoutbox[0]).split("/", 3)[3]
    owner_client.post(reverse("invitation-revoke", args=[Invitation.objects.get().pk]))
    response = Client().post(path, {"username": "vera", "password1": "a long pass phrase 7", "password2": "a long pass phrase 7"})
    assert response.status_code == 410 and "withdrawn" in response.content.decode()
    assert not get_user_model().objects.filter(username="vera").exists()
    assert "No invitation is waiting." in owner_client.get(reverse("members")).content.decode()


def test_inviting_a_member_again_is_refused_and_inviting_a_pending_address_sends_it_again(owner, mailoutbox):
    MembershipFactory(account=owner.account, user__email="ana@example.com")
    owner_client = signed_in(owner.user)
    refused = invite(owner_client, "ANA@example.com", Role.VIEWER)
    assert refused.status_code == 400
    assert "ana@example.com is a member of Sol Rentals already." in refused.content.decode()
    invite(owner_client, "vera@example.com", Role.VIEWER)
    invite(owner_client, "vera@example.com", Role.MANAGER)
    assert Invitation.objects.get().role == Role.MANAGER  # one pending invitation, with the new role
    assert len(mailoutbox) == 2
    assert "as Manager" in mailoutbox[1].body
    assert Client().get("/" + link_in(mailoutbox[0]).split("/", 3)[3]).status_code == 404


def test_the_invitation_comes_in_the_language_the_owner_chose(owner, mailoutbox):
    invite(signed_in(owner.user), "lucia@example.com", Role.VIEWER, language="es")
    assert mailoutbox[0].subject == "Le invitan a Sol Rentals en channelmgr"
    html, _type = mailoutbox[0].alternatives[0]
    assert 'lang="es"' in html


def test_a_mail_server_failure_is_said_and_the_invitation_can_be_sent_again(owner, mailoutbox, monkeypatch):
    from django.core.mail.backends import locmem

    def refuse(self, messages):
        raise ConnectionRefusedError("no mail server")

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", refuse)
    owner_client = signed_in(owner.user)
    page = invite(owner_client, "vera@example.com", Role.VIEWER)
    assert page.status_code == 302
    members_page = owner_client.get(reverse("members")).content.decode()
    assert "the email could not be sent" in members_page
    assert "vera@example.com" in members_page  # waiting, with its "Send again" button


# --------------------------------------------------------------------------- roles and removals


def test_an_owner_changes_a_role_and_the_log_says_who_and_what(owner):
    ana = MembershipFactory(account=owner.account, user__username="ana", role=Role.MANAGER)
    client = signed_in(owner.user)
    client.post(reverse("member-role", args=[ana.pk]), {"role": Role.VIEWER})
    ana.refresh_from_db()
    assert ana.role == Role.VIEWER
    entry = Activity.objects.get(action=Activity.Action.ROLE_CHANGED)
    assert (entry.user, entry.account, entry.member_words) == (owner.user, owner.account, "ana: Manager → Viewer")
    assert "ana: Manager → Viewer" in client.get(reverse("activity")).content.decode()


def test_an_account_always_keeps_an_owner(owner):
    client = signed_in(owner.user)
    response = client.post(reverse("member-role", args=[owner.pk]), {"role": Role.VIEWER}, follow=True)
    assert "olga is the only owner of Sol Rentals" in response.content.decode()
    client.post(reverse("member-remove", args=[owner.pk]))
    owner.refresh_from_db()
    assert owner.role == Role.OWNER
    assert not Activity.objects.filter(action__in=[Activity.Action.ROLE_CHANGED, Activity.Action.MEMBER_REMOVED]).exists()

    # With a second owner, the first may step down.
    second = MembershipFactory(account=owner.account, role=Role.OWNER)
    client.post(reverse("member-role", args=[owner.pk]), {"role": Role.MANAGER})
    owner.refresh_from_db()
    assert owner.role == Role.MANAGER
    refused = signed_in(second.user).post(reverse("member-remove", args=[second.pk]), follow=True)
    assert "only owner" in refused.content.decode()
    assert Membership.objects.filter(pk=second.pk).exists()


def test_a_removed_members_open_session_ends_at_its_next_request(owner):
    ana = MembershipFactory(account=owner.account, user__username="ana", role=Role.MANAGER)
    ana_client = signed_in(ana.user)
    assert ana_client.get(reverse("home")).status_code == 200
    signed_in(owner.user).post(reverse("member-remove", args=[ana.pk]))

    response = ana_client.get(reverse("property-list"))
    assert response.status_code == 302 and response["Location"] == reverse("login")
    page = ana_client.get(reverse("login")).content.decode()
    assert "You are no longer a member of that account, so you were signed out." in page
    assert ana_client.get(reverse("home"))["Location"].startswith(reverse("login"))  # really signed out
    assert Activity.objects.filter(action=Activity.Action.MEMBER_REMOVED, params__member="ana").exists()


def test_a_removed_members_htmx_poll_sends_the_whole_window_to_log_in(owner):
    ana = MembershipFactory(account=owner.account, role=Role.VIEWER)
    ana_client = signed_in(ana.user)
    ana_client.get(reverse("home"))
    Membership.objects.filter(pk=ana.pk).delete()
    response = ana_client.get(reverse("overview-status"), headers={"HX-Request": "true"})
    assert response.status_code == 200 and response["HX-Redirect"] == reverse("login")


def test_a_member_of_two_accounts_switches_and_every_page_follows_on_every_device(owner):
    second = MembershipFactory(user=owner.user, account__name="Mar Rentals", role=Role.VIEWER)
    PropertyFactory(account=owner.account, name="Casa Sol")
    PropertyFactory(account=second.account, name="Casa Mar")
    laptop, phone = signed_in(owner.user), signed_in(owner.user)
    assert "Casa Sol" in laptop.get(reverse("property-list")).content.decode()

    response = laptop.post(reverse("account-switch"), {"account": second.account.pk})
    assert response["Location"] == reverse("home")
    for device in (laptop, phone):
        page = device.get(reverse("property-list")).content.decode()
        assert "Casa Mar" in page and "Casa Sol" not in page
    # In Mar Rentals this person is a viewer: the role follows the account.
    assert laptop.post(reverse("member-invite"), {"email": "x@example.com", "role": "viewer", "language": "en"}).status_code == 403

    stranger = AccountFactory(name="Not Mine")
    assert laptop.post(reverse("account-switch"), {"account": stranger.pk}).status_code == 404
    assert Account.of_user(get_user_model().objects.get(pk=owner.user.pk)) == second.account


def test_a_person_in_no_account_is_told_so_instead_of_an_empty_overview(client):
    client.force_login(UserFactory())
    response = client.get(reverse("home"))
    assert response.status_code == 403
    assert "You are not a member of any account" in response.content.decode()


# --------------------------------------------------------------------------- pause emails


def test_pause_emails_go_to_members_who_want_them_viewers_only_if_they_opt_in(owner, mailoutbox):
    account = owner.account
    MembershipFactory(account=account, role=Role.MANAGER, user__email="manager@example.com")
    viewer = MembershipFactory(account=account, role=Role.VIEWER, user__email="viewer@example.com")
    MembershipFactory(account=account, role=Role.MANAGER, user__email="quiet@example.com", email_alerts="none")
    connection = ConnectionFactory(property=PropertyFactory(account=account), paused_at=timezone.now(), pause_reason="timeout")
    PauseEpisode.objects.create(connection=connection, reason="timeout")
    send_pause_notifications()
    assert sorted(mailoutbox[0].to) == sorted([owner.user.email, "manager@example.com"])

    # The viewer opts in on their own page.
    mailoutbox.clear()
    viewer_client = signed_in(viewer.user)
    assert reverse("my-alerts") in viewer_client.get(reverse("profile")).content.decode()
    viewer_client.post(reverse("my-alerts"), {"email_alerts": "all", "language": ""})
    other = ConnectionFactory(property=PropertyFactory(account=account), paused_at=timezone.now(), pause_reason="timeout")
    PauseEpisode.objects.create(connection=other, reason="timeout")
    send_pause_notifications()
    assert "viewer@example.com" in mailoutbox[0].to


# --------------------------------------------------------------------------- the first run


def test_create_account_prints_a_link_where_the_owner_sets_a_password_once(client, settings):
    settings.SITE_URL = "https://app.example.com"
    out = io.StringIO()
    call_command("create_account", "Sol Rentals", "--owner-email", "Olga@Example.com", stdout=out)
    link = re.search(r"https://app\.example\.com(/accounts/welcome/\S+/)", out.getvalue()).group(1)
    assert "72 hours" in out.getvalue()
    olga = get_user_model().objects.get(email="olga@example.com")
    assert olga.username == "olga@example.com" and not olga.has_usable_password()
    assert Membership.objects.get(user=olga).role == Role.OWNER

    form = client.get(link, follow=True)
    assert "You own Sol Rentals" in form.content.decode()
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "sea and sun 2027", "new_password2": "sea and sun 2027"}, follow=True)
    assert "Your password is set. Log in with it now." in done.content.decode()
    logged_in = client.post(reverse("login"), {"username": "olga@example.com", "password": "sea and sun 2027"}, follow=True)
    assert "Sol Rentals" in logged_in.content.decode()
    assert Activity.objects.filter(action=Activity.Action.PASSWORD_SET, user=olga).exists()

    # Once only.
    assert "does not work any more" in Client().get(link, follow=True).content.decode()


def test_the_first_run_link_lasts_72_hours_and_running_the_command_again_gives_a_new_one(settings):
    out = io.StringIO()
    call_command("create_account", "Sol Rentals", "--owner-email", "olga@example.com", stdout=out)
    link = re.search(r"(/accounts/welcome/\S+/)", out.getvalue()).group(1)
    with time_machine.travel(timezone.now() + timedelta(hours=72, minutes=1)):
        assert "does not work any more" in Client().get(link, follow=True).content.decode()
        again = io.StringIO()
        call_command("create_account", "Sol Rentals", "--owner-email", "olga@example.com", stdout=again)
        fresh = re.search(r"(/accounts/welcome/\S+/)", again.getvalue()).group(1)
        assert "Choose your password" in Client().get(fresh, follow=True).content.decode()
    assert Account.objects.count() == 1


def test_create_account_refuses_a_taken_name_and_a_bad_email():
    AccountFactory(name="Sol Rentals")
    with pytest.raises(CommandError, match="exists already"):
        call_command("create_account", "Sol Rentals", "--owner-email", "olga@example.com", stdout=io.StringIO())
    with pytest.raises(CommandError, match="valid email"):
        call_command("create_account", "Mar", "--owner-email", "not-an-email", stdout=io.StringIO())
    assert not get_user_model().objects.exists()
