"""Every page a signed-in owner can open, for the browser tests of widths and accessibility.

The pages are found from the project's routes, not listed by hand: each named route is given
the ids of the demo's objects and fetched with Django's test client as the demo's owner; what
answers a whole HTML page is a page to check. A route that takes a parameter nobody here knows
fails the test, so that a new page cannot go unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
PHONE_360 = {"width": 360, "height": 780}
# Fragments that htmx loads into pages (checked as part of those pages), never pages themselves;
# and routes whose GET would change something or leave the session.
NOT_PAGES = {
    "connection-row": "a row of the property page, polled by htmx",
    "connection-sync-state": "a poll of the connection page",
    "overview-status": "the overview's status, polled by htmx",
    "connection-fix-step": "a step of the checklist, loaded by htmx",
    "logout": "ends the session",
    "account-switch": "changes the current account (POST)",
    "export-feed": "a calendar for portals (text/calendar)",
    "demo-portal-feed": "a demo portal's calendar (text/calendar)",
    "invitation-accept": "an invitation's link, whose unknown token is a 404 (tests/browser/test_members_browser.py)",
}
# Pages seen signed out, with parameters that make them render (an invalid link says so).
SIGNED_OUT = {
    "login": {},
    "password_reset": {},
    "password_reset_done": {},
    "password_reset_complete": {},
    "password_reset_confirm": {"uidb64": "MQ", "token": "not-a-token"},
    "first-password": {"uidb64": "MQ", "token": "not-a-token"},
}


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    signed_in: bool = True

    @property
    def wait_for_steps(self) -> bool:
        return self.name == "connection-fix"


def _routes(resolvers=None):
    for entry in resolvers if resolvers is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            if entry.app_name == "admin":
                continue
            yield from _routes(entry.url_patterns)
        elif isinstance(entry, URLPattern) and entry.name:
            yield entry.name, entry.pattern


def demo_objects(demo) -> dict:
    """An object of each kind a route names, in the demo's account (made here when the demo has none)."""
    from django.contrib.auth import get_user_model

    from syncs.models import (
        Block,
        BulkAction,
        Connection,
        Invitation,
        Membership,
        SyncRun,
        Undo,
        Webhook,
        WebhookDelivery,
    )
    from syncs.onboarding import onboarding_preview
    from syncs.webhooks import webhook_create

    owner = get_user_model().objects.get(username="demo")
    account = Membership.objects.get(user=owner).account
    prop = demo.ids["Casa do Rio"]
    block = Block.objects.create(
        property_id=prop, source=None, kind="blocked", summary="Painters",
        start_date=timezone.localdate() + timedelta(days=60), end_date=timezone.localdate() + timedelta(days=62),
    )
    colleague = get_user_model().objects.create_user("ana", email="ana@example.com", password="a-long-password-1")
    membership = Membership.objects.create(user=colleague, account=account, role=Membership.Role.MANAGER)
    invitation = Invitation.objects.create(
        account=account, email="invited@example.com", token_hash="x" * 64, invited_by=owner,
        expires_at=timezone.now() + timedelta(days=7),
    )
    bulk = BulkAction.objects.create(
        account=account, user=owner, kind=BulkAction.Kind.SYNC_NOW,
        connection_ids=list(Connection.objects.filter(property_id=prop).values_list("pk", flat=True)),
    )
    # Every event, as the form offers them, and deliveries that failed in words: the longest page.
    webhook, _secret = webhook_create(
        user=owner, account=account, url="https://hooks.example.com/services/T0000/B0000/channelmgr-alerts-room",
        events=list(Webhook.Event.values), slack_text=True,
    )
    WebhookDelivery.objects.create(
        webhook=webhook, event=Webhook.Event.REMINDER, status=WebhookDelivery.Status.FAILED,
        log=[{"status": 500}, {"error": "connection refused by hooks.example.com"}],
    )
    upload, _problems = onboarding_preview(
        user=owner, account=account, filename="listings.csv",
        data=b"Casa Nova,Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/4242.ics?s=abc\n"
             b"Casa Nova,Europe/Lisbon,Nowhere,not a link\n",
    )
    undo = Undo.objects.create(account=account, user=owner, kind=Undo.Kind.SWITCH_OFF, versions={})
    return {
        "undo_id": undo.pk,
        "bulk_id": bulk.pk,
        "webhook_id": webhook.pk,
        "upload_id": upload.pk,
        "property_id": prop,
        "connection_id": demo.ids["Apartamento Sol/vrbo"],  # the paused one: the longest pages
        "block_id": block.pk,
        "membership_id": membership.pk,
        "invitation_id": invitation.pk,
        "run_id": SyncRun.objects.filter(connection_id=demo.ids["Casa do Rio/airbnb"]).values_list("pk", flat=True).first(),
        "step": "link",
    }


def owner_pages(demo) -> list[Page]:
    """Every page (a whole HTML page) that the demo's owner can GET, and the signed-out ones."""
    from django.contrib.auth import get_user_model

    kwargs_of = demo_objects(demo)
    client = Client()
    client.force_login(get_user_model().objects.get(username="demo"))
    pages, unknown = [], []
    for name, pattern in _routes():
        # The API answers JSON to scripts; its reference page is checked by test_api_docs_browser.
        if name in NOT_PAGES or name.startswith("api-"):
            continue
        if name in SIGNED_OUT:
            pages.append(Page(name, reverse(name, kwargs=SIGNED_OUT[name]), signed_in=False))
            continue
        wanted = list(pattern.converters)
        missing = [key for key in wanted if key not in kwargs_of]
        if missing:
            unknown.append(f"{name} needs {missing}")
            continue
        path = reverse(name, kwargs={key: kwargs_of[key] for key in wanted})
        response = client.get(path)
        is_page = response.status_code == 200 and response.get("Content-Type", "").startswith("text/html")
        if is_page and b"<html" in response.content[:400]:
            pages.append(Page(name, path))
    assert not unknown, f"routes with parameters this test cannot fill (add them to demo_objects): {unknown}"
    return pages


def axe_serious(page) -> list[str]:
    """axe-core's critical and serious findings on the page as it is now (WCAG 2.x A and AA and
    axe's best practices), one line per finding with the elements concerned."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))  # evaluated by the browser, not by the page's CSP
    results = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"]});
        return result.violations.filter(v => v.impact === "critical" || v.impact === "serious").map(
            v => v.impact + " " + v.id + ": " + v.help + " -> " + v.nodes.slice(0, 5).map(n => n.target.join(" ")).join(" | "));
    }""")
    return list(results)


def page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def words_broken(page, selector: str) -> list[str]:
    """The words inside the elements ``selector`` finds that the page shows broken across two
    lines ("Prop" / "erties"): each word's boxes, measured by the browser, all on one line."""
    return page.evaluate("""(selector) => {
        const broken = [];
        for (const element of document.querySelectorAll(selector)) {
            const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                for (const match of node.textContent.matchAll(/[^\\s\\u002d\\u2010]+/g)) {
                    const range = document.createRange();
                    range.setStart(node, match.index);
                    range.setEnd(node, match.index + match[0].length);
                    const lines = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top)));
                    if (lines.size > 1) broken.push(match[0]);
                }
            }
        }
        return broken;
    }""", selector)
