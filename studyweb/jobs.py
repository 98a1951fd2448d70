"""The one background-job layer: every kind of job (analysis, export, model
scoring, and the kinds to come) is a row of a :class:`Job` subclass and is sent
to Celery here, by task name, so no service imports a task module.

Life of a job:

1. A service writes the row (``waiting_for_broker`` is true: not yet handed to
   the broker) and calls :func:`job_send` once its transaction has committed.
2. :func:`job_send` claims the row (``waiting_for_broker`` true -> false, one
   statement, so two senders never both send it) and publishes the task. If the
   broker does not take it, whatever the Celery client raised, the row is marked
   waiting again and :class:`BrokerUnavailable` names the job; the API answers
   503 with the job, pages a message, commands exit 75 (EX_TEMPFAIL).
3. :func:`jobs_tick` runs in every worker when it starts and then every
   ``JOB_TICK_SECONDS`` (studyweb.celery): it sends every waiting row of every kind
   (jobs saved during a broker outage go out once it is back; never a read),
   recounts running jobs whose work is split over several tasks, and sends again
   the task of such a job that made no progress for :func:`job_stall_seconds`
   (a task lost with a killed worker).
4. The worker's task marks the row running, reports progress, then done or
   failed with an error code (and the field it concerns, when there is one).

Without a broker (the embedded ``make run``) the task runs in-process at step 2,
as Label Studio's ``start_job_async_or_sync`` does.
"""

from __future__ import annotations

import logging
import time
from typing import ClassVar, Self, TypeVar

from django.apps import apps
from django.conf import settings
from django.db import models
from django.utils import timezone

from studyweb.errors import ServiceError

logger = logging.getLogger("studyweb.jobs")

# A publish may wait this long for a reachable broker (two tries); well inside the
# 2 s an API caller is promised when Redis is down.
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0.2,
    "interval_step": 0.2,
    "interval_max": 0.2,
}


class Job(models.Model):
    """What every background job has: status, progress, error, times, broker state."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE: ClassVar[tuple[str, ...]] = (Status.QUEUED, Status.RUNNING)
    FINISHED: ClassVar[tuple[str, ...]] = (Status.DONE, Status.FAILED, Status.CANCELLED)
    #: The Celery task that runs this kind of job, called with the row's id.
    task_name: ClassVar[str] = ""
    #: How the job is named in messages ("analysis 12 ...").
    noun: ClassVar[str] = "job"
    # Every concrete kind has Django's default manager; declared for the type checker,
    # which gives an abstract model none (the functions below take any kind).
    objects: ClassVar[models.Manager[Self]]

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0, help_text="Units of work (0: unknown).")
    done = models.PositiveIntegerField(default=0, help_text="Units of work finished.")
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_field = models.CharField(
        max_length=64, blank=True, help_text="The input the error concerns, when there is one."
    )
    waiting_for_broker = models.BooleanField(
        default=True,
        help_text="Not yet handed to the task broker (it is sent as soon as the broker takes it).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["queued", "running", "done", "failed", "cancelled"]),
                name="%(app_label)s_%(class)s_status",
            ),
        ]

    @property
    def percent(self) -> float:
        if self.status == self.Status.DONE:
            return 100.0
        return 100.0 * self.done / self.total if self.total else 0.0

    @property
    def label(self) -> str:
        return f"{self.noun} {self.pk}"

    def refresh_progress(self) -> None:
        """Bring ``done`` (and the status) up to date from the job's own results.

        Kinds whose work is split over several tasks override it; the job layer's
        periodic tick calls it for running jobs, so a job whose last piece of work
        landed after the last count still finishes.
        """


J = TypeVar("J", bound=Job)


#: The fields every job shows in the API, all read-only: what state it is in and why.
JOB_STATE_FIELDS = [
    "status",
    "error",
    "error_code",
    "error_field",
    "waiting_for_broker",
    "created_at",
    "started_at",
    "finished_at",
]


class BrokerUnavailable(ServiceError):
    """The broker did not take the job; it is kept and sent once the broker is back."""

    code = "broker_unavailable"
    status = 503

    def __init__(self, job: Job, reason: str):
        self.job = job
        super().__init__(
            f"{job.label} is saved and waits for the task broker, which is unreachable "
            f"({reason}); it will be sent as soon as the broker is back"
        )


def job_kinds() -> list[type[Job]]:
    """Every concrete job model of the installed apps."""
    return [m for m in apps.get_models() if issubclass(m, Job)]


def _eager() -> bool:
    from studyweb.celery import app

    return bool(app.conf.task_always_eager)


def _publish(job: Job) -> None:
    from studyweb.celery import app

    if _eager():
        # In-process (no broker): Celery's own discovery finds the task modules, and
        # the task records its own failure on the row.
        app.loader.import_default_modules()
        result = app.tasks[job.task_name].apply(args=(job.pk,))
        if result.failed():
            logger.warning("%s failed in-process: %s", job.label, result.result)
        return
    app.send_task(
        job.task_name,
        args=(job.pk,),
        ignore_result=True,  # the row is the result; no result-backend round trip
        retry=True,
        retry_policy=PUBLISH_RETRY_POLICY,
    )


def job_send(job: Job) -> None:
    """Hand the job to the broker now, once; raise BrokerUnavailable if it is down."""
    model = type(job)
    claimed = model.objects.filter(pk=job.pk, waiting_for_broker=True).update(
        waiting_for_broker=False
    )
    job.waiting_for_broker = False
    if not claimed:
        return  # already sent (by a worker's resend, or a second request)
    try:
        _publish(job)
    except Exception as exc:
        model.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(waiting_for_broker=True)
        job.waiting_for_broker = True
        logger.warning("%s waits for the broker: %s: %s", job.label, type(exc).__name__, exc)
        raise BrokerUnavailable(job, f"{type(exc).__name__}: {exc}") from exc
    logger.info("%s %s", job.label, "ran in-process" if _eager() else "sent to the broker")


def jobs_send_waiting() -> int:
    """Send every queued job that is waiting for the broker; returns how many went out."""
    sent = 0
    for model in job_kinds():
        for pk in model.objects.filter(
            waiting_for_broker=True, status=Job.Status.QUEUED
        ).values_list("pk", flat=True):
            job = model.objects.get(pk=pk)
            try:
                job_send(job)
            except BrokerUnavailable:
                return sent  # still down: the next round tries again
            sent += 1
    if sent:
        logger.info("sent %d job(s) that were waiting for the broker", sent)
    return sent


def jobs_settle_running() -> int:
    """Recount the running jobs of kinds that split their work; returns how many finished."""
    finished = 0
    for model in job_kinds():
        if model.refresh_progress is Job.refresh_progress:
            continue
        for job in model.objects.filter(status=Job.Status.RUNNING):
            job.refresh_progress()
            finished += job.status == Job.Status.DONE
    return finished


# What this process's tick last saw of each running split job: (kind, pk) -> (done, since).
_PROGRESS_SEEN: dict[tuple[str, int], tuple[int, float]] = {}


def job_stall_seconds() -> float:
    """How long a running split job may go without progress before its work is sent again.

    ``JOB_STALL_SECONDS`` when set; else the broker's visibility timeout plus one
    restore sweep: by then every task a dead worker held has been handed back to
    the queue, if the broker hands it back at all (see :func:`jobs_resend_stalled`).
    """
    configured = getattr(settings, "JOB_STALL_SECONDS", None)
    if configured is not None:
        return float(configured)
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    return float(options.get("visibility_timeout", 3600)) + float(
        options.get("unacked_restore_interval", 60)
    )


def jobs_resend_stalled(now: float | None = None) -> int:
    """Send again the task of every running split job that made no progress for
    :func:`job_stall_seconds`; returns how many were sent.

    Why: with acks_late a dead worker's task normally comes back, but not always.
    Redis hands a message to ``BRPOP`` before the worker records it as unacked, so a
    worker killed between the two loses it; and a worker killed during its restore
    sweep leaves kombu's restore mutex held for 5 minutes, so no other worker
    restores anything until it expires. Either way the job's last batch never runs,
    ``done`` stays below ``total`` and the recount alone never finishes it. The
    job's own task plans only the work still missing, and a batch skips what is
    already written, so a resend of a job that was merely slow costs little.
    Progress is remembered per worker process; each ticking worker may resend once
    per stall period.
    """
    now = time.monotonic() if now is None else now
    stall = job_stall_seconds()
    sent = 0
    live: set[tuple[str, int]] = set()
    for model in job_kinds():
        if model.refresh_progress is Job.refresh_progress:
            continue
        for job in model.objects.filter(status=Job.Status.RUNNING):
            key = (model._meta.label, job.pk)
            live.add(key)
            seen = _PROGRESS_SEEN.get(key)
            if seen is None or seen[0] != job.done:
                _PROGRESS_SEEN[key] = (job.done, now)
                continue
            if now - seen[1] < stall:
                continue
            logger.warning(
                "%s made no progress for %.0f s (%d of %d); sending its task again",
                job.label,
                now - seen[1],
                job.done,
                job.total,
            )
            try:
                _publish(job)
            except Exception as exc:  # noqa: BLE001 - any broker error: the next tick tries again
                logger.warning("%s: resend failed: %s: %s", job.label, type(exc).__name__, exc)
                continue
            _PROGRESS_SEEN[key] = (job.done, now)
            sent += 1
    for key in set(_PROGRESS_SEEN) - live:
        del _PROGRESS_SEEN[key]
    return sent


def jobs_tick() -> dict[str, int]:
    """What workers run periodically: send waiting jobs, settle running ones, and send
    again the work of running ones that stalled."""
    return {
        "sent": jobs_send_waiting(),
        "finished": jobs_settle_running(),
        "resent": jobs_resend_stalled(),
    }


# --- State changes made by the workers' tasks -------------------------------------


def job_mark_running(model: type[Job], pk: int, **fields) -> bool:
    """queued -> running; False when the job is no longer queued (or running already)."""
    return bool(
        model.objects.filter(pk=pk, status=Job.Status.QUEUED).update(
            status=Job.Status.RUNNING, started_at=timezone.now(), **fields
        )
    )


def job_mark_done(model: type[Job], pk: int, **fields) -> bool:
    return bool(
        model.objects.filter(pk=pk, status__in=Job.ACTIVE).update(
            status=Job.Status.DONE,
            finished_at=timezone.now(),
            error="",
            error_code="",
            error_field="",
            **fields,
        )
    )


def job_mark_failed(
    model: type[Job], pk: int, *, error: str, code: str = "error", field: str = ""
) -> bool:
    return bool(
        model.objects.filter(pk=pk, status__in=Job.ACTIVE).update(
            status=Job.Status.FAILED,
            finished_at=timezone.now(),
            error=error[:4000],
            error_code=code[:64],
            error_field=field[:64],
        )
    )


def job_cancel(job: J) -> J:
    """Stop a queued or running job; its remaining work is dropped by the worker."""
    model = type(job)
    updated = model.objects.filter(pk=job.pk, status__in=Job.ACTIVE).update(
        status=Job.Status.CANCELLED, finished_at=timezone.now(), waiting_for_broker=False
    )
    job.refresh_from_db()
    if not updated:
        raise ServiceError(
            f"{job.label} is {job.status}; only queued or running jobs stop",
            code="not_active",
            field="status",
            status=409,
        )
    return job
