"""A real broker outage: our own redis-server, a real web server (gunicorn) and a
real worker pointed at it. With Redis stopped every job kind is asked for through
the API and the management commands: a JSON 503 naming the job within 2 s, the
job kept waiting. Redis back: every job is sent once and finishes on the worker;
nothing stays blocked."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings
from rest_framework.authtoken.models import Token

from scoring.model_scoring.services import model_version_register
from scoring.models import Analysis, ExportJob, Prediction, ScoringJob
from tests.celery_worker import ROOT, celery_worker, wait_for, worker_env
from tests.factories import StimulusFactory, StudyFactory, raters_rate_everything
from tests.servers import free_port, stop, web_server

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]

SCORES = {"overall": 61, "technical": 52, "rationality": 73}


class RedisServer:
    """A private redis-server that the test can stop and start again on one port."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        self.dir = tmp
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._accepts, timeout=20, interval=0.05)

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        wait_for(lambda: not self._accepts(), timeout=10, interval=0.05)


@pytest.fixture
def redis_server(tmp_path):
    if not (shutil.which("redis-server") or Path("/usr/bin/redis-server").exists()):
        pytest.fail("redis-server is needed for the broker outage test (Debian: redis-server)")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def _rated_study(owner):
    study = StudyFactory(slug="outage", owner=owner, status="open")
    StimulusFactory.create_batch(3, study=study)
    raters_rate_everything(
        study, 2, lambda i, sid: {k: v - 9 * i + 5 * (sid % 3) for k, v in SCORES.items()}
    )
    return study


@pytest.mark.django_db(transaction=True)
def test_jobs_wait_through_a_real_broker_outage_and_run_once(
    redis_server, researcher_a, monkeypatch, tmp_path
):
    _rated_study(researcher_a)
    model_version_register(name="sharp", kind="baseline", baseline="sharpness")
    token = Token.objects.create(user=researcher_a).key

    monkeypatch.setattr(settings, "CELERY_BROKER_URL", redis_server.url)
    env = worker_env()
    env.update(CELERY_BROKER_URL=redis_server.url, JOB_TICK_SECONDS="1")
    web_port = free_port()
    web_log = tmp_path / "web.log"
    web = web_server(env, web_port, web_log)
    base = f"http://127.0.0.1:{web_port}"
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token}"
    worker_log = Path(settings.MEDIA_ROOT).parent / "worker-outage.log"
    worker_log.unlink(missing_ok=True)
    try:
        wait_for(lambda: _up(f"{base}/healthz"), timeout=60)
        with celery_worker(queues="default,gpu", name="outage", env=env):
            redis_server.stop()
            answers = {}
            for kind, path, body in [
                ("analysis", "/api/v1/analyses/", {"study": "outage", "method": "bt500"}),
                ("export", "/api/v1/exports/", {"study": "outage", "format": "ratings-csv"}),
                (
                    "scoring job",
                    "/api/v1/scoring-jobs/",
                    {"study": "outage", "model_version": "sharp"},
                ),
                (
                    "scoring job",
                    "/api/v1/scoring-jobs/",
                    {"study": "outage", "model_version": "sharp"},
                ),
            ]:
                started = time.monotonic()
                response = api.post(base + path, json=body, timeout=30)
                took = time.monotonic() - started
                assert response.status_code == 503, (path, response.status_code, response.text)
                assert response.headers["Content-Type"].startswith("application/json")
                assert took < 2.0, f"{path} took {took:.2f} s with the broker down"
                data = response.json()
                assert data["error"] == "broker_unavailable"
                assert data["job"]["kind"] == kind
                assert f"{kind} {data['job']['id']}" in data["detail"]
                answers.setdefault(kind, []).append(data["job"]["id"])
            # A second request for the same scoring job joined it: one row.
            assert len(set(answers["scoring job"])) == 1
            assert ScoringJob.objects.count() == 1

            # The management commands: exit 75 (EX_TEMPFAIL) naming the waiting job.
            for argv, noun in [
                (["run_analysis", "outage", "--method", "mean", "--queue"], "analysis"),
                (["score_study", "outage", "--model-version", "sharp"], "scoring job"),
            ]:
                done = subprocess.run(
                    [sys.executable, "manage.py", *argv],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert done.returncode == 75, done.stdout + done.stderr
                assert noun in done.stderr and "waits for the task broker" in done.stderr
            assert ScoringJob.objects.count() == 1
            for model in (Analysis, ExportJob, ScoringJob):
                assert all(
                    j.status == "queued" and j.waiting_for_broker for j in model.objects.all()
                ), model

            redis_server.start()  # the broker is back; the worker reconnects and ticks

            def all_done():
                jobs = [
                    *Analysis.objects.all(),
                    *ExportJob.objects.all(),
                    *ScoringJob.objects.all(),
                ]
                return all(j.status == "done" for j in jobs) and jobs

            jobs = wait_for(all_done, timeout=120, interval=0.5)
        assert len(jobs) == 4  # two analyses, one export, one scoring job
        assert all(not j.waiting_for_broker for j in jobs)
        assert Prediction.objects.count() == 3
        log = worker_log.read_text()
        for job in jobs:
            assert log.count(f"{job.label} sent to the broker") == 1, job.label
        # Nothing stays blocked: a new request for the same pair is answered at once.
        again = api.post(
            base + "/api/v1/scoring-jobs/",
            json={"study": "outage", "model_version": "sharp"},
            timeout=30,
        )
        assert again.status_code == 200 and again.json()["status"] == "done"
    finally:
        stop(web)


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:
        return False
