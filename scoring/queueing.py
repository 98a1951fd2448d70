"""Sending work to Celery without losing it when the broker is down.

A job row is written first; sending it is a separate step. If Redis does not
take the task, the row is marked ``waiting_for_broker`` and sent again by
:func:`requeue_waiting` (called whenever jobs are listed or polled), so a
request made while the broker was down proceeds once it is back.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("scoring")


class BrokerUnavailable(RuntimeError):
    """The task broker (Redis) did not take the job; it is kept and sent again later."""


def send(task, model, job_id: int, what: str) -> None:
    """``task.delay(job_id)``, or mark the row as waiting and raise BrokerUnavailable."""
    from kombu.exceptions import OperationalError as BrokerError

    try:
        task.delay(job_id)
    except (BrokerError, ConnectionError, OSError) as exc:
        model.objects.filter(pk=job_id).update(waiting_for_broker=True)
        logger.warning("%s %s waits for the broker: %s", what, job_id, exc)
        raise BrokerUnavailable(
            f"{what} {job_id} is saved but the task broker is unreachable ({exc}); it will be "
            "sent as soon as the broker is back"
        ) from exc
    model.objects.filter(pk=job_id, waiting_for_broker=True).update(waiting_for_broker=False)


def requeue_waiting(task, model, what: str) -> int:
    """Send again the rows that could not be queued; returns how many went through."""
    sent = 0
    for job_id in model.objects.filter(waiting_for_broker=True, status="queued").values_list(
        "pk", flat=True
    ):
        try:
            send(task, model, job_id, what)
        except BrokerUnavailable:
            break  # still down: try again at the next call
        sent += 1
    return sent
