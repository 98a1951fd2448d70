"""Start a real Celery worker process against the test broker (Redis).

Used by the tests that exist to prove the broker and the worker; every other
test runs tasks eagerly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def broker_mode():
    """Send tasks through the broker instead of running them in-process."""
    from studyweb.celery import app

    # With namespace="CELERY" the namespaced key is the one Celery reads back.
    previous = app.conf.task_always_eager
    app.conf.CELERY_TASK_ALWAYS_EAGER = False
    try:
        yield app
    finally:
        app.conf.CELERY_TASK_ALWAYS_EAGER = previous


def worker_env() -> dict:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="studyweb.test_settings",
        DATABASE_URL=url,  # the test database, so the worker sees committed test rows
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        PYTHONUNBUFFERED="1",
        # A task whose worker died comes back after this many seconds (default 1 h).
        CELERY_VISIBILITY_TIMEOUT="6",
        CELERY_RESTORE_SWEEP_SECONDS="2",
        CELERY_EAGER="0",  # tasks the worker enqueues go through the broker too
    )
    return env


@contextlib.contextmanager
def celery_worker(
    queues: str = "default,gpu", *, concurrency: int = 1, name: str = "w1", env: dict | None = None
):
    """A worker subprocess; yields the Popen. Stopped (and reaped) on exit."""
    log = open(Path(settings.MEDIA_ROOT).parent / f"worker-{name}.log", "a")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "studyweb",
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "INFO",
        ],
        cwd=ROOT,
        env=env or worker_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()


def wait_for(predicate, timeout: float = 60, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout} s")
