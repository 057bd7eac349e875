"""Signing in through the login form, as a person would, for the browser tests."""

from __future__ import annotations

import re

from playwright.sync_api import expect


def submit_login(page, username: str, password: str) -> None:
    """Fill the login form and send it, in whatever language the page is in."""
    page.goto("/accounts/login/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(password)
    page.locator("main form [type=submit]").click()


def log_in(page, username: str = "demo", password: str = "demo") -> None:
    """Sign in; returns once the browser has left the form, on the page after it, loaded."""
    submit_login(page, username, password)
    expect(page).not_to_have_url(re.compile(r"/accounts/login/"))
    page.wait_for_load_state()
