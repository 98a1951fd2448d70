"""Model scoring with MEDIA_STORAGE=s3 against a real S3 server (SeaweedFS): the
checkpoint registered by an admin goes to the store and a worker whose MEDIA_ROOT
is empty loads it by its key, sha256 verified; stimuli are read through the store;
the store taken away mid-scoring fails the job saying why, and running it again
once the store is back finishes what is missing."""

from __future__ import annotations

import pytest
from celery.exceptions import Retry

from scoring import tasks
from scoring.model_scoring import model_cache as runtime
from scoring.model_scoring.services import model_version_register, scoring_job_start
from scoring.models import Prediction, ScoringJob
from studyweb.storage import StoreUnavailable
from tests.factories import StimulusFactory, StudyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    runtime.clear_cache()
    yield
    runtime.clear_cache()


@pytest.fixture
def study(s3_media):
    study = StudyFactory(slug="s3score")
    for i in range(5):
        StimulusFactory(study=study, original_name=f"s{i}.png")
    return study


@pytest.fixture
def worker_machine(settings, tmp_path):
    """What a GPU worker on another machine has: an empty MEDIA_ROOT and its own
    checkpoint cache."""
    settings.MEDIA_ROOT = tmp_path / "worker-media"
    settings.MODEL_CACHE_DIR = tmp_path / "worker-model-cache"
    return settings.MODEL_CACHE_DIR


def start(on_commit, **kw):
    with on_commit(execute=True):
        return scoring_job_start(**kw)


def test_stimuli_live_in_the_store(study, s3_media):
    names = {s.image.name for s in study.stimuli.all()}
    assert names and set(s3_media.keys("stimuli/")) == names


def test_a_checkpoint_is_registered_into_the_store_and_loaded_by_its_key(
    study, s3_media, tmp_path, worker_machine, django_capture_on_commit_callbacks
):
    from scoring.joint import build_model, save_checkpoint

    ckpt = tmp_path / "admin-laptop" / "random.pth"
    ckpt.parent.mkdir()
    save_checkpoint(build_model(seed=0), ckpt)
    version = model_version_register(name="joint-s3", kind="joint", checkpoint_path=str(ckpt))
    key = f"checkpoints/{version.checkpoint_sha256}.pth"
    assert version.checkpoint_path == f"storage:{key}"
    assert s3_media.keys("checkpoints/") == [key]
    ckpt.unlink()  # the worker cannot see the admin's file anyway
    job, _ = start(
        django_capture_on_commit_callbacks, model_version=version, study=study, batch_size=4
    )
    job.refresh_from_db()
    assert job.status == "done", job.error
    assert Prediction.objects.filter(model_version=version).count() == 5
    cached = list(worker_machine.iterdir())
    assert [p.name for p in cached] == [f"{version.checkpoint_sha256}.pth"]
    assert not (tmp_path / "worker-media").exists()  # nothing read or written locally


def test_a_checkpoint_swapped_in_the_store_is_refused(
    study, s3_media, tmp_path, worker_machine, django_capture_on_commit_callbacks
):
    from scoring.joint import build_model, save_checkpoint

    ckpt = tmp_path / "a.pth"
    save_checkpoint(build_model(seed=1), ckpt)
    version = model_version_register(name="joint-a", kind="joint", checkpoint_path=str(ckpt))
    save_checkpoint(build_model(seed=2), ckpt)
    key = version.checkpoint_path.removeprefix("storage:")
    s3_media.server.client().put_object(
        Bucket=s3_media.bucket, Key=f"{s3_media.prefix}/{key}", Body=ckpt.read_bytes()
    )
    with pytest.raises(Exception, match="sha256"):
        start(django_capture_on_commit_callbacks, model_version=version, study=study)
    job = ScoringJob.objects.get(model_version=version)
    assert job.status == "failed" and "refusing to score with other weights" in job.error
    assert not Prediction.objects.filter(model_version=version).exists()
    assert not any(worker_machine.glob("*.pth"))  # a copy that does not match is not kept


def test_a_checkpoint_named_by_its_key(study, s3_media, tmp_path):
    """An admin who put the file in the bucket registers it as storage:KEY."""
    from scoring.joint import build_model, save_checkpoint

    ckpt = tmp_path / "b.pth"
    save_checkpoint(build_model(seed=3), ckpt)
    s3_media.server.client().put_object(
        Bucket=s3_media.bucket, Key=f"{s3_media.prefix}/models/b.pth", Body=ckpt.read_bytes()
    )
    version = model_version_register(
        name="joint-b", kind="joint", checkpoint_path="storage:models/b.pth"
    )
    assert version.checkpoint_path == "storage:models/b.pth"
    assert s3_media.keys("checkpoints/") == []  # not copied again
    from scoring.model_scoring.model_cache import file_sha256

    assert version.checkpoint_sha256 == file_sha256(ckpt)


def test_the_store_stopped_mid_scoring(
    study, s3_media, worker_machine, django_capture_on_commit_callbacks
):
    """A batch that cannot read its images is retried (as the job layer retries) and,
    retries spent, fails the job with the store's name; nothing of it is written."""
    from scoring.model_scoring.batches import job_plan_batches, score_batch_run

    sharpness = model_version_register(name="sharp", kind="baseline", baseline="sharpness")
    job, _ = scoring_job_start(model_version=sharpness, study=study, batch_size=2, enqueue=False)
    first, second, *_ = job_plan_batches(job_id=job.pk)
    assert score_batch_run(job_id=job.pk, stimulus_ids=first) == 2
    server = s3_media.server
    server.stop()
    try:
        # The first failure does not fail the job: the task is retried.
        with pytest.raises((Retry, StoreUnavailable)):
            tasks.score_batch.apply(args=(job.pk, second))
        job.refresh_from_db()
        assert job.status == "running"
        with pytest.raises(StoreUnavailable):  # its retries spent
            tasks.score_batch.apply(args=(job.pk, second), retries=2)
        job.refresh_from_db()
        assert job.status == "failed"
        assert "StoreUnavailable" in job.error and "AWS_S3_ENDPOINT_URL" in job.error
        assert Prediction.objects.filter(model_version=sharpness).count() == 2
    finally:
        server.start()
    again, created = start(django_capture_on_commit_callbacks, model_version=sharpness, study=study)
    again.refresh_from_db()
    assert created and again.status == "done", again.error
    assert Prediction.objects.filter(model_version=sharpness).count() == 5
