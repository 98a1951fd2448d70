"""Celery tasks: ids in, a service call, nothing more."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="scoring.tasks.run_analysis", acks_late=True)
def run_analysis(analysis_id: int) -> str:
    from scoring.services import analysis_run

    return analysis_run(analysis_id=analysis_id).status
