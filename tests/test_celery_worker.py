"""A real Celery worker process, started by the test, through real Redis (not eager)."""

from __future__ import annotations

import os

import pytest
import redis
from django.conf import settings

from studyweb.celery import ping
from tests.celery_worker import broker_mode, celery_worker

pytestmark = pytest.mark.celery_worker


@pytest.fixture
def broker():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {settings.CELERY_BROKER_URL}: {exc}")
    client.flushdb()  # a private test database (redis db 15 by default)
    return client


def test_task_runs_in_a_separate_worker_process(broker):
    with broker_mode(), celery_worker(queues="default") as worker:
        result = ping.apply_async(kwargs={"value": "hello"}, queue="default")
        reply = result.get(timeout=90)
        assert worker.poll() is None
    assert reply["value"] == "hello"
    assert reply["pid"] != os.getpid()  # it really ran elsewhere


def test_scoring_tasks_route_to_the_gpu_queue():
    from studyweb.celery import app

    router = app.amqp.router
    assert router.route({}, "scoring.tasks.score_batch")["queue"].name == "gpu"
    assert router.route({}, "scoring.tasks.run_analysis")["queue"].name == "default"


@pytest.mark.django_db(transaction=True)
def test_analysis_runs_on_a_real_worker(broker):
    """An analysis queued on `default` is computed by the worker and stored in PostgreSQL."""
    from scoring.analyses.services import analysis_create
    from scoring.models import Analysis
    from tests.celery_worker import wait_for
    from tests.factories import rated_study

    study = rated_study(n_raters=6)
    with broker_mode(), celery_worker(queues="default", name="analysis"):
        analysis = analysis_create(study=study, method="p910")  # on_commit: autocommit here
        done = wait_for(
            lambda: Analysis.objects.filter(pk=analysis.pk, status__in=["done", "failed"]).first(),
            timeout=120,
        )
    assert done.status == "done", done.error
    assert done.stimulus_results.filter(dimension="overall").count() == done.n_stimuli > 0


@pytest.mark.django_db(transaction=True)
def test_scoring_job_survives_a_killed_worker(broker):
    """SIGKILL the worker mid-job, start another: exactly one prediction per stimulus."""
    import signal

    from scoring.model_scoring.services import model_version_register, scoring_job_start
    from scoring.models import Prediction, ScoringJob
    from tests.celery_worker import wait_for
    from tests.factories import StimulusFactory, StudyFactory

    study = StudyFactory(slug="kill")
    StimulusFactory.create_batch(60, study=study)
    version = model_version_register(name="contrast", kind="baseline", baseline="contrast")
    with broker_mode():
        with celery_worker(queues="gpu", name="victim") as victim:
            job, _ = scoring_job_start(model_version=version, study=study, batch_size=2)
            wait_for(
                lambda: ScoringJob.objects.get(pk=job.pk).done >= 20, timeout=120, interval=0.05
            )
            os.killpg(victim.pid, signal.SIGKILL)  # the whole worker, mid-batch
            victim.wait(timeout=10)
        partial = ScoringJob.objects.get(pk=job.pk)
        assert partial.status == "running" and partial.done < partial.total
        with celery_worker(queues="gpu", name="rescuer"):
            finished = wait_for(
                lambda: ScoringJob.objects.filter(pk=job.pk, status="done").first(),
                timeout=180,
            )
    assert finished.done == finished.total == 60
    counts = Prediction.objects.filter(model_version=version).values_list("stimulus_id", flat=True)
    assert len(counts) == 60 and len(set(counts)) == 60


def _session(sid: int) -> dict[int, int]:
    """The live processes of a session: pid -> parent pid (zombies left out)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            out[int(entry)] = int(fields[1])
    return out


@pytest.mark.django_db(transaction=True)
def test_joint_job_on_a_real_prefork_worker(broker, tmp_path):
    """JOINT batches run inside Celery's daemonic pool process, whose preprocessing
    workers outlive one batch; they die with a killed pool process, and a stopped
    worker leaves no process behind."""
    import signal
    import time

    from scoring.joint import build_model, save_checkpoint
    from scoring.model_scoring.services import model_version_register, scoring_job_start
    from scoring.models import Prediction, ScoringJob
    from tests.celery_worker import wait_for
    from tests.factories import StimulusFactory, StudyFactory

    study = StudyFactory(slug="joint-worker")
    StimulusFactory.create_batch(8, study=study)
    ckpt = tmp_path / "random.pth"
    save_checkpoint(build_model(seed=3), ckpt)
    version = model_version_register(name="joint-rand", kind="joint", checkpoint_path=str(ckpt))
    with broker_mode(), celery_worker(queues="gpu", name="joint") as worker:
        job, _ = scoring_job_start(model_version=version, study=study, batch_size=4)  # 2 calls
        finished = wait_for(
            lambda: ScoringJob.objects.filter(pk=job.pk, status__in=["done", "failed"]).first(),
            timeout=240,
        )
        assert finished.status == "done", finished.error
        procs = _session(worker.pid)
        pool = [pid for pid, parent in procs.items() if parent == worker.pid]
        assert len(pool) == 1, procs  # -c 1: one pool process
        prep = [pid for pid, parent in procs.items() if parent == pool[0]]
        if (os.cpu_count() or 1) >= 2:  # with one core the predictor runs without workers
            assert len(prep) == 2, procs  # still there after the last batch
        os.kill(pool[0], signal.SIGKILL)
        deadline = time.monotonic() + 2  # they die with it, not at their 5 s check
        while time.monotonic() < deadline and set(prep) & set(_session(worker.pid)):
            time.sleep(0.05)
        assert not set(prep) & set(_session(worker.pid))
    assert _session(worker.pid) == {}  # the stopped worker left nothing behind
    values = Prediction.objects.filter(model_version=version).values_list("naturalness", flat=True)
    assert len(values) == 8 and all(v is not None for v in values)
