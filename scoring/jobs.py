"""Model scoring: register model versions, start scoring jobs, and the worker's
batch step that writes predictions.

Flow: ``scoring_job_start`` records a job and enqueues ``score_job`` on the
``gpu`` queue; that task splits the study's stimuli into batches and enqueues
one ``score_batch`` each; a batch loads the model once per worker process
(scoring.runtime), predicts, upserts one Prediction per (model version,
stimulus) and recounts the job's progress. Batches are idempotent: a batch
redelivered after a worker died writes the same rows again, never duplicates.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from annotation.models import Stimulus, Study
from scoring import queueing
from scoring.models import ModelVersion, Prediction, ScoringJob
from scoring.queueing import BrokerUnavailable

__all__ = ["BrokerUnavailable", "ScoringError"]  # BrokerUnavailable is re-exported

logger = logging.getLogger("scoring")


class ScoringError(ValueError):
    """A request that cannot be honoured (bad model version, nothing to score...)."""


# --- Model versions -------------------------------------------------------------


def model_version_register(
    *,
    name: str,
    kind: str,
    checkpoint_path: str = "",
    baseline: str = "",
    fusion_w_t: float | None = None,
    fusion_w_r: float | None = None,
    options: dict | None = None,
    description: str = "",
    user=None,
) -> ModelVersion:
    """Check and record a model version; the checkpoint's sha256 is taken now."""
    from scoring import joint
    from scoring.runtime import file_sha256

    if ModelVersion.objects.filter(name=name).exists():
        raise ScoringError(f"a model version named {name!r} exists already")
    fields: dict = {
        "name": name,
        "kind": kind,
        "options": _checked_options(options or {}),
        "description": description,
        "created_by": user,
    }
    if kind == ModelVersion.Kind.BASELINE:
        if baseline not in joint.BASELINES:
            raise ScoringError(
                f"unknown baseline {baseline!r}; use one of {', '.join(joint.BASELINES)}"
            )
        fields["baseline"] = baseline
    elif kind in (ModelVersion.Kind.JOINT, ModelVersion.Kind.TORCHSCRIPT):
        try:
            path = Path(checkpoint_path).expanduser()
            found = path.is_file()
        except (OSError, ValueError) as exc:  # a name too long, a NUL byte...
            raise ScoringError(f"checkpoint path is not usable: {exc}") from None
        if not found:
            raise ScoringError(f"checkpoint {path} not found")
        if kind == ModelVersion.Kind.JOINT:
            try:
                joint.model.check_state_dict(
                    joint.model.load_state_dict_file(path), source=str(path)
                )
            except joint.CheckpointError as exc:
                raise ScoringError(str(exc)) from None
        fields["checkpoint_path"] = str(path.resolve())
        fields["checkpoint_sha256"] = file_sha256(path)
        fusion_file = joint.model.fusion_path(path)
        if fusion_w_t is None and fusion_file.exists():
            # A fine-tuned checkpoint carries its own fitted fusion weights.
            fusion = joint.model._read_fusion(fusion_file)
            fusion_w_t, fusion_w_r = fusion.w_t, fusion.w_r
    else:
        raise ScoringError(f"unknown kind {kind!r}; use joint, baseline or torchscript")
    if fusion_w_t is not None:
        fields["fusion_w_t"] = fusion_w_t
    if fusion_w_r is not None:
        fields["fusion_w_r"] = fusion_w_r
    return ModelVersion.objects.create(**fields)


# What a GPU worker reads from a version's options (scoring.runtime.load_scorer),
# checked at registration so that a typo fails here, not in every batch of a job.
_OPTION_CHOICES = {
    "lfm_order": ("before_resize", "after_resize"),
    "lfm_backend": ("eager", "compile"),
}


def _checked_options(options: dict) -> dict:
    if not isinstance(options, dict):
        raise ScoringError("options must be an object")
    known = {"artifact_model", "batch_size", "seed", *_OPTION_CHOICES}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ScoringError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    for key, choices in _OPTION_CHOICES.items():
        if key in options and options[key] not in choices:
            raise ScoringError(f"option {key} must be one of {', '.join(choices)}")
    for key, low in (("batch_size", 1), ("seed", 0)):
        value = options.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < low
        ):
            raise ScoringError(f"option {key} must be an integer of at least {low}")
    artifact = options.get("artifact_model")
    if artifact is not None and not isinstance(artifact, str):
        raise ScoringError("option artifact_model must be a path")
    return options


# --- Jobs -----------------------------------------------------------------------


def _job_stimuli(study: Study):
    # Test stimuli are what MOS exists for; imported datasets hold only test items.
    return Stimulus.objects.filter(study=study, role=Stimulus.Role.TEST)


def scoring_job_start(
    *,
    model_version: ModelVersion,
    study: Study,
    force: bool = False,
    batch_size: int = 16,
    user=None,
    enqueue: bool = True,
) -> tuple[ScoringJob, bool]:
    """Start (or join) a scoring job. Returns (job, created).

    A live job for the same model version and study is joined; a finished one
    that covers every stimulus is returned as is unless ``force``.
    """
    if batch_size < 1 or batch_size > 1024:
        raise ScoringError("batch_size must be between 1 and 1024")
    total = _job_stimuli(study).count()
    if total == 0:
        raise ScoringError(f"study {study.slug!r} has no test stimuli to score")
    with transaction.atomic():
        live = (
            ScoringJob.objects.select_for_update()
            .filter(model_version=model_version, study=study, status__in=ScoringJob.ACTIVE)
            .first()
        )
        if live is not None:
            return live, False
        if not force:
            finished = (
                ScoringJob.objects.filter(
                    model_version=model_version, study=study, status=ScoringJob.Status.DONE
                )
                .order_by("-finished_at")
                .first()
            )
            covered = Prediction.objects.filter(
                model_version=model_version, stimulus__in=_job_stimuli(study)
            ).count()
            if finished is not None and covered >= total:
                return finished, False
        job = ScoringJob.objects.create(
            model_version=model_version,
            study=study,
            total=total,
            force=force,
            batch_size=batch_size,
            created_by=user,
        )
    if enqueue:
        job_enqueue(job)
    return job, True


def job_enqueue(job: ScoringJob) -> None:
    """Send the job to the ``gpu`` queue once the transaction commits.

    If the broker is down the job is kept, marked as waiting, and
    :func:`jobs_requeue_waiting` sends it again (the dashboard's progress poll
    and ``score_study`` call it), so nothing is lost.
    """
    transaction.on_commit(lambda: _send(job.pk))


def _send(job_id: int) -> None:
    from scoring.tasks import score_job

    queueing.send(score_job, ScoringJob, job_id, "job")


def jobs_requeue_waiting() -> int:
    """Send again the jobs that could not be queued; returns how many went through."""
    from scoring.tasks import score_job

    return queueing.requeue_waiting(score_job, ScoringJob, "job")


def scoring_job_cancel(*, job: ScoringJob) -> ScoringJob:
    updated = ScoringJob.objects.filter(pk=job.pk, status__in=ScoringJob.ACTIVE).update(
        status=ScoringJob.Status.CANCELLED, finished_at=timezone.now()
    )
    job.refresh_from_db()
    if not updated:
        raise ScoringError(f"job {job.pk} is {job.status}; only queued or running jobs stop")
    return job


def job_plan_batches(*, job_id: int) -> list[list[int]]:
    """Mark the job running and return the stimulus ids to score, in batches."""
    job = ScoringJob.objects.select_related("model_version", "study").get(pk=job_id)
    if job.status not in ScoringJob.ACTIVE:
        return []
    ids = list(_job_stimuli(job.study).order_by("pk").values_list("pk", flat=True))
    if not job.force:
        done = set(
            Prediction.objects.filter(
                model_version=job.model_version, stimulus_id__in=ids
            ).values_list("stimulus_id", flat=True)
        )
        ids = [i for i in ids if i not in done]
    ScoringJob.objects.filter(pk=job.pk, status=ScoringJob.Status.QUEUED).update(
        status=ScoringJob.Status.RUNNING,
        started_at=timezone.now(),
        worker_host=socket.gethostname()[:200],
    )
    job_update_progress(job_id=job.pk)
    size = job.batch_size
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _image_input(stimulus: Stimulus):
    try:
        return stimulus.image.path  # local or shared file system: workers read the file
    except NotImplementedError:
        from PIL import Image

        with stimulus.image.open("rb") as handle:  # object storage
            image = Image.open(handle)
            image.load()
        return image


def score_batch_run(*, job_id: int, stimulus_ids: Iterable[int]) -> int:
    """Predict one batch and upsert its predictions; returns how many were written."""
    from scoring.runtime import child_processes_allowed, load_scorer

    job = ScoringJob.objects.select_related("model_version").get(pk=job_id)
    if job.status not in ScoringJob.ACTIVE:
        return 0  # cancelled or already finished: drop the batch
    stimuli = list(Stimulus.objects.filter(pk__in=list(stimulus_ids)).order_by("pk"))
    if not stimuli:
        return 0
    scorer = load_scorer(job.model_version)
    with child_processes_allowed():  # a Celery pool process is daemonic
        results = scorer.predict([_image_input(s) for s in stimuli], batch_size=job.batch_size)
    rows = [
        Prediction(
            model_version=job.model_version,
            stimulus=s,
            technical=r.technical,
            rationality=r.rationality,
            naturalness=r.naturalness,
            artifact_map=str(r.artifact_map)[:200],
            job=job,
        )
        for s, r in zip(stimuli, results, strict=True)
    ]
    Prediction.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["model_version", "stimulus"],
        update_fields=[
            "technical",
            "rationality",
            "naturalness",
            "artifact_map",
            "job",
            "created_at",
        ],
    )
    job_update_progress(job_id=job.pk)
    return len(rows)


def job_update_progress(*, job_id: int) -> ScoringJob:
    """Recount ``done`` from the predictions themselves (exact after redeliveries);
    finish the job when every stimulus has its prediction."""
    job = ScoringJob.objects.select_related("study").get(pk=job_id)
    stimuli = _job_stimuli(job.study)
    predictions = Prediction.objects.filter(
        model_version_id=job.model_version_id, stimulus__in=stimuli
    )
    if job.force:
        predictions = predictions.filter(job=job)
    done = min(predictions.count(), job.total)
    ScoringJob.objects.filter(pk=job.pk).update(done=done)
    if done >= job.total:
        ScoringJob.objects.filter(pk=job.pk, status__in=ScoringJob.ACTIVE).update(
            status=ScoringJob.Status.DONE, finished_at=timezone.now()
        )
    job.refresh_from_db()
    return job


def job_fail(*, job_id: int, error: str) -> None:
    ScoringJob.objects.filter(pk=job_id, status__in=ScoringJob.ACTIVE).update(
        status=ScoringJob.Status.FAILED, error=error[:4000], finished_at=timezone.now()
    )
