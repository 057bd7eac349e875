"""Durable operator actions: written to the database first, handed to the broker after the
commit, handed out again until a worker has run them, and run once.

An action that a worker finishes ("Sync now", the check of a sync switched back on, accepting
held removals, in bulk or one by one) is a ``Job`` row written in the transaction of the action
itself: rolled back, there is nothing to send; committed, the row is there whatever the broker
does. Then:

1. After the commit, the job's message goes to one publishing thread per process, which hands it
   to the broker: a stopped or hung Redis never holds a page or a task (it costs that thread its
   timeouts, and it drops what is waiting rather than queueing behind a dead broker).
2. ``resend_jobs`` (beat, every dispatch interval) sends again every job that no worker started
   within ``JOB_RESEND_AFTER_SECONDS`` of its last sending (a message the broker refused, or lost
   when Redis restarted without its data), and every job whose worker stopped holding it (killed
   mid-task). It waits twice as long after each sending, up to ten minutes.
3. A job's message carries the job's id in its Celery task id; the task (``DurableTask``) first
   claims the job with a conditional UPDATE (not finished, and not held by another live message),
   so a job sent twice runs once, and marks it finished when its body returns. A body that cannot
   do its work yet raises ``JobPutOff``: the job is sent again later. A body that fails is sent
   again later too (it never stops being asked for; the log says why).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module

from celery import Task, current_app, shared_task
from celery.exceptions import Retry
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from syncs.models import Job

log = logging.getLogger(__name__)

# A started job is sent again if its message has not finished it by then: far longer than any
# task may run (settings.CELERY_TASK_TIME_LIMIT) with its retries.
LEASE = timedelta(minutes=5)
# The longest wait between two sendings of a job no worker starts.
RESEND_AFTER_MAX = timedelta(minutes=10)
# Jobs sent again in one sweep (the next sweep sends the rest).
SWEEP_BATCH = 1000
_TASK_ID = re.compile(r"^job-(\d+)-")


class JobPutOff(Exception):
    """Raised by a job's body that cannot do its work now (its portal host is busy, another sync
    holds the connection): the job is sent again after ``seconds``."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.seconds = seconds


def resend_after(sends: int) -> timedelta:
    """How long a job sent ``sends`` times already may wait for a worker before it is sent again."""
    first = timedelta(seconds=settings.JOB_RESEND_AFTER_SECONDS)
    return min(first * 2 ** min(sends, 10), max(RESEND_AFTER_MAX, first))


# --------------------------------------------------------------------------- writing and sending


@dataclass(frozen=True, slots=True)
class Message:
    """What the broker is handed for a job: ids only."""

    task: str
    args: list
    task_id: str


def _message(job: Job) -> Message:
    return Message(task=job.task, args=list(job.args), task_id=f"job-{job.pk}-{secrets.token_hex(6)}")


def job_enqueue(*, task: str, args: list, key: str = "", now: datetime | None = None) -> Job | None:
    """Write a job for the Celery task named ``task`` (one using ``DurableTask``) in the caller's
    transaction, and hand it to the broker after the commit. With a ``key``, nothing is added
    while a job of that key waits to start (that one will do the same work); returns None then."""
    made = jobs_enqueue(task=task, work=[(args, key)], now=now)
    return made[0] if made else None


def jobs_enqueue(*, task: str, work: list[tuple[list, str]], now: datetime | None = None) -> list[Job]:
    """``job_enqueue`` for many (args, key) at once, in a few statements: what a bulk action
    asks for."""
    now = now or timezone.now()
    # Part of the caller's transaction (no savepoint of its own).
    with transaction.atomic(savepoint=False):
        keys = [key for _args, key in work if key]
        waiting = set(
            Job.objects.filter(key__in=keys, finished_at__isnull=True, started_at__isnull=True).values_list("key", flat=True)
        ) if keys else set()
        made = Job.objects.bulk_create([
            Job(task=task, args=args, key=key, created_at=now, resend_at=now + resend_after(0))
            for args, key in work if not (key and key in waiting)
        ])
        messages = [_message(job) for job in made]
        if messages:
            transaction.on_commit(lambda: _hand_over_all(messages))
    return made


def _hand_over_all(messages: list[Message]) -> None:
    for message in messages:
        hand_over(message)


def hand_over(message: Message) -> None:
    """Give a committed job's message to this process's publishing thread (never waits)."""
    _Publisher.instance().put(message)


def send(message: Message) -> None:
    """Hand one message to the broker (or, with CELERY_TASK_ALWAYS_EAGER, run it here)."""
    _task(message.task).apply_async(message.args, task_id=message.task_id)


def _task(name: str) -> Task:
    # A web process imports no task module of its own accord: a task's name says where it is.
    import_module(name.rpartition(".")[0])
    return current_app.tasks[name]


class _Publisher:
    """One thread per process hands committed jobs' messages to the broker, in order. When the
    broker refuses one, everything waiting then is dropped too (logged): the sweeper sends it
    all again once the broker is back, rather than this thread timing out once per message."""

    _instance: _Publisher | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.messages: queue.Queue[Message] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="jobs-publisher", daemon=True)
        self.thread.start()

    @classmethod
    def instance(cls) -> _Publisher:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    @classmethod
    def _forget_after_fork(cls) -> None:
        # A forked child (a worker's pool process) has the parent's object but not its thread.
        cls._instance = None
        cls._lock = threading.Lock()

    def put(self, message: Message) -> None:
        self.messages.put(message)

    def _run(self) -> None:
        while True:
            message = self.messages.get()
            try:
                send(message)
            except Exception as exc:
                dropped = 1
                while True:
                    try:
                        self.messages.get_nowait()
                    except queue.Empty:
                        break
                    self.messages.task_done()
                    dropped += 1
                log.warning(
                    "jobs not handed to the broker count=%d error=%s: they are sent again once it takes them", dropped,
                    type(exc).__name__,
                )
            finally:
                _close_thread_database_connections()
                self.messages.task_done()


def _close_thread_database_connections() -> None:
    # With CELERY_TASK_ALWAYS_EAGER the job ran in this thread: give its connection back.
    if current_app.conf.task_always_eager:
        from django.db import connections  # only when tasks run eagerly (the demo, browser tests)

        connections.close_all()


os.register_at_fork(after_in_child=_Publisher._forget_after_fork)


# --------------------------------------------------------------------------- running


def job_of(task_id: str | None) -> int | None:
    """The job a message runs, from its task id (None for a message that is no job's)."""
    match = _TASK_ID.match(task_id or "")
    return int(match.group(1)) if match else None


def job_start(*, job_id: int, holder: str, now: datetime | None = None) -> bool:
    """Claim the job for the message ``holder``: False if it has finished, or another message
    holds it still. The same message may claim it again (a retried task keeps its id)."""
    now = now or timezone.now()
    lease_until = now + LEASE
    return bool(
        Job.objects.filter(pk=job_id, finished_at__isnull=True)
        .filter(Q(started_at__isnull=True) | Q(lease_until__lt=now) | Q(holder=holder))
        .update(started_at=now, holder=holder, lease_until=lease_until, resend_at=lease_until)
    )


def job_finish(*, job_id: int, holder: str, now: datetime | None = None) -> None:
    Job.objects.filter(pk=job_id, holder=holder).update(finished_at=now or timezone.now(), lease_until=None)


def job_put_off(*, job_id: int, holder: str, seconds: float, now: datetime | None = None) -> None:
    """Give the job back, to be sent again after ``seconds`` (by the sweeper)."""
    now = now or timezone.now()
    Job.objects.filter(pk=job_id, holder=holder).update(
        started_at=None, holder="", lease_until=None, resend_at=now + timedelta(seconds=seconds)
    )


class DurableTask(Task):
    """Base of the tasks that run jobs: a message that carries a job runs it only if it can claim
    it, and finishes it (see the module's docstring). Other messages run as plain tasks."""

    def __call__(self, *args, **kwargs):
        if self.request.called_directly:  # a plain call (a command, a test): no message, no job
            return self._body(super().__call__, args, kwargs)
        job_id = job_of(self.request.id)
        if job_id is None:
            return self._body(self.run, args, kwargs)
        holder = self.request.id
        if not job_start(job_id=job_id, holder=holder):
            log.info("job skipped job=%s task=%s reason=finished_or_held", job_id, self.name)
            return None
        try:
            # Celery's tracer pushed this message's request already: the body is called as is.
            result = self.run(*args, **kwargs)
        except JobPutOff as off:
            job_put_off(job_id=job_id, holder=holder, seconds=off.seconds)
            return None
        except Retry:
            raise  # the retry carries the same task id, and claims the job again
        except Exception:
            log.exception("job failed job=%s task=%s: it is sent again later", job_id, self.name)
            job_put_off(job_id=job_id, holder=holder, seconds=resend_after(1).total_seconds())
            raise
        job_finish(job_id=job_id, holder=holder)
        return result

    @staticmethod
    def _body(call, args, kwargs):
        try:
            return call(*args, **kwargs)
        except JobPutOff:
            return None  # no job to send again: whoever called decides


# --------------------------------------------------------------------------- the sweeper


@shared_task(ignore_result=True)
def resend_jobs() -> int:
    """Run by beat: send again each job no worker has started (or still holds) in time."""
    now = timezone.now()
    lost = list(
        Job.objects.filter(finished_at__isnull=True, resend_at__lte=now).order_by("resend_at", "pk")[:SWEEP_BATCH]
    )
    sent = 0
    with current_app.producer_or_acquire() as producer, producer.batch(max_size=500):
        for job in lost:
            # Written first: two sweepers at once send a job at most twice, and it runs once.
            if not Job.objects.filter(pk=job.pk, resend_at=job.resend_at).update(
                sends=job.sends + 1, resend_at=now + resend_after(job.sends + 1)
            ):
                continue
            message = _message(job)
            _task(message.task).apply_async(message.args, task_id=message.task_id, producer=producer)
            sent += 1
    if sent:
        log.info("jobs sent again count=%d", sent)
    return sent
