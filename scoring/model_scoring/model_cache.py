"""Load the scorer behind a ModelVersion, once per worker process.

A GPU worker keeps one loaded model per (model version, checkpoint digest):
loading JOINT costs seconds, a batch of images a fraction of that. The
checkpoint's sha256 is verified against the one recorded at registration, so a
file swapped on disk is refused instead of silently scoring with other weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import threading
from pathlib import Path

from django.conf import settings

from scoring.model_scoring.services import CHECKPOINT_KEY_PREFIX
from scoring.models import ModelVersion
from studyweb import storage

_CACHE: dict[tuple[int, str], object] = {}
_LOCK = threading.Lock()


class ModelLoadError(RuntimeError):
    """The model version cannot be loaded (missing file, wrong digest, bad checkpoint)."""


def file_sha256(path: Path, chunk: int = 4 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _checked_path(version: ModelVersion) -> Path:
    if version.checkpoint_path.startswith(CHECKPOINT_KEY_PREFIX):
        path = _from_store(version)
    else:
        path = Path(version.checkpoint_path)
    if not path.is_file():
        raise ModelLoadError(f"{version.name}: checkpoint {path} not found on this worker")
    if version.checkpoint_sha256:
        actual = file_sha256(path)
        if actual != version.checkpoint_sha256:
            raise ModelLoadError(
                f"{version.name}: checkpoint {path} has sha256 {actual[:12]}..., registered "
                f"{version.checkpoint_sha256[:12]}...; refusing to score with other weights"
            )
    return path


def _from_store(version: ModelVersion) -> Path:
    """The checkpoint registered by its key in the media store, downloaded once into
    MODEL_CACHE_DIR (named by its digest) and verified there. A store that does not
    answer raises StoreUnavailable, which the batch task retries and then reports."""
    key = version.checkpoint_path[len(CHECKPOINT_KEY_PREFIX) :]
    if not version.checkpoint_sha256:
        raise ModelLoadError(f"{version.name}: checkpoint {key} has no recorded sha256")
    try:
        return storage.cached_copy(
            key, version.checkpoint_sha256, cache_dir=Path(settings.MODEL_CACHE_DIR)
        )
    except storage.StoreUnavailable as exc:
        if "has sha256" in str(exc):
            raise ModelLoadError(
                f"{version.name}: {exc}; refusing to score with other weights"
            ) from None
        raise


def _build(version: ModelVersion, device: str | None):
    from scoring import joint

    if version.kind == ModelVersion.Kind.BASELINE:
        try:
            return joint.BASELINES[version.baseline]
        except KeyError:
            raise ModelLoadError(f"{version.name}: unknown baseline {version.baseline!r}") from None
    fusion = joint.FusionWeights(version.fusion_w_t, version.fusion_w_r)
    options = version.options or {}
    if version.kind == ModelVersion.Kind.JOINT:
        try:
            model = joint.load_checkpoint(_checked_path(version), fusion=fusion)
        except joint.CheckpointError as exc:
            raise ModelLoadError(f"{version.name}: {exc}") from None
    elif version.kind == ModelVersion.Kind.TORCHSCRIPT:
        model = _scripted_model(_checked_path(version), fusion)
    else:
        raise ModelLoadError(f"{version.name}: unknown kind {version.kind!r}")
    return joint.Predictor(
        model,
        device=device,
        batch_size=int(options.get("batch_size", 16)),
        artifact_model=options.get("artifact_model") or None,
        lfm_order=options.get("lfm_order", "before_resize"),
        lfm_backend=options.get("lfm_backend", "eager"),
        seed=int(options.get("seed", 0)),
        # The preprocessing workers outlive one batch (one predict call): the worker
        # process keeps this predictor, so each batch no longer starts and stops them.
        persistent_workers=True,
    )


def _scripted_model(path: Path, fusion):
    """Wrap a TorchScript module taking (x_technical, x_rationality) and returning
    (T, R) so it scores like JOINT, with the version's fusion weights."""
    import torch
    from torch import nn

    try:
        net = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a TorchScript model ({exc})") from None

    class ScriptedJoint(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, xt, xr):
            return self.net(xt, xr)

        def naturalness(self, t, r):
            return fusion.w_t * t + fusion.w_r * r

    return ScriptedJoint().eval()


def load_scorer(version: ModelVersion, *, device: str | None = None):
    """The version's scorer (``predict(images) -> list[JointResult]``), cached."""
    key = (version.pk, version.checkpoint_sha256 or version.baseline or "")
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = _build(version, device)
        return _CACHE[key]


@contextlib.contextmanager
def child_processes_allowed():
    """Let the predictor start its DataLoader workers inside a Celery pool process.

    Celery's prefork pool (billiard) runs tasks in daemonic processes, and
    ``multiprocessing`` refuses to start children there ("daemonic processes are
    not allowed to have children"): every JOINT batch of 4 or more images failed
    on a real ``-Q gpu`` worker (eager tests never run in such a process). The
    rule keeps a daemon killed with its parent from leaving orphans; DataLoader
    workers watch their parent and exit within seconds once it is gone, so the
    flag is lifted for the call only. Outside a daemonic process: no change.
    """
    config = multiprocessing.current_process()._config
    if not config.get("daemon"):
        yield
        return
    config["daemon"] = False
    try:
        yield
    finally:
        config["daemon"] = True


def clear_cache(*, close: bool = True) -> None:
    """Forget every loaded scorer; ``close``: also stop their preprocessing pools
    (False in a forked child, whose inherited pools belong to the parent)."""
    with _LOCK:
        scorers = list(_CACHE.values())
        _CACHE.clear()
    if close:
        for scorer in scorers:
            closer = getattr(scorer, "close", None)
            if closer is not None:
                closer()
