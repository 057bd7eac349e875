"""A team in real browsers: the first owner's link, invitations accepted in fresh browsers, what
a viewer sees and may not do, a removed member signed out, a password reset through the email,
and two-factor sign-in with a code computed here as an authenticator app computes it.

Each person has their own browser context (cookies and all), as on their own computer.
"""

from __future__ import annotations

import io
import re
import time
from base64 import b32decode

import pytest
from django.core.management import call_command

from tests.browser.signing_in import log_in, submit_login

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (fails with REQUIRE_SERVICES=1), saying why
    expect = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

LINK = re.compile(r"https?://\S+")


@pytest.fixture
def site(demo, settings, mailoutbox):
    """The demo on the live server, with emails in the outbox and links to the live server."""
    settings.SITE_URL = demo.base_url
    return demo



def path_of(link: str, demo) -> str:
    return link.removeprefix(demo.base_url)


def invite_and_join(owner_page, new_page, mailoutbox, demo, *, email: str, role: str, username: str):
    """The owner invites from the Members page; the person opens the emailed link in a fresh
    browser and chooses a username and a password. Returns the person's page, signed in."""
    owner_page.goto("/")
    owner_page.get_by_role("link", name="Members").click()
    invite = owner_page.locator("#invite")
    invite.get_by_label("Email", exact=True).fill(email)
    invite.get_by_label("Role", exact=True).select_option(role)
    sent = len(mailoutbox)
    invite.get_by_role("button", name="Send the invitation").click()
    expect(owner_page.locator("#toasts")).to_contain_text(f"Invitation sent to {email}")
    expect(owner_page.locator("#invitations")).to_contain_text(email)
    assert len(mailoutbox) == sent + 1
    link = next(url for url in LINK.findall(mailoutbox[-1].body) if "/invitations/" in url)

    page = new_page()
    page.goto(path_of(link, demo))
    expect(page.get_by_role("heading", level=1)).to_have_text("Join Demo Rentals")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill("sea and sun 2027")
    page.get_by_label("Password confirmation").fill("sea and sun 2027")
    page.get_by_role("button", name="Join").click()
    expect(page).to_have_url(demo.url("/"))
    expect(page.locator("#toasts")).to_contain_text("Welcome to Demo Rentals.")
    expect(page.locator("#current-account")).to_have_text("Demo Rentals")
    return page


# --------------------------------------------------------------------------- the first run


def test_the_first_run_link_leads_to_a_working_owner_login(new_page, site, shot):
    out = io.StringIO()
    call_command("create_account", "Sol Rentals", "--owner-email", "olga@example.com", stdout=out)
    link = next(url for url in LINK.findall(out.getvalue()) if "/accounts/welcome/" in url)

    page = new_page()
    page.goto(path_of(link, site))
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome")
    expect(page.locator("main")).to_contain_text("You own Sol Rentals")
    shot(page, "1-set-password")
    page.get_by_label("New password", exact=True).fill("sea and sun 2027")
    page.get_by_label("New password confirmation").fill("sea and sun 2027")
    page.get_by_role("button", name="Set my password").click()
    expect(page.locator("#toasts")).to_contain_text("Your password is set. Log in with it now.")

    log_in(page, "olga@example.com", "sea and sun 2027")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("#current-account")).to_have_text("Sol Rentals")
    expect(page.get_by_role("link", name="Members")).to_be_visible()  # an owner
    shot(page, "2-owner-in")

    # The link worked once.
    page.goto(path_of(link, site))
    expect(page.get_by_role("heading", level=1)).to_have_text("This link does not work any more")


# --------------------------------------------------------------------------- invitations and roles


def test_an_owner_invites_a_manager_and_a_viewer_who_each_join_in_their_own_browser(new_page, site, mailoutbox, shot):
    owner = new_page()
    log_in(owner)
    manager = invite_and_join(owner, new_page, mailoutbox, site, email="rui@example.com", role="manager", username="rui")
    viewer = invite_and_join(owner, new_page, mailoutbox, site, email="vera@example.com", role="viewer", username="vera")

    owner.goto("/members/")
    team = owner.locator("#team")
    for name, role in (("demo", "owner"), ("rui", "manager"), ("vera", "viewer")):
        expect(team.get_by_label(f"Role of {name}")).to_have_value(role)
    expect(owner.locator("#invitations")).to_contain_text("No invitation is waiting.")
    shot(owner, "1-members")

    # The manager works on syncs, not on members or settings.
    manager.goto(f"/properties/{site.ids['Casa do Rio']}/")
    expect(manager.locator(f"#connection-{site.ids['Casa do Rio/airbnb']}").get_by_role("button", name="Sync now")).to_be_visible()
    expect(manager.get_by_role("link", name="Members")).to_have_count(0)
    shot(manager, "2-manager")
    # The viewer sees the states, without a button.
    viewer.goto(f"/properties/{site.ids['Casa do Rio']}/")
    expect(viewer.locator(f"#connection-{site.ids['Casa do Rio/airbnb']}")).to_contain_text("Working")
    expect(viewer.get_by_role("button", name="Sync now")).to_have_count(0)
    shot(viewer, "3-viewer")

    owner.goto("/activity/")
    expect(owner.locator("main")).to_contain_text("joined the account")
    expect(owner.locator("main")).to_contain_text("vera (Viewer)")


def test_a_viewer_sees_states_and_calendars_but_every_change_is_refused(new_page, site, mailoutbox, shot):
    from syncs.models import Block, Connection, ExportToken, Property

    owner = new_page()
    log_in(owner)
    viewer = invite_and_join(owner, new_page, mailoutbox, site, email="vera@example.com", role="viewer", username="vera")
    prop_id, connection_id = site.ids["Casa do Rio"], site.ids["Casa do Rio/airbnb"]
    manual = Block.objects.create(property_id=prop_id, start_date="2031-01-01", end_date="2031-01-03")
    secrets = list(Connection.objects.values_list("import_url", flat=True))

    # What the viewer sees: the overview, the properties, a property, a sync, the history.
    html = []
    for path, heading in (
        ("/", "Overview"), ("/properties/", "Properties"), (f"/properties/{prop_id}/", "Casa do Rio"),
        (f"/connections/{connection_id}/", "Airbnb"), ("/activity/", "Activity"), ("/me/", "Your sign-in"),
    ):
        viewer.goto(path)
        expect(viewer.get_by_role("heading", level=1)).to_contain_text(heading)
        html.append(viewer.content())
    viewer.goto(f"/properties/{prop_id}/")
    expect(viewer.locator("#calendar .day:not(.out)").first).to_be_visible()
    shot(viewer, "1-property")
    viewer.goto(f"/connections/{connection_id}/")
    expect(viewer.locator("#import-url")).to_contain_text("…")  # masked, and no way to reveal it
    expect(viewer.get_by_role("button", name="show")).to_have_count(0)
    shot(viewer, "2-connection")
    page_html = "".join(html)
    assert [s for s in secrets if s in page_html] == []
    assert "/ical/" not in page_html and "export.ics" not in page_html

    # Every change, sent by hand with the viewer's own session and CSRF token: 403.
    before = (
        list(Connection.objects.order_by("pk").values()), list(Block.objects.order_by("pk").values()),
        list(ExportToken.objects.order_by("pk").values()), list(Property.objects.order_by("pk").values()),
    )
    csrf = next(c["value"] for c in viewer.context.cookies() if c["name"] == "csrftoken")
    api = viewer.context.request
    changes = [
        ("post", f"/connections/{connection_id}/switch/", {"enabled": "0"}),
        ("post", f"/connections/{connection_id}/sync/", {}),
        ("get", f"/connections/{connection_id}/edit/", None),
        ("post", f"/connections/{connection_id}/edit/", {"import_url": "https://evil.example/x.ics"}),
        ("get", f"/properties/{prop_id}/edit/", None),
        ("post", f"/properties/{prop_id}/edit/", {"name": "Mine", "timezone": "UTC"}),
        ("post", f"/properties/{prop_id}/blocks/", {"start": "2031-02-01", "end": "2031-02-03", "kind": "blocked"}),
        ("post", f"/blocks/{manual.pk}/remove/", {}),
        ("get", f"/connections/{connection_id}/fix/", None),
        ("post", f"/connections/{connection_id}/fix/resync/", {"action": "run"}),
        ("post", f"/connections/{connection_id}/export/rotate/", {}),
        ("get", f"/connections/{connection_id}/export.ics", None),
        ("get", f"/properties/{prop_id}/export.ics", None),
        ("post", f"/connections/{connection_id}/accept-held/", {}),
        ("post", "/members/invite/", {"email": "x@example.com", "role": "owner", "language": "en"}),
        ("get", "/settings/", None),
    ]
    for method, path, form in changes:
        if method == "get":
            response = api.get(site.url(path))
        else:
            response = api.post(site.url(path), form=form, headers={"X-CSRFToken": csrf, "Referer": site.url("/")})
        assert response.status == 403, f"{method.upper()} {path} answered {response.status}"
    assert "it lets you see this account, not change it" in response.text()
    after = (
        list(Connection.objects.order_by("pk").values()), list(Block.objects.order_by("pk").values()),
        list(ExportToken.objects.order_by("pk").values()), list(Property.objects.order_by("pk").values()),
    )
    assert after == before


def test_a_removed_members_open_session_is_signed_out(new_page, site, mailoutbox, shot):
    owner = new_page()
    log_in(owner)
    rui = invite_and_join(owner, new_page, mailoutbox, site, email="rui@example.com", role="manager", username="rui")
    rui.goto("/properties/")
    expect(rui.get_by_role("heading", level=1)).to_contain_text("Properties")

    owner.goto("/members/")
    row = owner.locator("#team tr", has=owner.get_by_label("Role of rui"))
    row.get_by_text("Remove…").click()
    row.get_by_role("button", name="Remove rui").click()
    expect(owner.locator("#toasts")).to_contain_text("rui was removed from Demo Rentals and signed out of it.")
    expect(owner.locator("#team")).not_to_contain_text("rui")
    shot(owner, "1-removed")

    rui.reload()
    expect(rui).to_have_url(site.url("/accounts/login/"))
    expect(rui.locator("#toasts")).to_contain_text("You are no longer a member of that account, so you were signed out.")
    shot(rui, "2-signed-out")
    rui.goto("/properties/")
    expect(rui).to_have_url(re.compile(r"/accounts/login/\?next=/properties/$"))


# --------------------------------------------------------------------------- passwords


def test_a_forgotten_password_is_reset_through_the_email_in_the_outbox(new_page, site, mailoutbox, shot):
    page = new_page()
    page.goto("/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("demo@example.com")
    shot(page, "1-ask")
    page.get_by_role("button", name="Send me the link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")

    (email,) = mailoutbox
    link = next(url for url in LINK.findall(email.body) if "/accounts/reset/" in url)
    page.goto(path_of(link, site))
    expect(page.get_by_role("heading", level=1)).to_have_text("Choose a new password")
    page.get_by_label("New password", exact=True).fill("sea and sun 2027")
    page.get_by_label("New password confirmation").fill("sea and sun 2027")
    page.get_by_role("button", name="Save the new password").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Password changed")
    shot(page, "2-changed")

    submit_login(page, "demo", "demo")
    expect(page.get_by_role("alert")).to_contain_text("Please enter a correct username and password.")
    log_in(page, "demo", "sea and sun 2027")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


# --------------------------------------------------------------------------- two-factor sign-in


def app_code(key: bytes, *, later: int = 0) -> str:
    """What an authenticator app shows (RFC 6238: HMAC-SHA1 of the 30-second step, 6 digits)."""
    from django_otp.oath import TOTP

    totp = TOTP(key, step=30, t0=0, digits=6)
    totp.time = time.time() + later
    return f"{totp.token():06d}"


def test_two_factor_enrolment_and_sign_in_with_a_code_computed_here(new_page, site, shot):
    page = new_page()
    log_in(page)
    page.get_by_role("link", name="demo", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your sign-in")
    page.get_by_role("button", name="Set up two-factor sign-in").click()
    expect(page.get_by_role("img", name="QR code to scan with the authenticator app")).to_be_visible()
    key = b32decode(page.locator("#totp-secret").inner_text().replace(" ", ""))
    shot(page, "1-scan")
    page.get_by_label("Code").fill(app_code(key))
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your recovery codes")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    shot(page, "2-recovery-codes")
    page.get_by_role("button", name="I saved them").click()
    expect(page.locator("#two-factor")).to_contain_text("On")

    page.get_by_role("button", name="Log out").click()
    log_in(page)
    expect(page).to_have_url(re.compile(r"/accounts/two-factor/"))
    expect(page.get_by_role("link", name="Properties")).to_have_count(0)  # not signed in yet
    page.goto("/properties/")  # nothing opens with the password alone
    expect(page).to_have_url(re.compile(r"/accounts/two-factor/\?next=%2Fproperties%2F$"))
    # The next step's code: the one the set-up used cannot be used again.
    page.get_by_label("Code").fill(app_code(key, later=30))
    shot(page, "3-code")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(site.url("/properties/"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Properties")
