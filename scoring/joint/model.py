"""The JOINT network (JOINT_SPEC.md, "Network") and its checkpoint loader.

Two torchvision backbones built with ``weights=None`` (never a download): a
``swin_t`` whose ``head`` is an identity (768-d pooled feature) for the
technical branch and a ``resnet50`` with its ``fc`` kept (1000 logits) for the
rationality branch, each followed by two linear layers with no activation
between them. Module names are the checkpoint's key prefixes, so the authors'
``JOINT_2024.pth`` loads with ``strict=True``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet50, swin_t

__all__ = [
    "DEFAULT_FUSION",
    "CheckpointError",
    "FusionWeights",
    "JointModel",
    "build_model",
    "check_state_dict",
    "fusion_path",
    "load_checkpoint",
    "load_state_dict_file",
    "save_checkpoint",
]


@dataclass(frozen=True)
class FusionWeights:
    """N = w_t * T + w_r * R. The defaults belong to the authors' checkpoint."""

    w_t: float = 0.145
    w_r: float = 0.769


DEFAULT_FUSION = FusionWeights()


class CheckpointError(Exception):
    """A file that is not a JOINT checkpoint, or one whose keys/shapes do not fit.

    ``missing``, ``unexpected`` and ``mismatched`` (key, checkpoint shape,
    model shape) list every offending key; the message lists the first few.
    """

    def __init__(
        self,
        message: str,
        *,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] | None = None,
    ) -> None:
        super().__init__(message)
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.mismatched = mismatched or []


class JointModel(nn.Module):
    """JOINT: forward(x_technical, x_rationality) -> (T, R), each B x 1.

    ``fusion`` is a plain attribute, not a buffer, so the state dict holds the
    authors' keys and nothing else.
    """

    def __init__(self, fusion: FusionWeights = DEFAULT_FUSION) -> None:
        super().__init__()
        technical = swin_t(weights=None)
        technical.head = nn.Identity()  # keep the 768-d pooled feature
        self.technical_feature_extraction = technical
        self.rationality_feature_extraction = resnet50(weights=None)  # fc kept: 1000 logits
        self.quality_T = nn.Sequential(nn.Linear(768, 128), nn.Linear(128, 1))
        self.quality_R = nn.Sequential(nn.Linear(1000, 128), nn.Linear(128, 1))
        self.fusion = fusion

    def forward(
        self, x_technical: torch.Tensor, x_rationality: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.quality_T(self.technical_feature_extraction(x_technical))
        r = self.quality_R(self.rationality_feature_extraction(x_rationality))
        return t, r

    def naturalness(self, technical: torch.Tensor, rationality: torch.Tensor) -> torch.Tensor:
        """N = w_t T + w_r R (the authors' inference script: 0.145 T + 0.769 R)."""
        return self.fusion.w_t * technical + self.fusion.w_r * rationality


def build_model(
    *, seed: int | None = None, fusion: FusionWeights = DEFAULT_FUSION, init: bool = True
) -> JointModel:
    """A JOINT with random weights (torchvision's init), seeded without touching global RNG.

    ``init=False`` builds on the meta device (no memory, no init cost): use it
    only to read names and shapes or to ``load_state_dict(..., assign=True)``.
    """
    if not init:
        with torch.device("meta"):
            return JointModel(fusion)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return JointModel(fusion)


def fusion_path(checkpoint: str | os.PathLike[str]) -> Path:
    """Where a checkpoint's own fusion weights live: ``<checkpoint>.fusion.json``."""
    return Path(f"{os.fspath(checkpoint)}.fusion.json")


def _read_fusion(path: Path) -> FusionWeights:
    try:
        data = json.loads(path.read_text())
        w_t, w_r = float(data["w_t"]), float(data["w_r"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{path}: not a fusion file (a JSON object with numbers w_t and w_r): {exc}"
        ) from exc
    if not (math.isfinite(w_t) and math.isfinite(w_r)):
        raise CheckpointError(f"{path}: fusion weights must be finite, got {w_t}, {w_r}")
    return FusionWeights(w_t=w_t, w_r=w_r)


def save_checkpoint(model: JointModel, path: str | os.PathLike[str]) -> None:
    """Save a plain state_dict (the authors' format) and, if not the defaults, the fusion JSON."""
    torch.save(model.state_dict(), path)
    fp = fusion_path(path)
    if model.fusion != DEFAULT_FUSION:
        fp.write_text(json.dumps({"w_t": model.fusion.w_t, "w_r": model.fusion.w_r}) + "\n")
    elif fp.exists():
        fp.unlink()  # a stale file would override the defaults on load


def _unwrap(obj: Any, path: str) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded object: plain, {"state_dict": ...} or {"model": ...}."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{path}: not a state_dict (expected a mapping of parameter names to tensors, "
            f"got {type(obj).__name__})"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(
            f"{path}: not a state_dict: {len(bad)} entries are not tensors (e.g. {bad[0]!r})"
        )
    # DataParallel / DistributedDataParallel save every key under "module."
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def load_state_dict_file(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a plain state dict (``torch.load(weights_only=True)``).

    Accepts a plain state_dict, one wrapped as {"state_dict": ...} or
    {"model": ...}, and strips a "module." prefix present on every key
    (DataParallel). Raises :class:`CheckpointError` on a missing file or one
    that is not a PyTorch checkpoint.
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # garbage input fails in arbitrary ways (KeyError, ...)
        raise CheckpointError(f"{p}: not a PyTorch checkpoint ({_load_failure(p, exc)})") from exc
    return _unwrap(obj, p)


def _load_failure(path: str, exc: Exception) -> str:
    """A short, truthful reason why ``torch.load`` refused a file."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    if not head:
        return "empty file"
    if head != b"PK" and head[:1] != b"\x80":  # torch's zip format, or a legacy pickle
        return "neither a zip archive nor a pickle"
    text = str(exc).strip()
    if "Weights only load failed" in text:
        return "it holds objects other than tensors, which weights_only loading refuses"
    return text.splitlines()[0] if text else type(exc).__name__


def _fmt(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... and {len(items) - limit} more" if len(items) > limit else "")


def check_state_dict(state: Mapping[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly JOINT's keys and shapes."""
    expected = {k: tuple(v.shape) for k, v in build_model(init=False).state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        (k, tuple(state[k].shape), expected[k])
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_fmt(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_fmt(unexpected)})")
    if mismatched:
        shapes = [f"{k}: {list(a)} vs model {list(b)}" for k, a, b in mismatched]
        parts.append(f"{len(mismatched)} shape mismatches ({_fmt(shapes)})")
    raise CheckpointError(
        f"{source} is not a JOINT checkpoint: " + "; ".join(parts),
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
    )


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    map_location: str | torch.device = "cpu",
    fusion: FusionWeights | None = None,
) -> JointModel:
    """Load a JOINT checkpoint (e.g. the authors' ``JOINT_2024.pth``) with ``strict=True``.

    - The file may hold a plain state_dict, or one wrapped as
      {"state_dict": ...} or {"model": ...}; a "module." prefix on every key
      (DataParallel) is stripped. Read with ``torch.load(weights_only=True)``.
    - Wrong or partial checkpoints raise :class:`CheckpointError` listing the
      missing and unexpected keys and the shape mismatches; a file that is not
      a checkpoint raises it too.
    - Fusion weights: ``fusion`` if given, else ``<checkpoint>.fusion.json``
      (keys ``w_t``, ``w_r``; written for fine-tuned models) if it exists,
      else the authors' 0.145 / 0.769.

    The model is built on the meta device and the tensors are assigned, which
    skips the random init (about 1.5 s on CPU). Floating tensors are cast to
    float32. Returns the model in eval mode on ``map_location``.
    """
    state = load_state_dict_file(path, map_location=map_location)
    check_state_dict(state, source=os.fspath(path))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    if fusion is None:
        fp = fusion_path(path)
        fusion = _read_fusion(fp) if fp.exists() else DEFAULT_FUSION
    model = build_model(init=False, fusion=fusion)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
