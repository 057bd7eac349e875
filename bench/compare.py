"""Two versions of the big account's pages, side by side in one run. Run by hand, not a test:

    .venv/bin/python bench/compare.py --against <git revision> [--database-url ...] [--rounds 6]

Builds the account of dashboard.py (--properties, 1,000 by default, 5 connections each) once, checks the
other revision out in a temporary git worktree, and measures the same pages with each version
in turn, each round in a fresh process that loads the application as gunicorn's workers do
(channelmgr/wsgi.py) and alternating which goes first, so that both see the same machine. Prints
the median and the fastest time of each page for each version, and their ratio. The two
versions must share the database's schema (the same migrations).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = (
    "/activity/", "/", "/overview/status/", "/timeline/", "/timeline/?state=paused", "/timeline/?state=attention",
    "/timeline/?portal=vrbo&nights=90", "/properties/", "/properties/?sort=health", "/me/", "/members/",
)


def child(root: str, urls: list[str], runs: int) -> None:
    """In a fresh process: the version at ``root``, its pages timed through Django's test client."""
    sys.path.insert(0, root)
    # The project is installed in editable mode: its finder would bring this checkout's code.
    sys.meta_path[:] = [finder for finder in sys.meta_path if "editable" not in repr(finder).lower()]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "channelmgr.settings")
    import channelmgr.wsgi  # noqa: F401 (as gunicorn's workers load it)
    import syncs

    assert syncs.__file__.startswith(root), f"measuring {syncs.__file__}, not {root}"
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    times = {}
    for url in urls:
        for _ in range(2):
            client.get(url)  # warm caches and the template loader
        times[url] = []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get(url)
            times[url].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
    print(json.dumps(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", help="the git revision to compare this checkout with (required)")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--properties", type=int, default=1000)
    parser.add_argument("--double-booked-every", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=10, help="requests per page per round")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--urls", default=",".join(PAGES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.urls.split(","), args.runs)
        return
    if not args.against:
        parser.error("--against is required")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from dashboard import build_account, setup_django

    setup_django(args.database_url)
    build_account(args.properties, 5, args.double_booked_every)
    env = dict(os.environ, ALLOWED_HOSTS="testserver")
    other = tempfile.mkdtemp(prefix="bench-compare-")
    subprocess.run(["git", "worktree", "add", "--detach", other, args.against], cwd=ROOT, check=True, capture_output=True)
    versions = {"this checkout": str(ROOT), args.against: other}
    times: dict[str, dict[str, list[float]]] = {name: {} for name in versions}
    try:
        for round_ in range(args.rounds):
            order = list(versions.items()) if round_ % 2 == 0 else list(versions.items())[::-1]
            for name, root in order:
                done = subprocess.run(
                    [sys.executable, __file__, "--child", root, "--runs", str(args.runs), "--urls", args.urls],
                    cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True, check=False,
                )
                if done.returncode:
                    sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
                for url, measured in json.loads(done.stdout.strip().splitlines()[-1]).items():
                    times[name].setdefault(url, []).extend(measured)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", other], cwd=ROOT, check=False, capture_output=True)
    this, that = versions
    print(f"{args.rounds} rounds x {args.runs} requests a page; medians (fastest) in ms")
    print(f"{'page':26} {this:>22} {that:>22} {'ratio':>7}")
    for url in args.urls.split(","):
        mine, theirs = times[this][url], times[that][url]
        print(f"{url:26} {statistics.median(mine):11.1f} ({min(mine):6.1f}) {statistics.median(theirs):11.1f} "
              f"({min(theirs):6.1f}) {statistics.median(mine) / statistics.median(theirs):7.2f}")


if __name__ == "__main__":
    main()
