"""A real Chromium driving the demo account on pytest-django's live server.

The browser is the Debian one at /usr/bin/chromium: Playwright never downloads its own here.
Without it (or without the playwright package) the browser tests skip, saying why; with
REQUIRE_SERVICES=1 (CI) they fail instead, like a missing PostgreSQL or Redis.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.apps import apps
from django.core import serializers
from django.core.management import call_command
from django.db import connection, transaction

from syncs.engine.fetch import close_kept_connections
from tests.conftest import require

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "browser"
DESKTOP = {"width": 1280, "height": 900}

# Reports every Content-Security-Policy violation of a page to Python (init scripts run before
# the page's own scripts, in every document, and CSP does not apply to them).
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolation(e.violatedDirective + " blocked " + (e.blockedURI || "inline") +
                        " at " + e.sourceFile + ":" + e.lineNumber + ":" + e.columnNumber +
                        (e.sample ? " (" + e.sample + ")" : ""));
});
"""


def _chromium_problem() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module's tests; each test gets its own context.

    Playwright's sync API marks its event loop as running in the calling thread between calls
    (playwright/_impl/_greenlets.py, wait_for_future). Django takes that for async code, twice:
    - its async-safety check refuses the test thread's ORM calls (the seeding, pytest-django's
      flush). Nothing here is async: DJANGO_ALLOW_ASYNC_UNSAFE lifts the check while Playwright
      runs (the live server's threads, where no loop is marked, keep it);
    - its connection handler (a thread-critical asgiref Local) hands out other connection
      objects while a loop runs, without the test database's serialized contents: the portals
      of the data migration would not come back after the first flush. So the test thread keeps
      the very connections it had before Playwright started.
    The scope is the module, not the session: a session-wide Playwright would leave its loop
    marked as running, and these two changes in force, for every later test of the suite.
    """
    require(_chromium_problem())
    from django.db import connections
    from playwright.sync_api import sync_playwright

    own = {alias: connections[alias] for alias in connections}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            for alias, connection in own.items():  # now seen as "async": give back the same ones
                setattr(connections._connections, alias, connection)
            try:
                yield chromium
            finally:
                chromium.close()


@dataclass
class Demo:
    """The seeded demo account, served by the live server."""

    base_url: str
    ids: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture(scope="session")
def seeded_demo() -> dict:
    """What the process's first browser test changed in the database by seeding the demo and
    importing its feeds (``Seeded``), and the demo's ids: its later browser tests, of any module,
    make the same changes again instead of seeding. Each starts from the same database (the
    data migrations' rows, ``serialized_rollback``) and the same live server (one per process),
    so the same changes make the same demo."""
    return {}


@pytest.fixture
def demo(live_server, settings, monkeypatch, seeded_demo) -> Demo:
    """`make run`'s demo on the live server: seeded, and its feeds imported once.

    The process's first browser test seeds the demo and imports its feeds through the live
    server, as `make run` does; each later one gets the rows this made, as they were (every test
    still ends with the database emptied: ``django_db(transaction=True)``).

    The demo's import URLs point at the live server's own /demo/portal/ feeds. The server binds
    IPv4 (127.0.0.1); "localhost" may resolve to ::1 first and the fetcher pins what it resolves,
    so every URL here uses 127.0.0.1 (which ALLOWED_HOSTS lists).
    """
    from celery.signals import task_postrun

    from channelmgr.celery import app
    from syncs.models import Connection, Property

    base_url = re.sub(r"^http://localhost:", "http://127.0.0.1:", live_server.url)
    settings.DEMO_MODE = True
    settings.FETCH_ALLOW_LOOPBACK = True
    settings.DEMO_PORTAL_BASE_URL = base_url
    # "Sync now" publishes its task from a background thread; with no worker in these tests the
    # task runs right there, in that thread (the web request itself still returns at once).
    monkeypatch.setitem(app.conf, "task_always_eager", True)

    def close_thread_connections(**_):
        # A Celery worker closes its database connections after a task (Celery's Django fixup);
        # the publishing thread does the same, so that no connection outlives the test.
        if threading.current_thread() is not threading.main_thread():
            from django.db import connections

            connections.close_all()

    task_postrun.connect(close_thread_connections, weak=False)
    try:
        if seeded_demo:
            seeded_demo["seeded"].apply()
        else:
            before = _rows()
            call_command("seed_demo", stdout=io.StringIO())
            call_command("sync_connections", "--due", stdout=io.StringIO())
            seeded_demo["seeded"] = Seeded.between(before, _rows())
            seeded_demo["ids"] = {prop.name: prop.pk for prop in Property.objects.all()} | {
                f"{c.property.name}/{c.portal.slug}": c.pk
                for c in Connection.objects.select_related("property", "portal")
            }
        yield Demo(base_url=base_url, ids=dict(seeded_demo["ids"]))
    finally:
        task_postrun.disconnect(close_thread_connections)
        # The demo's import fetched from the live server on kept-alive connections: without
        # this, a server thread waits on each until the interpreter exits, and then raises.
        close_kept_connections()


def _rows() -> dict[tuple[str, object], dict]:
    """Every row of the database (Django's serialized form), by model and primary key."""
    return {(row["model"], row["pk"]): row for row in json.loads(connection.creation.serialize_db_to_string())}


@dataclass
class Seeded:
    """What seeding the demo changed in a database that held the data migrations' rows."""

    added: list[dict]
    changed: list[dict]
    removed: list[tuple[str, object]]

    @classmethod
    def between(cls, before: dict, after: dict) -> Seeded:
        return cls(
            added=[row for key, row in after.items() if key not in before],
            changed=[row for key, row in after.items() if key in before and before[key] != row],
            removed=[key for key in before if key not in after],
        )

    def apply(self) -> None:
        """Make the same changes again, the rows' values as they were (saved raw, as loaddata
        does; foreign keys are checked at the commit)."""
        with transaction.atomic():
            for obj in serializers.deserialize("json", json.dumps(self.added)):
                obj.save(force_insert=True)
            for obj in serializers.deserialize("json", json.dumps(self.changed)):
                obj.save()
            for label, pk in self.removed:
                apps.get_model(label)._base_manager.filter(pk=pk).delete()


@dataclass
class Problems:
    """What went wrong in the browser: console errors, uncaught exceptions, CSP violations,
    answers of 500 and above."""

    items: list[str] = field(default_factory=list)

    def add(self, kind: str, page_url: str, text: str) -> None:
        self.items.append(f"{kind} on {page_url}: {text}")


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
def new_page(browser, demo, problems):
    """Open a page in a new browser context (viewport and options as given); every page is
    watched, and the test fails on any problem the browser reported (see Problems)."""
    contexts = []

    def open_page(*, viewport: dict | None = None, **options):
        # English pages whatever the machine's locale: the stories read the English words.
        context = browser.new_context(
            base_url=demo.base_url, viewport=viewport or DESKTOP, locale="en-US", accept_downloads=True, **options
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        context.expose_binding(
            "__cspViolation", lambda source, text: problems.add("CSP violation", source["page"].url, text)
        )
        context.add_init_script(_CSP_LISTENER)
        page = context.new_page()

        def on_console(message) -> None:
            if message.type == "error":
                problems.add("console error", page.url, message.text)

        def on_response(response) -> None:
            if response.status >= 500:
                problems.add("HTTP", page.url, f"{response.status} {response.url}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.add("uncaught exception", page.url, str(error)))
        page.on("response", on_response)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not problems.items, "The browser reported problems:\n" + "\n".join(problems.items)


@pytest.fixture
def page(new_page):
    return new_page()


@pytest.fixture
def shot(request):
    """shot(page, "step"): a full-page screenshot in var/test-artifacts/browser/<test>-<step>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^\w.-]+", "_", request.node.name)
    for old in ARTIFACTS.glob(f"{test}-*.png"):
        old.unlink()

    def take(page, step: str) -> Path:
        path = ARTIFACTS / f"{test}-{step}.png"
        # caret="initial": Playwright's default hides the caret by styling every input, which
        # leaves style="" on them; htmx's settling then copies that attribute with setAttribute,
        # and our CSP (style-src 'self') rightly refuses it: a violation the test itself caused.
        page.screenshot(path=str(path), full_page=True, caret="initial")
        return path

    return take

