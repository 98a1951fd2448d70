"""The Celery app. Workers: `celery -A studyweb worker -Q default` (analyses,
exports) and `celery -A studyweb worker -Q gpu -c 1` (model scoring).

Every worker also runs the job layer's tick (studyweb.jobs.jobs_tick) when it is
ready and then every ``JOB_TICK_SECONDS``: jobs saved while the broker was down
are sent once it is back, and running jobs whose last piece of work landed late
are finished. No beat process is needed; the tick's claims make one send per job
however many workers tick.

The scoring workers' model cache, and the preprocessing pools its JOINT scorers
keep, follow the pool processes' life through worker signals connected in
scoring/tasks.py (studyweb does not import scoring: annotation imports studyweb).
"""

from __future__ import annotations

import logging
import os
import threading

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyweb.settings")

app = Celery("studyweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger("studyweb.jobs")
_stop = threading.Event()


@app.task(name="studyweb.ping")
def ping(value: str = "pong") -> dict:
    """Round trip through broker and worker; used by health checks and tests."""
    import socket

    return {"value": value, "host": socket.gethostname(), "pid": os.getpid()}


def _tick_forever(every: float) -> None:
    from django.db import close_old_connections, connection

    from studyweb.jobs import jobs_tick

    while True:
        try:
            close_old_connections()
            jobs_tick()
        except Exception:
            logger.exception("job tick failed; trying again in %s s", every)
        finally:
            connection.close()
        if _stop.wait(every):
            return


@worker_ready.connect
def _start_job_tick(sender=None, **kwargs) -> None:
    from django.conf import settings

    every = float(getattr(settings, "JOB_TICK_SECONDS", 10))
    if every <= 0:
        return
    _stop.clear()
    threading.Thread(target=_tick_forever, args=(every,), name="job-tick", daemon=True).start()


@worker_shutdown.connect
def _stop_job_tick(sender=None, **kwargs) -> None:
    _stop.set()
