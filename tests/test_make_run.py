"""`make run` on a fresh data folder: the login page, the demo login, an overview that already
shows the demo synced (working syncs, the paused one, its email), the demo properties, and the
scheduled syncs of beat -> broker -> worker, seen over HTTP as a person would."""

from __future__ import annotations

import re

import pytest
import requests

from tests.processes import child_env, start, stop, wait_for

pytestmark = pytest.mark.slow
TILE = re.compile(r'<span class="count[^"]*" data-state="(\w+)"><strong>(\d+)</strong>')


def log_in(base: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=5).raise_for_status()
    response = session.post(
        f"{base}/accounts/login/",
        data={"username": "demo", "password": "demo", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=10,
    )
    response.raise_for_status()
    return session


def test_make_run_serves_the_demo_and_syncs_on_schedule(tmp_path, free_port):
    base = f"http://127.0.0.1:{free_port}"
    log = tmp_path / "make-run.log"
    env = child_env(VAR_DIR=str(tmp_path / "var"), DISPATCH_INTERVAL_SECONDS="5", SITE_URL=base)
    process = start(["make", "run", f"PORT={free_port}"], env, log)
    try:
        login_page = wait_for(
            lambda: requests.get(f"{base}/accounts/login/", timeout=2), timeout=120, what="the login page", log=log
        )
        assert login_page.status_code == 200
        assert "demo / demo" in login_page.text

        # Static files: hashed names, compressed, cached for ever (no revalidation on each page).
        for path in re.findall(r'(?:href|src)="(/static/[^"]+)"', login_page.text):
            assert re.search(r"\.[0-9a-f]{12}\.(css|js)$", path), f"{path} is not named by its hash"
            static = requests.get(base + path, headers={"Accept-Encoding": "gzip"}, timeout=5)
            assert static.status_code == 200, path
            assert "immutable" in static.headers["Cache-Control"] and "max-age=315360000" in static.headers["Cache-Control"]
            assert static.headers.get("Content-Encoding") == "gzip", path

        session = log_in(base)
        home = session.get(f"{base}/", timeout=10)
        assert home.url == f"{base}/"
        assert "Overview" in home.text
        # The very first overview: the demo was imported before web, worker and beat started.
        tiles = {state: int(n) for state, n in TILE.findall(home.text)}
        assert sum(tiles.values()) == 9, tiles
        assert (tiles["working"], tiles["paused"]) == (8, 1), tiles
        assert "Vrbo answered 404: the calendar link no longer exists." in home.text
        assert "All syncs are working" not in home.text
        assert "Subject: Paused: Vrbo sync of Apartamento Sol" in log.read_text(errors="replace")  # console email
        properties = session.get(f"{base}/properties/", timeout=10).text
        for name in ("Casa do Rio", "Apartamento Sol", "Beach Loft Algarve"):
            assert name in properties
        first_property = re.search(r'href="(/properties/\d+/)"', properties).group(1)
        connection_page = re.search(r'href="(/connections/\d+/)"', session.get(base + first_property, timeout=10).text).group(1)
        history = session.get(base + connection_page, timeout=5).text
        assert "Sync history" in history
        assert "Scheduled" in history  # the import made before start-up
        assert "This connection has not synced yet." not in history
        # Sync now goes web -> broker -> worker (or the dispatcher, if the broker missed it).
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', history).group(1)
        session.post(
            base + connection_page + "sync/", data={"csrfmiddlewaretoken": token, "next": connection_page},
            headers={"Referer": base + connection_page}, timeout=10,
        ).raise_for_status()
        wait_for(
            lambda: ">Sync now</td>" in session.get(base + connection_page, timeout=5).text,
            timeout=90, what="a Sync now run in the connection's history", log=log,
        )
    finally:
        stop(process)
