"""How long a 5,000-row file takes to check. Run by hand, not a test:

    .venv/bin/python bench/onboarding.py [--properties 1000] [--connections-per-property 5] [--database-url ...]

Builds the account of bench/dashboard.py, then:
1. uploads a file of 5,000 new syncs (3 per new property) through the upload page, and times the
   request (the worker checks a file this big: the request only reads and stores it);
2. runs the worker's check of that file, timed, with the progress it reports;
3. downloads the account's export (every sync) and uploads it back unchanged, and times its
   check ("nothing to change": no row needs the forms).
Before issue 30 the 5,000-row file was checked inside the request.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard import account_arguments, build_account, setup_django


def main() -> None:
    args = account_arguments(__doc__)
    setup_django(args.database_url)
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client
    from django.urls import reverse

    from syncs.models import OnboardingUpload
    from syncs.onboarding import jobs

    jobs._in_background = lambda task, upload_id, attempt: None  # the bench runs the worker's part itself
    user, _prop, _conn = build_account(args.properties, args.connections_per_property, args.double_booked_every)
    client = Client()
    client.force_login(user)
    print(f"{args.properties} properties, {args.properties * args.connections_per_property} syncs")

    lines = [f"New {n // 3},Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/{n}.ics?s=x" for n in range(5000)]
    data = "\n".join(lines).encode()
    started = time.perf_counter()
    client.post(reverse("onboarding"), {"file": SimpleUploadedFile("new.csv", data, "text/csv")})
    request = time.perf_counter() - started
    upload = OnboardingUpload.objects.latest("pk")
    started = time.perf_counter()
    jobs.onboarding_check_file(upload.pk, upload.job_attempt)
    check = time.perf_counter() - started
    upload.refresh_from_db()
    assert upload.stage == "checked" and all(row["action"] == "add" for row in upload.rows), upload.outcome
    print(f"{'5,000 new syncs: the upload request':44} {request:8.2f} s")
    print(f"{'5,000 new syncs: the check, in the worker':44} {check:8.2f} s")

    exported = client.get(reverse("exports-csv")).content
    started = time.perf_counter()
    client.post(reverse("onboarding"), {"file": SimpleUploadedFile("syncs.csv", exported, "text/csv")})
    request = time.perf_counter() - started
    upload = OnboardingUpload.objects.latest("pk")
    started = time.perf_counter()
    jobs.onboarding_check_file(upload.pk, upload.job_attempt)
    check = time.perf_counter() - started
    upload.refresh_from_db()
    assert {row["action"] for row in upload.rows} == {"same"}, upload.outcome
    rows = len(upload.rows)
    print(f"{f'the export ({rows:,} syncs) unchanged: the request':44} {request:8.2f} s")
    print(f"{f'the export ({rows:,} syncs) unchanged: the check':44} {check:8.2f} s")


if __name__ == "__main__":
    main()
