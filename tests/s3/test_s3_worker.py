"""The multi-machine set-up for real, with MEDIA_STORAGE=s3 against SeaweedFS: the demo
seeded into the store, and a real Celery worker (its own process, an empty MEDIA_ROOT
and its own checkpoint cache, as a GPU machine has) scoring the study with a JOINT
checkpoint an admin registered into the store."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from annotation.models import Stimulus, Study
from scoring.model_scoring.services import model_version_register, scoring_job_start
from scoring.models import Prediction, ScoringJob
from tests.celery_worker import broker_mode, celery_worker, wait_for, worker_env
from tests.s3.conftest import s3_environ
from tests.test_celery_worker import broker  # noqa: F401 - the fixture

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def test_the_demo_is_seeded_into_the_store(s3_media):
    out = io.StringIO()
    call_command("seed_demo", "--simulate-raters", "2", stdout=out)
    study = Study.objects.get(slug="demo")
    names = set(Stimulus.objects.filter(study=study).values_list("image", flat=True))
    assert len(names) == 68
    assert names <= set(s3_media.keys("stimuli/"))


def test_a_real_worker_with_an_empty_media_root_scores_from_the_store(
    s3_media,
    broker,  # noqa: F811 - the fixture imported above
    tmp_path,
):
    from scoring.joint import build_model, save_checkpoint
    from tests.factories import StimulusFactory, StudyFactory

    study = StudyFactory(slug="s3worker")
    for i in range(4):
        StimulusFactory(study=study, original_name=f"w{i}.png")
    ckpt = tmp_path / "admin" / "random.pth"
    ckpt.parent.mkdir()
    save_checkpoint(build_model(seed=0), ckpt)
    version = model_version_register(
        name="joint-s3-worker", kind="joint", checkpoint_path=str(ckpt)
    )
    ckpt.unlink()  # only the store has it now

    media_root = tmp_path / "worker-media"
    media_root.mkdir()
    cache = tmp_path / "worker-model-cache"
    env = worker_env()
    env.update(
        s3_environ(s3_media.server, s3_media.bucket, AWS_LOCATION=s3_media.prefix),
        MEDIA_ROOT=str(media_root),
        MODEL_CACHE_DIR=str(cache),
    )
    with broker_mode(), celery_worker(queues="gpu", name="s3-worker", env=env):
        job, _ = scoring_job_start(model_version=version, study=study, batch_size=2)
        done = wait_for(
            lambda: ScoringJob.objects.filter(pk=job.pk, status__in=["done", "failed"]).first(),
            timeout=180,
        )
    assert done.status == "done", done.error
    assert Prediction.objects.filter(model_version=version).count() == 4
    assert [p.name for p in cache.iterdir()] == [f"{version.checkpoint_sha256}.pth"]
    assert not any(media_root.iterdir())  # nothing read from or written to local media
