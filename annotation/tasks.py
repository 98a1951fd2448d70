"""Celery tasks of the rater side: a job id in, a service call, nothing more.

Only Celery's task discovery imports this module (studyweb.celery autodiscovers the
``tasks`` module of every installed app); services send work by task name through
:mod:`studyweb.jobs`. Imports go to the ``default`` queue (settings.CELERY_TASK_ROUTES).
"""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from annotation.stimuli import import_job_run

# Errors worth retrying: the database blinked, not a bug in the input. A retried
# import runs again; the files it had imported are reported skipped (same sha256).
TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


@shared_task(
    name="annotation.tasks.run_import",
    acks_late=True,
    ignore_result=True,
    autoretry_for=TRANSIENT,
    retry_backoff=True,
    max_retries=5,
)
def run_import(job_id: int) -> str:
    job = import_job_run(job_id=job_id)
    return job.status if job is not None else "missing"
