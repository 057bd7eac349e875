"""Passwords (reset by email, change) and two-factor sign-in (authenticator app, recovery codes)."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection as db_connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from syncs.models import Activity, Membership
from syncs.password_reset import password_reset_send
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"  # the factories' password
RESET_LINK = re.compile(r"https?://[^/\s]+(/accounts/reset/\S+/)")


@pytest.fixture
def ana():
    return MembershipFactory(user__username="ana", user__email="ana@example.com", account__name="Sol Rentals").user


@pytest.fixture
def worker(monkeypatch):
    """The worker sends the reset email as soon as the web hands it over."""
    monkeypatch.setattr(password_reset_send, "apply_async", lambda args, **options: password_reset_send(*args))


def log_in(client: Client, username: str = "ana", password: str = PASSWORD):
    return client.post(reverse("login"), {"username": username, "password": password})


# --------------------------------------------------------------------------- passwords


def test_a_forgotten_password_is_reset_through_the_emailed_link(client, ana, mailoutbox, settings, worker):
    settings.SITE_URL = "https://app.example.com"
    old_session = Client()
    old_session.force_login(ana)

    page = client.get(reverse("login")).content.decode()
    assert f'href="{reverse("password_reset")}"' in page
    sent = client.post(reverse("password_reset"), {"email": "ANA@example.com"}, HTTP_HOST="127.0.0.1")
    assert sent["Location"] == reverse("password_reset_done")
    (email,) = mailoutbox
    assert email.subject == "Choose a new channelmgr password"
    assert "sign-in ana" in email.body and "for 1 hour." in email.body
    link = RESET_LINK.search(email.body)
    assert link.group(0).startswith("https://app.example.com/")  # the site's address, never the Host header's

    form = client.get(link.group(1), follow=True)
    assert "Choose a new password" in form.content.decode()
    weak = client.post(form.redirect_chain[-1][0], {"new_password1": "ana", "new_password2": "ana"})
    assert "This password is too short." in weak.content.decode()  # Django's validators are on
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "sea and sun 2027", "new_password2": "sea and sun 2027"})
    assert done["Location"] == reverse("password_reset_complete")

    assert log_in(Client(), password="sea and sun 2027").status_code == 302
    assert log_in(Client()).status_code == 200  # the old password no longer works
    assert old_session.get(reverse("home")).status_code == 302  # sessions with the old one ended
    assert "does not work any more" in client.get(link.group(1), follow=True).content.decode()  # once only
    assert Activity.objects.filter(action=Activity.Action.PASSWORD_RESET, user=ana).count() == 1


def test_a_reset_link_expires_after_an_hour(client, ana, mailoutbox, worker):
    client.post(reverse("password_reset"), {"email": "ana@example.com"})
    path = RESET_LINK.search(mailoutbox[0].body).group(1)
    with time_machine.travel(timezone.now() + timedelta(minutes=59)):
        assert "Choose a new password" in Client().get(path, follow=True).content.decode()
    with time_machine.travel(timezone.now() + timedelta(hours=1, minutes=1)):
        assert "does not work any more" in Client().get(path, follow=True).content.decode()


def test_the_reset_email_comes_in_the_members_language_and_unknown_addresses_get_the_same_answer(client, ana, mailoutbox, worker):
    Membership.objects.filter(user=ana).update(language="pt")
    unknown = client.post(reverse("password_reset"), {"email": "nobody@example.com"})
    known = client.post(reverse("password_reset"), {"email": "ana@example.com"})
    assert unknown["Location"] == known["Location"]
    (email,) = mailoutbox
    assert email.subject == "Escolha uma nova palavra-passe do channelmgr"
    # A second request at once sends nothing: the form cannot flood an inbox.
    client.post(reverse("password_reset"), {"email": "ana@example.com"})
    assert len(mailoutbox) == 1


def test_a_signed_in_member_changes_the_password_and_other_sessions_end(client, ana):
    other = Client()
    other.force_login(ana)
    client.force_login(ana)
    assert f'href="{reverse("password_change")}"' in client.get(reverse("profile")).content.decode()
    wrong = client.post(reverse("password_change"), {"old_password": "nope", "new_password1": "x", "new_password2": "x"})
    assert "Your old password was entered incorrectly" in wrong.content.decode()
    changed = client.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": "sea and sun 2027", "new_password2": "sea and sun 2027"},
    )
    assert changed["Location"] == reverse("profile")
    assert client.get(reverse("home")).status_code == 200  # this session goes on
    assert other.get(reverse("home")).status_code == 302  # the others end
    assert Activity.objects.filter(action=Activity.Action.PASSWORD_CHANGED, user=ana).exists()


def test_the_login_lockout_still_holds(client, ana, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        log_in(client, password="nope")
    assert log_in(client).status_code == 429


# --------------------------------------------------------------------------- two-factor sign-in


def code_for(device_or_key, *, at: float | None = None) -> str:
    """The code an authenticator app shows, computed as the app does (RFC 6238)."""
    key = device_or_key.bin_key if isinstance(device_or_key, TOTPDevice) else device_or_key
    totp = TOTP(key, step=30, t0=0, digits=6)
    totp.time = at if at is not None else time.time()
    return f"{totp.token():06d}"


def key_on_the_page(page: str) -> bytes:
    from base64 import b32decode

    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    return b32decode(secret)


def enrol(client: Client) -> tuple[bytes, list[str]]:
    page = client.get(reverse("two-factor-setup")).content.decode()
    assert 'src="data:image/svg+xml' in page  # the QR code, as an image our CSP allows
    key = key_on_the_page(page)
    response = client.post(reverse("two-factor-setup"), {"code": code_for(key)}, follow=True)
    codes = re.findall(r"<li>([a-z2-7]{8})</li>", response.content.decode())
    return key, codes


def test_a_member_turns_on_two_factor_and_signs_in_with_a_code_from_the_app(client, ana):
    client.force_login(ana)
    assert "Set up two-factor sign-in" in client.get(reverse("profile")).content.decode()
    key, codes = enrol(client)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert TOTPDevice.objects.get(user=ana).confirmed
    assert Activity.objects.filter(action=Activity.Action.TWO_FACTOR_ENABLED, user=ana).exists()
    assert client.get(reverse("home")).status_code == 200  # this session passed the code already

    browser = Client()
    signed = log_in(browser)
    assert signed.status_code == 302
    # Password alone: every page sends to the code's page, the admin too.
    for name in ("home", "property-list", "profile", "members"):
        response = browser.get(reverse(name))
        assert response.status_code == 302 and response["Location"].startswith(reverse("two-factor-verify")), name
    assert browser.get("/admin/")["Location"].startswith(reverse("two-factor-verify"))
    wrong = browser.post(reverse("two-factor-verify"), {"code": "000000"})
    assert "did not match" in wrong.content.decode()
    # The code of the next 30-second step: the one enrolment used cannot be used twice.
    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        ok = browser.post(reverse("two-factor-verify") + "?next=/properties/", {"code": code_for(key)})
    assert ok["Location"] == "/properties/"
    assert browser.get(reverse("home")).status_code == 200


def test_wrong_codes_slow_down_the_next_tries(client, ana):
    client.force_login(ana)
    key, _codes = enrol(client)
    browser = Client()
    log_in(browser)
    browser.post(reverse("two-factor-verify"), {"code": "000000"})
    # Straight after a wrong code, even the right one waits (django-otp's throttling).
    with time_machine.travel(timezone.now() + timedelta(seconds=31), tick=False):
        page = browser.post(reverse("two-factor-verify"), {"code": "111111"}).content.decode()
        right = browser.post(reverse("two-factor-verify"), {"code": code_for(key)})
    assert "did not match" in page or "Too many wrong codes" in page
    assert right.status_code == 200 and "Too many wrong codes" in right.content.decode()


def test_a_recovery_code_signs_in_once(client, ana):
    client.force_login(ana)
    _key, codes = enrol(client)
    browser = Client()
    log_in(browser)
    response = browser.post(reverse("two-factor-verify"), {"code": codes[0].upper()}, follow=True)
    assert "You signed in with a recovery code; 9 left." in response.content.decode()
    assert Activity.objects.filter(action=Activity.Action.RECOVERY_CODE_USED, user=ana).exists()
    again = Client()
    log_in(again)
    assert "did not match" in again.post(reverse("two-factor-verify"), {"code": codes[0]}).content.decode()


def test_new_recovery_codes_replace_the_old_ones_after_the_password_is_typed_again(client, ana):
    client.force_login(ana)
    _key, old = enrol(client)
    asked = client.get(reverse("recovery-codes")).content.decode()
    assert 'name="password"' in asked and 'id="recovery-codes"' not in asked

    for wrong in ({}, {"password": "nope"}):
        refused = client.post(reverse("recovery-codes"), wrong)
        assert refused.status_code == 400
        assert not re.findall(r"<li>([a-z2-7]{8})</li>", refused.content.decode())
    assert "That is not your password." in refused.content.decode()
    assert set(StaticToken.objects.values_list("token", flat=True)) == set(old)
    assert not Activity.objects.filter(action=Activity.Action.RECOVERY_CODES_RENEWED).exists()

    page = client.post(reverse("recovery-codes"), {"password": PASSWORD}).content.decode()
    new = re.findall(r"<li>([a-z2-7]{8})</li>", page)
    assert len(new) == 10 and not set(new) & set(old)
    assert set(StaticToken.objects.values_list("token", flat=True)) == set(new)
    assert Activity.objects.filter(action=Activity.Action.RECOVERY_CODES_RENEWED).exists()


def test_the_codes_page_shows_codes_only_once(client, ana):
    client.force_login(ana)
    _key, codes = enrol(client)
    again = client.get(reverse("recovery-codes")).content.decode()
    assert not any(code in again for code in codes)
    assert 'name="password"' in again


def test_the_session_key_changes_when_the_second_factor_is_passed(client, ana):
    """A session started with the password only (say, by someone who planted its cookie in this
    browser) is not the one that becomes signed in when the code is typed: its key dies."""
    client.force_login(ana)
    key, _codes = enrol(client)
    browser = Client()
    log_in(browser)
    planted = browser.cookies["sessionid"].value
    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        assert browser.post(reverse("two-factor-verify"), {"code": code_for(key)}).status_code == 302
    assert browser.cookies["sessionid"].value != planted
    assert browser.get(reverse("home")).status_code == 200

    attacker = Client()
    attacker.cookies["sessionid"] = planted
    response = attacker.get(reverse("home"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_setting_up_the_app_also_starts_a_new_session_key(client, ana):
    client.force_login(ana)
    before = client.cookies["sessionid"].value
    enrol(client)
    assert client.cookies["sessionid"].value != before
    assert client.get(reverse("home")).status_code == 200


def test_a_code_used_already_gets_its_own_message_in_every_language(client, ana):
    client.force_login(ana)
    key, _codes = enrol(client)  # signed in with this step's code
    for minutes, language, words in (
        (2, "en", "This code was used already: wait for the next one."),
        (4, "pt", "Este código já foi usado: espere pelo próximo."),
        (6, "es", "Este código ya se ha usado: espere al siguiente."),
    ):
        Membership.objects.filter(user=ana).update(language=language)
        browser = Client()
        log_in(browser)
        with time_machine.travel(timezone.now() + timedelta(minutes=minutes)):
            code = code_for(key)
            assert browser.post(reverse("two-factor-verify"), {"code": code}).status_code == 302
            other = Client()
            log_in(other)
            page = other.post(reverse("two-factor-verify"), {"code": code}).content.decode()
        assert words in page, language
        assert "did not match" not in page


def test_an_app_code_with_digits_only_unicode_calls_digits_is_just_wrong(client, ana):
    client.force_login(ana)
    enrol(client)
    browser = Client()
    log_in(browser)
    page = browser.post(reverse("two-factor-verify"), {"code": "²²²²²²"})
    assert page.status_code == 200 and "did not match" in page.content.decode()


def test_turning_it_off_needs_the_password(client, ana):
    client.force_login(ana)
    enrol(client)
    wrong = client.post(reverse("two-factor-disable"), {"password": "nope"})
    assert "That is not your password." in wrong.content.decode()
    assert TOTPDevice.objects.filter(user=ana).exists()
    client.post(reverse("two-factor-disable"), {"password": PASSWORD})
    assert not TOTPDevice.objects.filter(user=ana).exists() and not StaticToken.objects.exists()
    assert Activity.objects.filter(action=Activity.Action.TWO_FACTOR_DISABLED, user=ana).exists()
    browser = Client()
    log_in(browser)
    assert browser.get(reverse("home")).status_code == 200


def test_a_session_with_the_password_only_cannot_add_a_second_app(client, ana):
    client.force_login(ana)
    enrol(client)
    thief = Client()
    log_in(thief)
    response = thief.get(reverse("two-factor-setup"))
    assert response["Location"].startswith(reverse("two-factor-verify"))
    assert TOTPDevice.objects.filter(user=ana).count() == 1


def test_an_account_can_require_two_factor_and_its_members_set_it_up_at_their_next_sign_in(client, ana):
    owner = Membership.objects.get(user=ana)
    colleague = MembershipFactory(account=owner.account, user__username="rui", role=Membership.Role.MANAGER)
    client.force_login(ana)
    refused = client.post(reverse("account-settings-save"), {"require_two_factor": "on"})
    assert "Set up two-factor sign-in for yourself first" in refused.content.decode()
    enrol(client)
    client.post(reverse("account-settings-save"), {"require_two_factor": "on"})
    owner.account.refresh_from_db()
    assert owner.account.require_two_factor
    assert Activity.objects.filter(action=Activity.Action.TWO_FACTOR_REQUIRED, user=ana).exists()

    rui = Client()
    log_in(rui, "rui")
    response = rui.get(reverse("property-list"))
    assert response["Location"] == reverse("two-factor-setup") + "?next=%2Fproperties%2F"
    page = rui.get(response["Location"]).content.decode()
    assert "Sol Rentals asks every member to sign in with a code" in page
    key = key_on_the_page(page)
    done = rui.post(reverse("two-factor-setup") + "?next=/properties/", {"code": code_for(key)})
    assert done.status_code == 302
    assert rui.get(reverse("property-list")).status_code == 200
    # Required: it cannot be turned off while a member.
    rui.post(reverse("two-factor-disable"), {"password": PASSWORD})
    assert TOTPDevice.objects.filter(user=colleague.user, confirmed=True).exists()
    assert "Sol Rentals requires it" in rui.get(reverse("profile")).content.decode()


def test_the_members_page_shows_who_has_two_factor(client, ana):
    client.force_login(ana)
    enrol(client)
    MembershipFactory(account=Membership.objects.get(user=ana).account, user__username="rui")
    page = client.get(reverse("members")).content.decode()
    rows = dict(re.findall(r'<tr id="member-\d+">\s*<td[^>]*>(\w+).*?badge-(\w+)', page, re.DOTALL))
    assert rows == {"ana": "active", "rui": "switched_off"}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_eight_guesses_at_the_same_moment_count_eight_and_only_one_is_checked(postgres, ana):
    """Each try is counted under the device's lock before its code is looked at: parallel
    guesses cannot slip through while the counter still says zero."""
    device = TOTPDevice.objects.create(user=ana, name="app", confirmed=True)
    browsers = []
    for _ in range(8):
        browser = Client()
        log_in(browser)
        browsers.append(browser)
    barrier = threading.Barrier(len(browsers))
    pages: list[str] = []

    def guess(browser: Client, code: str) -> None:
        barrier.wait()
        try:
            pages.append(browser.post(reverse("two-factor-verify"), {"code": code}).content.decode())
        finally:
            db_connection.close()

    wrong = [f"{n:06d}" for n in range(8) if f"{n:06d}" != code_for(device)]
    threads = [threading.Thread(target=guess, args=(browser, code)) for browser, code in zip(browsers, wrong, strict=False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    device.refresh_from_db()
    assert device.throttling_failure_count == len(threads)
    assert sum("did not match" in page for page in pages) == 1
    assert sum("Too many wrong codes" in page for page in pages) == len(threads) - 1
