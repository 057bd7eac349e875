"""The API's reference page (Swagger UI, served from our static files) in a real Chromium, under
the site's CSP: it renders the schema's operations, with no CSP violation, console error or
uncaught exception (the ``page`` fixture fails the test on any)."""

from __future__ import annotations

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (fails with REQUIRE_SERVICES=1), saying why
    expect = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_the_api_reference_page_renders_every_operation_under_the_csp(page, demo, shot):
    page.goto(demo.url("/api/docs/"))
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("channelmgr API")
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/syncs/{id}/sync-now/")).to_be_visible()
    expect(page.locator(".opblock")).to_have_count(23)
    shot(page, "reference")
