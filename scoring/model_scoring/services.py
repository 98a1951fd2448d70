"""Model scoring: register model versions, start scoring jobs, and the worker's
batch step that writes predictions.

Flow: ``scoring_job_start`` records a job and enqueues ``score_job`` on the
``gpu`` queue; that task splits the study's stimuli into batches and enqueues
one ``score_batch`` each; a batch loads the model once per worker process
(scoring.model_scoring.model_cache), predicts, upserts one Prediction per (model version,
stimulus) and recounts the job's progress. Batches are idempotent: a batch
redelivered after a worker died writes the same rows again, never duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction

from annotation.models import Stimulus, Study
from scoring.model_scoring.models import BATCH_SIZE_MAX
from scoring.models import ModelVersion, Prediction, ScoringJob
from studyweb import jobs, storage
from studyweb.errors import ServiceError

logger = logging.getLogger("scoring")


class ScoringError(ServiceError):
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
    checked = model_version_check(
        name=name,
        kind=kind,
        checkpoint_path=checkpoint_path,
        baseline=baseline,
        fusion_w_t=fusion_w_t,
        fusion_w_r=fusion_w_r,
        options=options,
    )
    return model_version_create(checked, description=description, user=user)


def model_version_create(checked: dict, *, description: str = "", user=None) -> ModelVersion:
    """Record what ``model_version_check`` returned (the admin checks in its form first)."""
    return ModelVersion.objects.create(**checked, description=description, created_by=user)


def model_version_check(
    *,
    name: str,
    kind: str,
    checkpoint_path: str = "",
    baseline: str = "",
    fusion_w_t: float | None = None,
    fusion_w_r: float | None = None,
    options: dict | None = None,
) -> dict:
    """Every check of a registration, nothing written: the model's fields, or a
    ScoringError naming the field at fault. A checkpoint must load here, on the CPU,
    so a file that is not a model fails now rather than in every batch of a job."""
    from scoring import joint
    from scoring.model_scoring.model_cache import file_sha256

    if ModelVersion.objects.filter(name=name).exists():
        raise ScoringError(f"a model version named {name!r} exists already", field="name")
    fields: dict = {"name": name, "kind": kind, "options": _checked_options(options or {})}
    if kind == ModelVersion.Kind.BASELINE:
        if baseline not in joint.BASELINES:
            raise ScoringError(
                f"unknown baseline {baseline!r}; use one of {', '.join(joint.BASELINES)}",
                field="baseline",
            )
        fields["baseline"] = baseline
    elif kind in (ModelVersion.Kind.JOINT, ModelVersion.Kind.TORCHSCRIPT):
        with _checkpoint_source(checkpoint_path) as (path, key):
            path = _checked_model_file(kind, str(path))
            sha = file_sha256(path)
            fields["checkpoint_sha256"] = sha
            fusion_file = joint.model.fusion_path(path)
            if fusion_w_t is None and fusion_file.exists():
                # A fine-tuned checkpoint carries its own fitted fusion weights.
                fusion = joint.model._read_fusion(fusion_file)
                fusion_w_t, fusion_w_r = fusion.w_t, fusion.w_r
            if key is None and not storage.is_local():
                # Workers on other machines read the media store, not this disk: the
                # checkpoint goes there, named by its digest, and is loaded by that key.
                key = _store_checkpoint(path, sha)
            fields["checkpoint_path"] = (
                f"{CHECKPOINT_KEY_PREFIX}{key}" if key else str(path.resolve())
            )
    else:
        raise ScoringError(
            f"unknown kind {kind!r}; use joint, baseline or torchscript", field="kind"
        )
    if fusion_w_t is not None:
        fields["fusion_w_t"] = fusion_w_t
    if fusion_w_r is not None:
        fields["fusion_w_r"] = fusion_w_r
    return fields


#: A checkpoint_path naming an object in the media store (MEDIA_STORAGE), not a file.
CHECKPOINT_KEY_PREFIX = "storage:"
CHECKPOINT_FOLDER = "checkpoints"


@contextlib.contextmanager
def _checkpoint_source(checkpoint_path: str):
    """(a local path to check, the storage key or None): a ``storage:KEY`` is read
    from the media store into a temporary copy; anything else is a local path."""
    if not checkpoint_path.startswith(CHECKPOINT_KEY_PREFIX):
        yield Path(checkpoint_path), None
        return
    key = checkpoint_path[len(CHECKPOINT_KEY_PREFIX) :].strip()
    if not key:
        raise ScoringError("name the object after storage:", field="checkpoint_path")
    try:
        exists = default_storage.exists(key)
    except storage.STORE_ERRORS as exc:
        raise ScoringError(
            str(storage.unavailable(exc, f"reading {key}")), field="checkpoint_path"
        ) from None
    if not exists:
        raise ScoringError(
            f"checkpoint {key} not found in {storage.describe()}", field="checkpoint_path"
        )
    try:
        with storage.local_copy(key) as path:
            yield path, key
    except storage.StoreUnavailable as exc:
        raise ScoringError(str(exc), field="checkpoint_path") from None


def _store_checkpoint(path: Path, sha: str) -> str:
    key = f"{CHECKPOINT_FOLDER}/{sha}{path.suffix}"
    try:
        if default_storage.exists(key):
            return key  # the same bytes, registered before under another name
    except storage.STORE_ERRORS as exc:
        raise ScoringError(
            str(storage.unavailable(exc, f"storing {key}")), field="checkpoint_path"
        ) from None
    try:
        return storage.save_file(key, path)
    except storage.StoreUnavailable as exc:
        raise ScoringError(str(exc), field="checkpoint_path") from None


def _checked_model_file(kind: str, checkpoint_path: str) -> Path:
    """The checkpoint file, once it is known to load as ``kind`` on the CPU.

    Loading reads no more than ``MAX_MODEL_BYTES`` and runs nothing but the
    deserialisers: JOINT through ``torch.load(weights_only=True)`` (tensors only, no
    pickled code), TorchScript through ``torch.jit.load`` (a TorchScript archive
    holds TorchScript code, which is compiled, not run, and no Python pickles). Both
    map storages to the CPU, so a web process without a GPU can check a GPU model.
    """
    from scoring import joint

    try:
        path = Path(checkpoint_path).expanduser()
        found = path.is_file()
        size = path.stat().st_size if found else 0
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte...
        raise ScoringError(
            f"checkpoint path is not usable: {exc}", field="checkpoint_path"
        ) from None
    if not found:
        raise ScoringError(f"checkpoint {path} not found", field="checkpoint_path")
    if size > settings.MAX_MODEL_BYTES:
        raise ScoringError(
            f"checkpoint {path} is {size} bytes, more than MAX_MODEL_BYTES "
            f"({settings.MAX_MODEL_BYTES})",
            field="checkpoint_path",
        )
    if kind == ModelVersion.Kind.JOINT:
        try:
            joint.model.check_state_dict(joint.model.load_state_dict_file(path), source=str(path))
        except joint.CheckpointError as exc:
            raise ScoringError(str(exc), field="checkpoint_path") from None
    else:
        import torch

        try:
            with warnings.catch_warnings():
                # torch 2.x calls TorchScript deprecated; it is still the format accepted here.
                warnings.simplefilter("ignore", FutureWarning)
                net = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - garbage fails in arbitrary ways
            # torch's first line says why (its later lines are a C++ trace).
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ScoringError(
                f"{path} is not a TorchScript model (torch.jit.load: {reason}); save one "
                "with torch.jit.save(torch.jit.script(model), path)",
                field="checkpoint_path",
            ) from None
        if not isinstance(net, torch.jit.ScriptModule):
            raise ScoringError(
                f"{path} holds a TorchScript function, not a module", field="checkpoint_path"
            )
    return path


# What a GPU worker reads from a version's options (scoring.model_scoring.model_cache.load_scorer),
# checked at registration so that a typo fails here, not in every batch of a job.
_OPTION_CHOICES = {
    "lfm_order": ("before_resize", "after_resize"),
    "lfm_backend": ("eager", "compile"),
}


def _checked_options(options: dict) -> dict:
    if not isinstance(options, dict):
        raise ScoringError("options must be an object", field="options")
    known = {"artifact_model", "batch_size", "seed", *_OPTION_CHOICES}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ScoringError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
            field="options",
        )
    for key, choices in _OPTION_CHOICES.items():
        if key in options and options[key] not in choices:
            raise ScoringError(f"option {key} must be one of {', '.join(choices)}", field="options")
    for key, low in (("batch_size", 1), ("seed", 0)):
        value = options.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < low
        ):
            raise ScoringError(
                f"option {key} must be an integer of at least {low}", field="options"
            )
    artifact = options.get("artifact_model")
    if artifact is not None and not isinstance(artifact, str):
        raise ScoringError("option artifact_model must be a path", field="options")
    return options


# --- Jobs -----------------------------------------------------------------------


def job_stimuli(study: Study):
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

    A live job for the same model version and study is joined (and sent, if it
    still waits for the broker); a finished one that covers every stimulus is
    returned as is unless ``force``. Raises BrokerUnavailable (the job saved,
    waiting) when the broker is down.
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= BATCH_SIZE_MAX
    ):
        raise ScoringError(f"batch_size must be between 1 and {BATCH_SIZE_MAX}", field="batch_size")
    total = job_stimuli(study).count()
    if total == 0:
        raise ScoringError(
            f"study {study.slug!r} has no test stimuli to score",
            code="nothing_to_score",
            field="study",
        )
    with transaction.atomic():
        live = (
            ScoringJob.objects.select_for_update()
            .filter(model_version=model_version, study=study, status__in=ScoringJob.ACTIVE)
            .first()
        )
        created = live is None
        if live is not None:
            job = live
        else:
            finished = None
            if not force:
                finished = (
                    ScoringJob.objects.filter(
                        model_version=model_version, study=study, status=ScoringJob.Status.DONE
                    )
                    .order_by("-finished_at")
                    .first()
                )
                covered = Prediction.objects.filter(
                    model_version=model_version, stimulus__in=job_stimuli(study)
                ).count()
                if finished is not None and covered < total:
                    finished = None
            if finished is not None:
                return finished, False
            job = ScoringJob.objects.create(
                model_version=model_version,
                study=study,
                total=total,
                force=force,
                batch_size=batch_size,
                created_by=user,
                waiting_for_broker=enqueue,
            )
    if enqueue and job.waiting_for_broker:
        jobs.job_send(job)
    return job, created


def scoring_job_cancel(*, job: ScoringJob) -> ScoringJob:
    return jobs.job_cancel(job)
