"""Scoring jobs in-process (eager): baselines, JOINT with random weights, failures."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from scoring.model_scoring import model_cache as runtime
from scoring.model_scoring.services import (
    ScoringError,
    model_version_register,
    scoring_job_cancel,
    scoring_job_start,
)
from scoring.models import ModelVersion, Prediction, ScoringJob
from studyweb.errors import ServiceError
from tests.factories import StimulusFactory, StudyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    runtime.clear_cache()
    yield
    runtime.clear_cache()


@pytest.fixture
def study():
    study = StudyFactory(slug="score")
    for i in range(5):
        StimulusFactory(study=study, original_name=f"s{i}.png")
    StimulusFactory(study=study, role="gold", expected_low=0, expected_high=100)
    return study


@pytest.fixture
def sharpness():
    return model_version_register(name="sharpness", kind="baseline", baseline="sharpness")


def start(on_commit, **kw):
    with on_commit(execute=True):
        return scoring_job_start(**kw)


def test_baseline_job_scores_every_test_stimulus_once(
    study, sharpness, django_capture_on_commit_callbacks
):
    job, created = start(
        django_capture_on_commit_callbacks, model_version=sharpness, study=study, batch_size=2
    )
    job.refresh_from_db()
    assert created and job.status == "done" and (job.done, job.total) == (5, 5)
    assert Prediction.objects.filter(model_version=sharpness).count() == 5
    assert not Prediction.objects.filter(stimulus__role="gold").exists()
    again, created = start(django_capture_on_commit_callbacks, model_version=sharpness, study=study)
    assert not created and again.pk == job.pk  # finished: not recomputed
    forced, created = start(
        django_capture_on_commit_callbacks, model_version=sharpness, study=study, force=True
    )
    forced.refresh_from_db()
    assert created and forced.status == "done" and forced.done == 5
    assert Prediction.objects.filter(model_version=sharpness).count() == 5  # upserted


def test_joint_with_random_weights(study, tmp_path, django_capture_on_commit_callbacks):
    from scoring.joint import build_model, save_checkpoint

    ckpt = tmp_path / "random.pth"
    save_checkpoint(build_model(seed=0), ckpt)
    version = model_version_register(name="joint-random", kind="joint", checkpoint_path=str(ckpt))
    assert len(version.checkpoint_sha256) == 64
    job, _ = start(
        django_capture_on_commit_callbacks, model_version=version, study=study, batch_size=4
    )
    job.refresh_from_db()
    assert job.status == "done", job.error
    values = list(
        Prediction.objects.filter(model_version=version).values_list(
            "technical", "rationality", "naturalness", "artifact_map"
        )
    )
    assert len(values) == 5
    for t, r, n, artifact in values:
        assert n == pytest.approx(0.145 * t + 0.769 * r, abs=1e-4)
        assert artifact == "none"


def test_swapped_checkpoint_fails_the_job(study, tmp_path, django_capture_on_commit_callbacks):
    from scoring.joint import build_model, save_checkpoint

    ckpt = tmp_path / "a.pth"
    save_checkpoint(build_model(seed=1), ckpt)
    version = model_version_register(name="joint-a", kind="joint", checkpoint_path=str(ckpt))
    save_checkpoint(build_model(seed=2), ckpt)  # the file changes after registration
    with pytest.raises(Exception, match="sha256"):
        start(django_capture_on_commit_callbacks, model_version=version, study=study)
    job = ScoringJob.objects.get(model_version=version)
    assert job.status == "failed" and "refusing to score with other weights" in job.error
    assert not Prediction.objects.filter(model_version=version).exists()


def test_registration_errors(tmp_path):
    with pytest.raises(ScoringError, match="unknown baseline"):
        model_version_register(name="x", kind="baseline", baseline="beauty")
    with pytest.raises(ScoringError, match="not found"):
        model_version_register(name="y", kind="joint", checkpoint_path=str(tmp_path / "no.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ScoringError):
        model_version_register(name="z", kind="joint", checkpoint_path=str(tmp_path / "junk.pth"))
    with pytest.raises(ScoringError, match="unknown kind"):
        model_version_register(name="w", kind="onnx")
    # Options a GPU worker would only trip over in every batch are refused up front.
    bad_options = [
        ({"lfm_backend": "numba"}, "lfm_backend must be one of eager, compile"),
        ({"lfm_order": "sideways"}, "lfm_order must be one of"),
        ({"batch_size": 0}, "batch_size must be an integer of at least 1"),
        ({"batch_size": "16"}, "batch_size must be an integer"),
        ({"seed": True}, "seed must be an integer"),
        ({"artifact_model": 3}, "artifact_model must be a path"),
        ({"lfm_bakend": "compile"}, "unknown option"),
    ]
    for i, (options, message) in enumerate(bad_options):
        with pytest.raises(ScoringError, match=message):
            model_version_register(
                name=f"o{i}", kind="baseline", baseline="sharpness", options=options
            )
    assert ModelVersion.objects.count() == 0


def test_options_reach_the_predictor(tmp_path):
    from scoring.joint import build_model, save_checkpoint
    from scoring.model_scoring.model_cache import load_scorer

    ckpt = tmp_path / "random.pth"
    save_checkpoint(build_model(seed=0), ckpt)
    options = {"lfm_backend": "compile", "lfm_order": "after_resize", "batch_size": 3, "seed": 7}
    version = model_version_register(
        name="joint-opts", kind="joint", checkpoint_path=str(ckpt), options=options
    )
    predictor = load_scorer(version, device="cpu")
    assert (predictor.lfm_backend, predictor.lfm_order) == ("compile", "after_resize")
    assert (predictor.batch_size, predictor.seed) == (3, 7)


def test_cancel_and_join(study, sharpness):
    job, created = scoring_job_start(model_version=sharpness, study=study, enqueue=False)
    joined, created_again = scoring_job_start(model_version=sharpness, study=study, enqueue=False)
    assert created and not created_again and joined.pk == job.pk
    scoring_job_cancel(job=job)
    assert job.status == "cancelled"
    with pytest.raises(ServiceError, match="only queued or running"):
        scoring_job_cancel(job=job)
    from scoring.model_scoring.batches import score_batch_run

    assert score_batch_run(job_id=job.pk, stimulus_ids=[s.pk for s in study.stimuli.all()]) == 0


def test_score_study_command(study, sharpness, django_capture_on_commit_callbacks):
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("score_study", "score", "--model-version", "sharpness", stdout=out)
    assert "started: 5 images" in out.getvalue()
    with pytest.raises(CommandError, match="no model version"):
        call_command("score_study", "score", "--model-version", "nope", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no study"):
        call_command("score_study", "nope", "--model-version", "sharpness", stdout=io.StringIO())


def _running_job(study, version, batch_size=2):
    from scoring.model_scoring.batches import job_plan_batches

    job, _ = scoring_job_start(
        model_version=version, study=study, batch_size=batch_size, enqueue=False
    )
    return job, job_plan_batches(job_id=job.pk)


def test_a_job_whose_batch_was_lost_is_sent_again_after_the_stall(
    study, sharpness, settings, monkeypatch
):
    """A batch task lost with a killed worker: the recount alone leaves the job running;
    the tick sends the job's task again once it made no progress for the stall period,
    and only the missing stimuli are scored."""
    from scoring.model_scoring.batches import score_batch_run
    from studyweb import jobs

    monkeypatch.setattr(jobs, "_PROGRESS_SEEN", {})
    settings.JOB_STALL_SECONDS = 60
    job, batches = _running_job(study, sharpness)
    assert [len(b) for b in batches] == [2, 2, 1]
    score_batch_run(job_id=job.pk, stimulus_ids=batches[0])
    score_batch_run(job_id=job.pk, stimulus_ids=batches[2])  # batches[1] is lost
    written = dict(
        Prediction.objects.filter(model_version=sharpness).values_list("stimulus_id", "created_at")
    )
    assert jobs.jobs_settle_running() == 0
    assert jobs.jobs_resend_stalled(now=1000.0) == 0  # first sight: progress 3 of 5
    assert jobs.jobs_resend_stalled(now=1059.0) == 0  # not stalled long enough
    job.refresh_from_db()
    assert job.status == "running" and job.done == 3
    assert jobs.jobs_resend_stalled(now=1061.0) == 1  # eager: the resend runs in-process
    job.refresh_from_db()
    assert job.status == "done" and job.done == job.total == 5
    after = dict(
        Prediction.objects.filter(model_version=sharpness).values_list("stimulus_id", "created_at")
    )
    assert len(after) == 5 and set(batches[1]) == set(after) - set(written)
    assert all(after[i] == written[i] for i in written)  # not scored again
    assert jobs.jobs_resend_stalled(now=5000.0) == 0  # finished jobs are forgotten
    assert jobs._PROGRESS_SEEN == {}


def test_progress_restarts_the_stall_clock(study, sharpness, settings, monkeypatch):
    from scoring.model_scoring.batches import score_batch_run
    from studyweb import jobs

    monkeypatch.setattr(jobs, "_PROGRESS_SEEN", {})
    settings.JOB_STALL_SECONDS = 60
    job, batches = _running_job(study, sharpness)
    sent = []
    monkeypatch.setattr(jobs, "_publish", lambda j: sent.append(j.pk))
    assert jobs.jobs_resend_stalled(now=0.0) == 0
    score_batch_run(job_id=job.pk, stimulus_ids=batches[0])
    assert jobs.jobs_resend_stalled(now=61.0) == 0  # moved since last seen
    assert jobs.jobs_resend_stalled(now=120.0) == 0
    assert jobs.jobs_resend_stalled(now=122.0) == 1 and sent == [job.pk]
    assert jobs.jobs_resend_stalled(now=150.0) == 0  # one resend per stall period


def test_a_batch_sent_twice_skips_what_is_written_and_still_finishes(study, sharpness):
    from scoring.model_scoring.batches import score_batch_run

    job, batches = _running_job(study, sharpness, batch_size=5)
    assert score_batch_run(job_id=job.pk, stimulus_ids=batches[0]) == 5
    job.refresh_from_db()
    assert job.status == "done"
    ScoringJob.objects.filter(pk=job.pk).update(status="running")  # as if the count was lost
    assert score_batch_run(job_id=job.pk, stimulus_ids=batches[0]) == 0
    job.refresh_from_db()
    assert job.status == "done" and job.done == 5


def test_a_forced_job_planned_again_plans_only_what_it_has_not_written(study, sharpness):
    from scoring.model_scoring.batches import job_plan_batches, score_batch_run

    first, batches = _running_job(study, sharpness, batch_size=5)
    score_batch_run(job_id=first.pk, stimulus_ids=batches[0])
    forced, _ = scoring_job_start(
        model_version=sharpness, study=study, force=True, batch_size=2, enqueue=False
    )
    plan = job_plan_batches(job_id=forced.pk)
    assert sum(len(b) for b in plan) == 5  # force: everything, though all are predicted
    score_batch_run(job_id=forced.pk, stimulus_ids=plan[0])
    again = job_plan_batches(job_id=forced.pk)
    assert sorted(i for b in again for i in b) == sorted(i for b in plan[1:] for i in b)


def test_batch_size_is_bounded_alike_in_database_service_and_api(study, sharpness):
    """1..BATCH_SIZE_MAX: the database refuses what the admin or a script could write
    around the service; the service and the API name the same bounds."""
    from django.db import IntegrityError, transaction

    from scoring.model_scoring.api import ScoringJobSerializer
    from scoring.model_scoring.models import BATCH_SIZE_MAX

    job = ScoringJob.objects.create(model_version=sharpness, study=study, total=1)
    for bad in (0, BATCH_SIZE_MAX + 1):
        with pytest.raises(IntegrityError), transaction.atomic():
            ScoringJob.objects.filter(pk=job.pk).update(batch_size=bad)
        with pytest.raises(ServiceError) as err:
            scoring_job_start(model_version=sharpness, study=study, batch_size=bad)
        assert err.value.field == "batch_size"
    for good in (1, BATCH_SIZE_MAX):
        ScoringJob.objects.filter(pk=job.pk).update(batch_size=good)
    field = ScoringJobSerializer().fields["batch_size"]
    assert (field.min_value, field.max_value) == (1, BATCH_SIZE_MAX)


@pytest.mark.django_db(transaction=True)
def test_the_migration_brings_old_batch_sizes_within_the_bound():
    """Jobs written before the check (the admin took any positive integer) are clamped
    by the migration instead of failing it."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    target = ("scoring", "0006_scoring_job_batch_size")
    executor = MigrationExecutor(connection)
    before = executor.loader.graph.node_map[target].parents
    executor.migrate([p.key for p in before])
    old = MigrationExecutor(connection).loader.project_state([p.key for p in before]).apps
    owner = old.get_model("auth", "User").objects.create(username="old-owner")
    study = old.get_model("annotation", "Study").objects.create(
        slug="old", title="Old", owner=owner
    )
    version = old.get_model("scoring", "ModelVersion").objects.create(
        name="old-sharp", kind="baseline", baseline="sharpness"
    )
    Job = old.get_model("scoring", "ScoringJob")
    jobs = [
        Job.objects.create(model_version=version, study=study, batch_size=size, status=status)
        for size, status in ((0, "failed"), (5000, "done"), (64, "done"))
    ]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    sizes = [ScoringJob.objects.get(pk=j.pk).batch_size for j in jobs]
    assert sizes == [1, 1024, 64]
