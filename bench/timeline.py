"""The timeline's speed for a big account. Run by hand, not a test:

    .venv/bin/python bench/timeline.py [--properties 1000] [--connections-per-property 5] [--runs 20] [--database-url ...]

Builds the account of bench/dashboard.py (N properties, M syncs each, blocks, export reads),
then measures the timeline's first and a later page (time to the whole response, which is the
first byte: Django renders before it sends) and its number of queries, against the smallest
logged-in page; the first page and the state filter again through gunicorn started as the
Procfile starts it (DEBUG off), to the first byte; and the preview of a 1,000-row onboarding
file. Targets: under 200 ms and the same number of queries on every page; the file under 5 s.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard import (
    account_arguments,
    build_account,
    first_bytes,
    measure,
    session_of,
    setup_django,
    start_as_the_web_process,
)


def main() -> None:
    args = account_arguments(__doc__)
    setup_django(args.database_url)
    from django.test import Client
    from django.urls import reverse

    user, _prop, _conn = build_account(args.properties, args.connections_per_property, args.double_booked_every)
    start_as_the_web_process()
    client = Client()
    client.force_login(user)
    baseline = measure(client, reverse("activity"), args.runs)
    timeline = reverse("timeline")
    pages = {
        "timeline, page 1": timeline,
        "timeline, page 20 (htmx)": timeline + "?page=20",
        "timeline, state=paused": timeline + "?state=paused",
        "timeline, state=attention": timeline + "?state=attention",  # every switched-on sync read
        "timeline, portal=vrbo, 90 nights": timeline + "?portal=vrbo&nights=90",
    }
    print(f"{args.properties} properties, {args.properties * args.connections_per_property} syncs")
    print(f"{'page':36} {'median ms':>10} {'p95 ms':>8} {'queries':>8} {'x baseline':>11}")
    print(f"{'baseline: empty activity page':36} {baseline['median_ms']:10.1f} {baseline['p95_ms']:8.1f} {baseline['queries']:8d}")
    for name, url in pages.items():
        result = measure(client, url, args.runs)
        verdict = "PASS" if result["median_ms"] < 200 else "MISS (target <200 ms)"
        print(f"{name:36} {result['median_ms']:10.1f} {result['p95_ms']:8.1f} {result['queries']:8d} "
              f"{result['median_ms'] / baseline['median_ms']:11.2f}  {verdict}")

    session = session_of(user)
    served = first_bytes({"baseline": (reverse("activity"), session), "timeline, page 1": (timeline, session),
                          "timeline, state=paused": (timeline + "?state=paused", session),
                          "timeline, state=attention": (timeline + "?state=attention", session)}, args.runs)
    print("through gunicorn (Procfile, DEBUG off), first byte: median ms, x baseline")
    for name, ms in served.items():
        verdict = "" if name == "baseline" else f"  {'PASS' if ms < 200 else 'MISS (target <200 ms)'}"
        print(f"{name:36} {ms:10.1f} {ms / served['baseline']:11.2f}{verdict}")

    from syncs.models import Account
    from syncs.onboarding import jobs

    # A file this big is checked by the worker: the upload stores it, the check is timed here.
    jobs._in_background = lambda task, upload_id, attempt: None
    lines = [f"New {n // 3},Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/{n}.ics?s=x" for n in range(1000)]
    started = time.perf_counter()
    upload, _problems = jobs.onboarding_preview(
        user=user, account=Account.of_user(user), filename="bench.csv", data="\n".join(lines).encode()
    )
    jobs.onboarding_check_file(upload.pk, upload.job_attempt)
    elapsed = time.perf_counter() - started
    print(f"{'onboarding preview, 1,000 rows':36} {elapsed * 1000:10.1f}  {'PASS' if elapsed < 5 else 'MISS (target <5 s)'}")


if __name__ == "__main__":
    main()
