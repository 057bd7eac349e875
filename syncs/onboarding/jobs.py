"""A file's check and its import: in the request for a small file, in the worker for a big one,
and a page that always learns how they ended.

An upload moves through ``OnboardingUpload.Stage``: CHECKING -> CHECKED -> IMPORTING -> IMPORTED
(or back to CHECKED, with the reason, when the import is refused). A job handed to the worker is
written first (its attempt number, when it was asked for) and published after commit, as the
bulk actions are (``syncs.bulk``). A task starts only if its attempt is still the upload's and it
was asked for less than ``START_WITHIN`` ago; after that the page says the worker never took it,
and "Check again" or "Save" asks for a new attempt. A check that started reports its progress
after each chunk of rows; one that has said nothing for ``SILENT_FOR`` stopped. An import is
one transaction that sets IMPORTED itself: one still IMPORTING after its time limit never
committed, so nothing of it was saved.

The check is the import rolled back (``checking.RowChecker`` with ``dry_run``), chunk by chunk:
each chunk's transaction first writes again the bare rows of the chunks before it, so that a
big file never holds the database (SQLite's single writer above all) for the whole check, and
the page can show how far it got.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from celery import shared_task
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone, translation

from syncs.activity import activity_record
from syncs.models import Activity, LinkCheck, Membership, OnboardingUpload
from syncs.onboarding.checking import ADD, CHANGE, RowChecker
from syncs.onboarding.file import file_read

log = logging.getLogger(__name__)

Stage = OnboardingUpload.Stage
# Up to this many rows, a file is checked and imported in the request itself.
INLINE_ROWS = 200
# A check reports its progress after each chunk, and each chunk writes the rows above it again:
# chunks of at least this many rows, and at most CHUNKS of them.
CHUNK_ROWS = 250
CHUNKS = 5
START_WITHIN = timedelta(minutes=2)
SILENT_FOR = timedelta(minutes=2)
# The check and the import of the biggest file end well within this (a task's time limit).
JOB_SECONDS = 900
_IMPORT_BOUND = timedelta(seconds=JOB_SECONDS + 60)
KEEP_UPLOADS = timedelta(days=7)  # their rows hold import links, which are secrets
KEEP_LINK_CHECKS = timedelta(days=1)


class _Rollback(Exception):
    """Raised to roll a transaction back on purpose."""


class _NotManager(Exception):
    """The person who uploaded the file no longer manages the account it was uploaded to."""


def lost_jobs(now=None) -> Q:
    """Uploads whose job will never end by itself: never started by a worker, or stopped."""
    now = now or timezone.now()
    return (
        Q(stage__in=[Stage.CHECKING, Stage.IMPORTING], job_started_at__isnull=True, job_queued_at__lt=now - START_WITHIN)
        | Q(stage=Stage.CHECKING, job_started_at__isnull=False, job_beat_at__lt=now - SILENT_FOR)
        | Q(stage=Stage.IMPORTING, job_started_at__lt=now - _IMPORT_BOUND)
    )


# --------------------------------------------------------------------------- asking


def onboarding_preview(*, user, account, filename: str, data: bytes) -> tuple[OnboardingUpload | None, list[str]]:
    """Read the file and check every row (the import, rolled back), now or in the worker. Returns
    the upload, and what to tell about the file as a whole; no upload when the file cannot be
    read (then the sentences say why)."""
    read = file_read(data)
    if read.problems:
        return None, read.problems
    now = timezone.now()
    OnboardingUpload.objects.filter(account=account, created_at__lt=now - KEEP_UPLOADS).delete()
    LinkCheck.objects.filter(account=account, checked_at__lt=now - KEEP_LINK_CHECKS).delete()
    upload = OnboardingUpload.objects.create(
        account=account, user=user, filename=filename[:200], language=translation.get_language() or "",
        rows=read.rows, notices=read.notices, stage=Stage.CHECKING, job_attempt=1, job_queued_at=now,
    )
    _start(upload, onboarding_check_file)
    upload.refresh_from_db()
    return upload, read.notices


def onboarding_recheck(*, upload: OnboardingUpload, language: str) -> bool:
    """Check the file's rows again, against the account as it is now (after a refusal, a lost
    job, or changes made meanwhile), its words in ``language`` (the reader's, who asked). False
    when a job is under way or the file was imported."""
    now = timezone.now()
    asked = (
        OnboardingUpload.objects.filter(pk=upload.pk, imported_at__isnull=True)
        .filter(Q(stage=Stage.CHECKED) | (Q(stage=Stage.CHECKING) & lost_jobs(now)))
        .update(stage=Stage.CHECKING, job_attempt=F("job_attempt") + 1, job_queued_at=now, job_started_at=None,
                job_beat_at=None, rows_checked=0, outcome={}, live_requested_at=None, language=language)
    )
    if asked:
        upload.refresh_from_db()
        _start(upload, onboarding_check_file)
    return bool(asked)


def onboarding_import(*, upload: OnboardingUpload) -> bool:
    """Save the whole file, now or in the worker. False when it cannot start: saved already, or
    being saved (a second click), or not checked."""
    now = timezone.now()
    asked = (
        OnboardingUpload.objects.filter(pk=upload.pk, imported_at__isnull=True)
        .filter(Q(stage=Stage.CHECKED) | (Q(stage=Stage.IMPORTING) & lost_jobs(now)))
        .update(stage=Stage.IMPORTING, job_attempt=F("job_attempt") + 1, job_queued_at=now, job_started_at=None,
                job_beat_at=None, outcome={})
    )
    if asked:
        upload.refresh_from_db()
        _start(upload, onboarding_import_file)
    return bool(asked)


def _start(upload: OnboardingUpload, task) -> None:
    if len(upload.rows) <= INLINE_ROWS:
        task(upload.pk, upload.job_attempt)  # in the request: the page shows the outcome at once
        return
    upload_id, attempt = upload.pk, upload.job_attempt
    transaction.on_commit(lambda: _in_background(task, upload_id, attempt))


def _in_background(task, upload_id: int, attempt: int) -> None:
    threading.Thread(target=_publish, args=(task, upload_id, attempt), name=f"onboarding-{upload_id}", daemon=True).start()


def _publish(task, upload_id: int, attempt: int) -> None:
    """From a thread: a hung broker costs the thread seconds, not the page."""
    try:
        task.apply_async((upload_id, attempt))
    except Exception:  # the broker is down: the page says so when START_WITHIN has passed
        log.warning("onboarding job not queued upload=%s task=%s: broker unavailable", upload_id, task.name)


# --------------------------------------------------------------------------- the jobs


def _claim(upload_id: int, attempt: int, stage: str) -> OnboardingUpload | None:
    now = timezone.now()
    claimed = OnboardingUpload.objects.filter(
        pk=upload_id, stage=stage, job_attempt=attempt, job_started_at__isnull=True, job_queued_at__gte=now - START_WITHIN,
    ).update(job_started_at=now, job_beat_at=now)
    if not claimed:
        return None  # an older attempt, one started already, or one too late: the page gave up on it
    return OnboardingUpload.objects.select_related("account", "user").get(pk=upload_id)


def _operator(upload: OnboardingUpload):
    """The uploader, working in the upload's account as a manager (the forms and services read
    the account from the person)."""
    membership = Membership.current_of(upload.user)
    if membership is None or membership.account_id != upload.account_id or not membership.can_manage:
        raise _NotManager
    return upload.user


def _fresh(row: dict) -> dict:
    """A row as read from the file, before any check."""
    return {"line": row["line"], "cells": row["cells"], "read_errors": row.get("read_errors", []),
            "errors": list(row.get("read_errors", []))}


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=JOB_SECONDS, time_limit=JOB_SECONDS + 30)
def onboarding_check_file(upload_id: int, attempt: int) -> None:
    """Check every row, chunk by chunk, each chunk in a transaction rolled back."""
    upload = _claim(upload_id, attempt, Stage.CHECKING)
    if upload is None:
        return
    mine = OnboardingUpload.objects.filter(pk=upload_id, job_attempt=attempt, stage=Stage.CHECKING)
    rows = [_fresh(row) for row in upload.rows]
    try:
        with translation.override(upload.language or None):
            checker = RowChecker(user=_operator(upload), account=upload.account, dry_run=True)
            size = max(CHUNK_ROWS, -(-len(rows) // CHUNKS))
            for start in range(0, len(rows), size):
                try:
                    with transaction.atomic():
                        checker.replay()
                        for row in rows[start:start + size]:
                            checker.check(row)
                        raise _Rollback
                except _Rollback:
                    pass
                mine.update(rows_checked=min(start + size, len(rows)), job_beat_at=timezone.now())
        mine.update(stage=Stage.CHECKED, rows=rows, untouched=checker.untouched, rows_checked=len(rows))
    except _NotManager:
        mine.update(stage=Stage.CHECKED, outcome={"failed": "member"})
    except Exception:
        log.exception("onboarding check failed upload=%s", upload_id)
        mine.update(stage=Stage.CHECKED, outcome={"failed": "check"})


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=JOB_SECONDS, time_limit=JOB_SECONDS + 30)
def onboarding_import_file(upload_id: int, attempt: int) -> None:
    """Save every row in one transaction, each as the check showed it; if any row fails now,
    nothing is saved and the rows say why."""
    upload = _claim(upload_id, attempt, Stage.IMPORTING)
    if upload is None:
        return
    mine = OnboardingUpload.objects.filter(pk=upload_id, job_attempt=attempt, stage=Stage.IMPORTING)
    rows = [_fresh(row) for row in upload.rows]
    try:
        with translation.override(upload.language or None), transaction.atomic():
            user = _operator(upload)
            checker = RowChecker(user=user, account=upload.account, dry_run=False)
            for row, shown in zip(rows, upload.rows, strict=True):
                checker.check(row, expected=shown)
            if any(row["errors"] for row in rows):
                raise _Rollback
            counts = {"added": sum(row["action"] == ADD for row in rows),
                      "changed": sum(row["action"] == CHANGE for row in rows)}
            # In the import's own transaction: an upload marked saved is one whose rows are.
            mine.update(stage=Stage.IMPORTED, imported_at=timezone.now(), rows=rows, outcome=counts,
                        untouched=checker.untouched)
            activity_record(
                user=user, action=Activity.Action.SYNCS_IMPORTED,
                params={"count": counts["added"], "changed": counts["changed"], "rows": len(rows), "file": upload.filename},
            )
    except _Rollback:
        mine.update(stage=Stage.CHECKED, rows=rows, outcome={"refused": sum(1 for row in rows if row["errors"])})
    except _NotManager:
        mine.update(stage=Stage.CHECKED, outcome={"failed": "member"})
    except Exception:
        log.exception("onboarding import failed upload=%s", upload_id)
        mine.update(stage=Stage.CHECKED, outcome={"failed": "import"})


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class JobState:
    upload: OnboardingUpload
    lost: str  # "" | "not_started" (no worker took it) | "stopped" (it stopped halfway)

    @property
    def running(self) -> bool:
        return self.upload.stage in (Stage.CHECKING, Stage.IMPORTING) and not self.lost


def job_state(*, upload: OnboardingUpload) -> JobState:
    lost = ""
    if upload.stage in (Stage.CHECKING, Stage.IMPORTING) and OnboardingUpload.objects.filter(pk=upload.pk).filter(lost_jobs()).exists():
        lost = "not_started" if upload.job_started_at is None else "stopped"
    return JobState(upload=upload, lost=lost)
