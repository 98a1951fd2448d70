"""Celery tasks: a job id in, a service call, nothing more.

Only Celery's task discovery imports this module (an import-linter contract
checks it); services send work by task name through :mod:`studyweb.jobs`.
Routing (settings.CELERY_TASK_ROUTES): ``score_*`` go to the ``gpu`` queue, the
rest to ``default``. Tasks acknowledge late, so a task whose worker died is
delivered again; every one of them is idempotent.
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutdown
from django.db import InterfaceError, OperationalError

from scoring.analyses.services import analysis_run
from scoring.exports.services import export_job_run
from scoring.model_scoring.batches import job_fail, job_plan_batches, score_batch_run
from scoring.model_scoring.model_cache import ModelLoadError, clear_cache

# Errors worth retrying: the database or broker blinked, not a bug in the input.
TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


@shared_task(name="scoring.tasks.run_analysis", acks_late=True, ignore_result=True)
def run_analysis(analysis_id: int) -> str:
    return analysis_run(analysis_id=analysis_id).status


@shared_task(
    name="scoring.tasks.score_job",
    acks_late=True,
    ignore_result=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    max_retries=5,
)
def score_job(job_id: int) -> int:
    batches = job_plan_batches(job_id=job_id)
    for ids in batches:
        score_batch.apply_async((job_id, ids), ignore_result=True)
    return len(batches)


@shared_task(
    bind=True,
    name="scoring.tasks.score_batch",
    acks_late=True,
    ignore_result=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    retry_backoff_max=120,
    max_retries=8,
    soft_time_limit=900,
    time_limit=1200,
)
def score_batch(self, job_id: int, stimulus_ids: list[int]) -> int:
    from celery.exceptions import SoftTimeLimitExceeded

    try:
        return score_batch_run(job_id=job_id, stimulus_ids=stimulus_ids)
    except ModelLoadError as exc:
        # Not transient: the same batch would fail again. The job says why.
        job_fail(job_id=job_id, error=str(exc), code="model_load")
        raise
    except SoftTimeLimitExceeded as exc:
        job_fail(job_id=job_id, error=f"a batch ran out of time: {exc}", code="time_limit")
        raise
    except TRANSIENT:
        raise
    except Exception as exc:
        if self.request.retries >= 2:
            job_fail(job_id=job_id, error=f"{type(exc).__name__}: {exc}")
            raise
        raise self.retry(exc=exc, countdown=5 * (self.request.retries + 1)) from exc


@shared_task(
    name="scoring.tasks.run_export",
    acks_late=True,
    ignore_result=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    max_retries=5,
)
def run_export(job_id: int) -> None:
    export_job_run(job_id=job_id)


# The worker processes' life cycle of the model cache (here: only workers import this
# module). JOINT scorers keep a preprocessing pool as long as the process that runs
# the tasks. A pool process forked from a parent that had loaded models forgets
# them without touching their workers (the parent's); a pool process that stops, or
# the main process of a solo/threads worker, shuts its pools down. One killed
# outright takes its preprocessing workers with it (their parent-death signal).


@worker_process_init.connect
def _forget_inherited_models(sender=None, **kwargs) -> None:
    clear_cache(close=False)


@worker_process_shutdown.connect
@worker_shutdown.connect
def _close_preprocessing_pools(sender=None, **kwargs) -> None:
    clear_cache(close=True)
