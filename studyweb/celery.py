"""The Celery app. Workers: `celery -A studyweb worker -Q default` (analyses,
exports) and `celery -A studyweb worker -Q gpu -c 1` (model scoring)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyweb.settings")

app = Celery("studyweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="studyweb.ping")
def ping(value: str = "pong") -> dict:
    """Round trip through broker and worker; used by health checks and tests."""
    import socket

    return {"value": value, "host": socket.gethostname(), "pid": os.getpid()}
