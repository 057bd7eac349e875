"""A big file is checked and saved by the worker, with progress; the page always ends with the
outcome, also when no worker ever takes the job or the worker stops halfway."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone
from django_htmx.http import HttpResponseStopPolling

from channelmgr.celery import app
from syncs.models import Activity, Connection, Membership, OnboardingUpload, Property
from syncs.onboarding import jobs
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(client):
    membership = MembershipFactory(role=Membership.Role.MANAGER)
    client.force_login(membership.user)
    return membership


@pytest.fixture
def small_chunks(monkeypatch):
    """Files of more than 4 rows go to the worker, checked 3 rows at a time."""
    monkeypatch.setattr(jobs, "INLINE_ROWS", 4)
    monkeypatch.setattr(jobs, "CHUNK_ROWS", 3)


@pytest.fixture
def queued(monkeypatch):
    """What was handed to the worker: (task name, upload id, attempt)."""
    handed: list[tuple[str, int, int]] = []
    monkeypatch.setattr(jobs, "_in_background", lambda task, upload_id, attempt: handed.append((task.name, upload_id, attempt)))
    return handed


def lines(n: int) -> str:
    return "\n".join(f"Flat {i // 2},Europe/Lisbon,Airbnb,https://www.airbnb.com/calendar/ical/{i}.ics?s=x" for i in range(n))


def post(client, text: str, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("onboarding"), {"file": SimpleUploadedFile("big.csv", text.encode(), "text/csv")})
    return OnboardingUpload.objects.latest("pk")


def poll(client, upload):
    return client.get(reverse("onboarding-progress", args=[upload.pk]))


def test_a_big_file_is_checked_by_the_worker_with_progress_then_saved_by_it(
    client, manager, small_chunks, queued, django_capture_on_commit_callbacks, monkeypatch
):
    upload = post(client, lines(10), django_capture_on_commit_callbacks)
    assert upload.stage == "checking" and queued == [("syncs.onboarding.jobs.onboarding_check_file", upload.pk, 1)]
    response = poll(client, upload)
    assert response.status_code == 200 and "Checking the file: 0 of 10 rows…" in response.content.decode()

    # The worker reports after each chunk: the page shows how far it got.
    beats = []
    original_check = jobs.RowChecker.check

    def check_and_watch(self, row, **kwargs):
        original_check(self, row, **kwargs)
        beats.append(OnboardingUpload.objects.get(pk=upload.pk).rows_checked)

    monkeypatch.setattr(jobs.RowChecker, "check", check_and_watch)
    jobs.onboarding_check_file(upload.pk, 1)
    assert beats == [0, 0, 0, 3, 3, 3, 6, 6, 6, 9]
    upload.refresh_from_db()
    assert upload.stage == "checked" and [row["action"] for row in upload.rows] == ["add"] * 10
    response = poll(client, upload)
    assert response.status_code == HttpResponseStopPolling.status_code
    assert "10 to add" in response.content.decode() and "Save these 10 changes" in response.content.decode()
    assert not Connection.objects.exists()

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("onboarding-import", args=[upload.pk]))
    upload.refresh_from_db()
    assert upload.stage == "importing" and queued[-1] == ("syncs.onboarding.jobs.onboarding_import_file", upload.pk, 2)
    assert "Saving the file: 10 rows, all or nothing…" in poll(client, upload).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        second = client.post(reverse("onboarding-import", args=[upload.pk]), follow=True)  # a second click
    assert "This file is being saved already." in second.content.decode()
    assert len(queued) == 2
    jobs.onboarding_import_file(upload.pk, 2)
    jobs.onboarding_import_file(upload.pk, 2)  # the same message delivered twice
    assert Connection.objects.count() == 10 and Property.objects.count() == 5
    assert Activity.objects.filter(action="syncs_imported").count() == 1
    response = poll(client, upload)
    assert response.status_code == HttpResponseStopPolling.status_code
    assert "Saved: 10 syncs added, 0 syncs changed." in response.content.decode()


def test_a_check_no_worker_takes_is_said_after_a_while_and_can_be_asked_again(
    client, manager, small_chunks, queued, django_capture_on_commit_callbacks
):
    upload = post(client, lines(6), django_capture_on_commit_callbacks)
    assert poll(client, upload).status_code == 200
    later = timezone.now() + jobs.START_WITHIN + timedelta(seconds=1)
    with time_machine.travel(later):
        response = poll(client, upload)
        assert response.status_code == HttpResponseStopPolling.status_code
        assert "No worker has started checking this file" in response.content.decode()
        jobs.onboarding_check_file(upload.pk, 1)  # the lost message, delivered at last: too late, it does nothing
        upload.refresh_from_db()
        assert upload.stage == "checking" and upload.job_started_at is None
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("onboarding-recheck", args=[upload.pk]))
        upload.refresh_from_db()
        assert upload.job_attempt == 2 and queued[-1][2] == 2
        jobs.onboarding_check_file(upload.pk, 2)
        upload.refresh_from_db()
        assert upload.stage == "checked"


def test_a_check_that_stops_halfway_is_said_and_an_import_that_stops_saved_nothing(
    client, manager, small_chunks, queued, django_capture_on_commit_callbacks
):
    upload = post(client, lines(6), django_capture_on_commit_callbacks)
    OnboardingUpload.objects.filter(pk=upload.pk).update(job_started_at=timezone.now(), job_beat_at=timezone.now())
    with time_machine.travel(timezone.now() + jobs.SILENT_FOR + timedelta(seconds=1)):
        response = poll(client, upload)
        assert response.status_code == HttpResponseStopPolling.status_code
        assert "The check of this file stopped before the end" in response.content.decode()
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("onboarding-recheck", args=[upload.pk]))
        jobs.onboarding_check_file(upload.pk, 2)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("onboarding-import", args=[upload.pk]))
    upload.refresh_from_db()
    OnboardingUpload.objects.filter(pk=upload.pk).update(job_started_at=timezone.now())  # a worker took it, then died
    with time_machine.travel(timezone.now() + timedelta(seconds=jobs.JOB_SECONDS + 61)):
        response = poll(client, upload)
        assert response.status_code == HttpResponseStopPolling.status_code
        assert "Saving this file did not finish (its worker stopped): nothing of the file was saved." in response.content.decode()
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("onboarding-import", args=[upload.pk]))
        upload.refresh_from_db()
        assert upload.stage == "importing" and upload.job_attempt == 4
        jobs.onboarding_import_file(upload.pk, 4)
    assert Connection.objects.count() == 6


def test_an_unexpected_error_in_the_check_ends_the_job_with_words(client, manager, small_chunks, queued,
                                                                   django_capture_on_commit_callbacks, monkeypatch, caplog):
    upload = post(client, lines(6), django_capture_on_commit_callbacks)
    monkeypatch.setattr(jobs.RowChecker, "check", lambda self, row, **kwargs: 1 / 0)
    jobs.onboarding_check_file(upload.pk, 1)
    response = poll(client, upload)
    assert response.status_code == HttpResponseStopPolling.status_code
    assert "The check stopped on an unexpected error on our side (it was logged)." in response.content.decode()
    assert "ZeroDivisionError" in caplog.text


def test_the_worker_works_in_the_account_the_file_was_uploaded_to(client, manager, small_chunks, queued,
                                                                   django_capture_on_commit_callbacks):
    upload = post(client, lines(6), django_capture_on_commit_callbacks)
    other = MembershipFactory(user=manager.user, role=Membership.Role.OWNER)
    Membership.objects.filter(pk=other.pk).update(is_current=True)
    Membership.objects.filter(pk=manager.pk).update(is_current=False)
    jobs.onboarding_check_file(upload.pk, 1)
    upload.refresh_from_db()
    assert upload.outcome == {"failed": "member"}
    assert not Property.objects.filter(account=other.account).exists()


def test_the_browser_side_worker_runs_the_whole_flow_when_tasks_run_eagerly(
    client, manager, small_chunks, django_capture_on_commit_callbacks, monkeypatch
):
    """The publishing path itself (a thread that hands the task over), with the task run where it
    is published, as the browser tests run it."""
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setattr(jobs, "_in_background", jobs._publish)
    upload = post(client, lines(6), django_capture_on_commit_callbacks)
    assert upload.stage == "checked" and all(row["action"] == "add" for row in upload.rows)
