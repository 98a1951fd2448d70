"""The GPU workers' side of model scoring: where JOINT (or a baseline) runs.

Flow: ``scoring_job_start`` records a job and the job layer sends ``score_job``
to the ``gpu`` queue; that task (:func:`job_plan_batches`) splits the study's
stimuli into batches and sends one ``score_batch`` each; a batch
(:func:`score_batch_run`) loads the model once per worker process
(:mod:`scoring.model_scoring.model_cache`), predicts, upserts one Prediction per
(model version, stimulus) and recounts the job's progress. Batches are
idempotent: a batch redelivered after a worker died skips the stimuli already
written and never duplicates a row; the job layer's tick sends ``score_job``
again for a running job that stalled (a task lost with a killed worker), which
plans only the stimuli still missing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from annotation.models import Stimulus
from scoring.model_scoring.services import job_stimuli
from scoring.models import Prediction, ScoringJob
from studyweb import jobs, storage


def job_plan_batches(*, job_id: int) -> list[list[int]]:
    """Mark the job running and return the stimulus ids to score, in batches."""
    job = ScoringJob.objects.select_related("model_version", "study").get(pk=job_id)
    if job.status not in ScoringJob.ACTIVE:
        return []
    ids = list(job_stimuli(job.study).order_by("pk").values_list("pk", flat=True))
    # Planned again when the job layer resends a stalled job: only what is missing.
    done = _already_scored(job, ids)
    ids = [i for i in ids if i not in done]
    jobs.job_mark_running(ScoringJob, job.pk, worker_host=socket.gethostname()[:200])
    job.refresh_progress()
    size = job.batch_size
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _already_scored(job: ScoringJob, ids: list[int]) -> set[int]:
    """The stimuli among ``ids`` that need no new prediction for this job: any
    prediction of the model version, or with ``force`` one written by this job."""
    predictions = Prediction.objects.filter(model_version=job.model_version, stimulus_id__in=ids)
    if job.force:
        predictions = predictions.filter(job=job)
    return set(predictions.values_list("stimulus_id", flat=True))


#: Images of one batch fetched at once from an object store: a request's latency,
#: not its bandwidth, is what a batch would otherwise wait for, image after image.
FETCH_THREADS = 8

_fetch_pool = None
_fetch_pool_pid = 0


def _fetch(stimulus: Stimulus) -> bytes:
    try:
        return storage.read_bytes(stimulus.image.name, storage=stimulus.image.storage)
    except storage.StoreUnavailable as exc:
        raise storage.StoreUnavailable(f"stimulus {stimulus.pk}: {exc}") from exc


@contextlib.contextmanager
def _image_inputs(stimuli: list[Stimulus]) -> Iterator[list[str]]:
    """Paths to the batch's images: the files themselves on a local or shared file
    system; from an object store, copies in a temporary folder for the batch, so the
    predictor's loader processes decode them in parallel exactly as files (handing
    it decoded images cost S3 runs 13 % of JOINT's throughput). A store that is
    away raises StoreUnavailable naming it; the batch task retries, then fails the
    job with that message. Nothing is written for a batch that failed."""
    global _fetch_pool, _fetch_pool_pid
    if not stimuli or storage.is_local(stimuli[0].image.storage):
        yield [s.image.path for s in stimuli]
        return
    from concurrent.futures import ThreadPoolExecutor

    # One pool per worker process, kept: a pool per batch would start threads (and
    # their connections) for every batch.
    if _fetch_pool is None or _fetch_pool_pid != os.getpid():
        _fetch_pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="stimulus-fetch")
        _fetch_pool_pid = os.getpid()
    with tempfile.TemporaryDirectory(prefix="stimuli-") as folder:
        paths = []
        for stimulus, data in zip(stimuli, _fetch_pool.map(_fetch, stimuli), strict=True):
            path = Path(folder) / f"{stimulus.pk}{PurePosixPath(stimulus.image.name).suffix}"
            path.write_bytes(data)
            paths.append(str(path))
        yield paths


def score_batch_run(*, job_id: int, stimulus_ids: Iterable[int]) -> int:
    """Predict one batch and upsert its predictions; returns how many were written."""
    from scoring.model_scoring.model_cache import child_processes_allowed, load_scorer

    job = ScoringJob.objects.select_related("model_version").get(pk=job_id)
    if job.status not in ScoringJob.ACTIVE:
        return 0  # cancelled or already finished: drop the batch
    ids = list(stimulus_ids)
    # A batch sent twice (redelivered, or its job resent after a stall) skips what is
    # written; it still recounts, so the job finishes even when nothing is left to do.
    done = _already_scored(job, ids)
    stimuli = list(Stimulus.objects.filter(pk__in=[i for i in ids if i not in done]).order_by("pk"))
    if not stimuli:
        job.refresh_progress()
        return 0
    scorer = load_scorer(job.model_version)
    with _image_inputs(stimuli) as images, child_processes_allowed():  # pool: daemonic
        results = scorer.predict(images, batch_size=job.batch_size)
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
    job.refresh_progress()
    return len(rows)


def job_fail(*, job_id: int, error: str, code: str = "error") -> None:
    jobs.job_mark_failed(ScoringJob, job_id, error=error, code=code)
