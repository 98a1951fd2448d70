"""Fine-tuning JOINT on MOS data (JOINT_SPEC.md, "Training facts"). Pure torch: no Django.

The recipe follows the authors' training facts:

- Split: one seeded random permutation of the images; the first 70% train,
  the last 30% are held out (:func:`split_indices`).
- Targets: T against MOS_tech, R against MOS_rat; N = w_t T + w_r R is not
  trained directly, its weights are refitted (:func:`fit_fusion`).
- Loss per branch: the PLCC-style loss (1 - cos of centred vectors) / 2
  (:func:`plcc_loss`) plus a rank (SRCC) loss on *soft ranks*
  (:func:`rank_loss`), written in torch (no torchsort): pairwise-sigmoid soft
  ranks of the standardised predictions, correlated with the ranks of the
  targets. Both terms lie in [0, 1].
- Augmentation: Resize(384) -> RandomCrop(224) and horizontal flips, applied
  to the two prepared inputs. Held-out images use the inference transform,
  Resize(384) -> CenterCrop(224), so their inputs are those of
  :class:`~scoring.joint.predictor.Predictor` bit for bit.
- Optimiser: AdamW with a cosine schedule over all steps.
- Metrics after every epoch (METHODS.md section 8, via
  :func:`scoring.numerics.agreement.agreement`): SRCC, KRCC and PLCC (after the
  logistic fit, or raw when there are too few points) of the held-out images,
  T vs MOS_tech, R vs MOS_rat and N vs MOS_nat.

Preprocessing reuses the inference code: LFM (:func:`~scoring.joint.lfm.lfm_tensor`)
for the rationality input and the patch partition
(:func:`~scoring.joint.partition.partition_image`, seeded per image from its
pixels as the predictor does) for the technical input. LFM is expensive, so
each image's two Resize(384) inputs are computed once (:func:`prepare_inputs`,
optionally cached on disk) and only cropped and flipped per epoch.

Entry point: :func:`fine_tune`. The command ``manage.py train_joint`` only
gathers (image, MOS) rows and calls it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from .lfm import lfm_tensor
from .model import FusionWeights, JointModel, fusion_path, save_checkpoint
from .partition import ArtifactModel, partition_image
from .preprocess import (
    CROP,
    RESIZE,
    LfmOrder,
    center_crop_box,
    content_seed,
    load_rgb,
    resized_size,
    to_normalized_tensor,
)

__all__ = [
    "DEFAULT_TAU",
    "MIN_IMAGES",
    "FusionFit",
    "PreparedImage",
    "Sample",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "augment",
    "center_crop",
    "compute_loss",
    "evaluate",
    "fine_tune",
    "fit_fusion",
    "hard_rank",
    "load_backbone_weights",
    "make_batch",
    "pearson",
    "plcc_loss",
    "predict_prepared",
    "prepare_image",
    "prepare_inputs",
    "rank_loss",
    "soft_rank",
    "split_indices",
    "train_batches",
    "train_step",
    "training_log_path",
]

#: (image_path, mos_nat, mos_tech, mos_rat): what both data sources of the command produce.
Sample = tuple[str, float, float, float]

#: Fewer images leave a split with fewer than 2 items: no correlation is defined.
MIN_IMAGES = 4
#: Soft-rank temperature, in units of the batch's standard deviation (see :func:`rank_loss`).
DEFAULT_TAU = 0.1
#: Bump when :func:`prepare_image` changes, so stale on-disk caches are not reused.
_CACHE_VERSION = 1


class TrainingError(ValueError):
    """Unusable training input: too few images, an unreadable image, a bad option."""


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------


def pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of two 1-d tensors: the cosine of the centred vectors.

    A constant vector gives 0 (not NaN) thanks to ``eps``, with a zero gradient.
    """
    a = a.reshape(-1)
    b = b.reshape(-1)
    return F.cosine_similarity(a - a.mean(), b - b.mean(), dim=0, eps=eps)


def plcc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1 - PLCC) / 2, the authors' PLCC-style loss: 0 when perfectly correlated, 1 when
    anti-correlated (JOINT_SPEC "Training facts")."""
    return (1.0 - pearson(pred, target)) / 2.0


def soft_rank(x: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """Differentiable 1-based ranks of a 1-d tensor.

    rank_i = sum_j sigmoid((x_i - x_j) / tau) + 0.5. The j = i term adds
    sigmoid(0) = 0.5, so as tau -> 0 this tends to 1 + #{j: x_j < x_i} plus
    0.5 per tie: :func:`hard_rank` (average ranks). O(n^2) memory, nothing at
    batch sizes; plain torch, so no torchsort (a compiled extension) is needed.
    """
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    x = x.reshape(-1)
    return torch.sigmoid((x[:, None] - x[None, :]) / tau).sum(dim=1) + 0.5


def hard_rank(x: torch.Tensor) -> torch.Tensor:
    """1-based average ranks (ties share the mean rank, as ``scipy.stats.rankdata``), float."""
    x = x.reshape(-1)
    less = (x[None, :] < x[:, None]).sum(dim=1)
    ties = (x[None, :] == x[:, None]).sum(dim=1)  # includes x_i itself
    return (less + 0.5 * ties + 0.5).to(torch.float32 if not x.is_floating_point() else x.dtype)


def rank_loss(pred: torch.Tensor, target: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """(1 - Pearson(soft ranks of pred, ranks of target)) / 2: a differentiable SRCC loss.

    ``pred`` is standardised over the batch first, so ``tau`` is in units of
    the batch's standard deviation and the loss, like SRCC, does not depend on
    the scale or offset of the outputs (a network's raw scale is arbitrary).
    Halved like :func:`plcc_loss` so both terms lie in [0, 1].
    """
    pred = pred.reshape(-1)
    z = (pred - pred.mean()) / pred.std(unbiased=False).clamp_min(1e-8)
    return (1.0 - pearson(soft_rank(z, tau), hard_rank(target.reshape(-1)))) / 2.0


def compute_loss(
    t: torch.Tensor,
    r: torch.Tensor,
    mos_tech: torch.Tensor,
    mos_rat: torch.Tensor,
    *,
    tau: float = DEFAULT_TAU,
    rank_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss (T branch + R branch, each PLCC loss + rank_weight * rank loss) and its parts."""
    parts = {
        "plcc_t": plcc_loss(t, mos_tech),
        "rank_t": rank_loss(t, mos_tech, tau),
        "plcc_r": plcc_loss(r, mos_rat),
        "rank_r": rank_loss(r, mos_rat, tau),
    }
    total = parts["plcc_t"] + parts["plcc_r"] + rank_weight * (parts["rank_t"] + parts["rank_r"])
    return total, {k: float(v.detach()) for k, v in parts.items()}


# ---------------------------------------------------------------------------
# Split and batches
# ---------------------------------------------------------------------------


def split_indices(n: int, seed: int, train_fraction: float = 0.7) -> tuple[list[int], list[int]]:
    """The authors' split: one random permutation (NumPy ``default_rng(seed)``), the first
    ``floor(train_fraction * n)`` images train, the rest are held out.

    With n >= 4 both parts hold at least 2 images.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    perm = np.random.default_rng(seed).permutation(n).tolist()
    cut = int(math.floor(train_fraction * n))
    return perm[:cut], perm[cut:]


def train_batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Positions 0..n-1 shuffled and cut into batches of ``batch_size``.

    A last batch of one image is merged into the previous one: a correlation
    loss needs at least two items, and dropping it would skip an image.
    """
    order = torch.randperm(n, generator=generator).tolist()
    batches = [order[s : s + batch_size] for s in range(0, n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2].extend(batches.pop())
    return batches


# ---------------------------------------------------------------------------
# Inputs: prepared once, cropped per epoch
# ---------------------------------------------------------------------------


@dataclass
class PreparedImage:
    """One image's two network inputs after Resize(``resize``), before any crop, as uint8 3 x H x W.

    ``technical``: the 224 x 224 patch partition resized to resize x resize;
    ``rationality``: the LFM image with its shorter side resized to ``resize``.
    """

    technical: torch.Tensor
    rationality: torch.Tensor


def _chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(arr).transpose(2, 0, 1)))


def _pil_resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """PIL bilinear to (width, height), untouched when the size already agrees (torchvision)."""
    return img if img.size == size else img.resize(size, Image.Resampling.BILINEAR)


def _lfm_hwc(arr: np.ndarray, device: str | torch.device) -> np.ndarray:
    x = _chw(arr)[None].to(device)
    return lfm_tensor(x)[0].permute(1, 2, 0).cpu().numpy()


def prepare_image(
    path: str | os.PathLike[str],
    *,
    resize: int = RESIZE,
    seed: int = 0,
    lfm_order: LfmOrder = "before_resize",
    device: str | torch.device = "cpu",
    artifact_model: ArtifactModel | None = None,
) -> PreparedImage:
    """Both inputs of one image, up to and including Resize(``resize``).

    Rationality: LFM on the full-resolution image, then PIL Resize (the
    authors' inference order, ``lfm_order="before_resize"``), or Resize first
    and LFM on the resized image (``"after_resize"``, cheaper on big images).
    LFM runs on ``device`` (much faster on a GPU). Technical: the patch
    partition of the image (artifact-aware when ``artifact_model`` is given),
    seeded by ``seed`` and the image's pixels exactly as the predictor seeds
    it, then Resize. A center crop of either is the predictor's input.
    Raises :class:`TrainingError` on an unreadable image.
    """
    try:
        rgb = load_rgb(path)
    except (OSError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise TrainingError(f"{os.fspath(path)}: cannot read image ({exc})") from exc
    size = resized_size(*rgb.size, size=resize)
    if lfm_order == "before_resize":
        smooth = Image.fromarray(_lfm_hwc(np.asarray(rgb), device))
        rationality = np.asarray(_pil_resize(smooth, size))
    elif lfm_order == "after_resize":
        rationality = _lfm_hwc(np.asarray(_pil_resize(rgb, size)), device)
    else:
        raise TrainingError(f"lfm_order must be 'before_resize' or 'after_resize': {lfm_order!r}")
    mask = artifact_model.mask(rgb) if artifact_model is not None else None
    part = partition_image(np.asarray(rgb), mask, content_seed(rgb, seed)).image
    technical = np.asarray(
        _pil_resize(Image.fromarray(part), resized_size(*part.shape[1::-1], resize))
    )
    return PreparedImage(technical=_chw(technical), rationality=_chw(rationality))


def _cache_file(
    cache_dir: Path, path: str, *, resize: int, seed: int, lfm_order: str, artifact: str
) -> Path:
    """A cache entry named by the file's bytes and every setting that changes the result."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    h.update(f"|v{_CACHE_VERSION}|{resize}|{seed}|{lfm_order}|{artifact}".encode())
    return cache_dir / f"{h.hexdigest()[:32]}.pt"


def prepare_inputs(
    paths: Sequence[str],
    *,
    resize: int = RESIZE,
    seed: int = 0,
    lfm_order: LfmOrder = "before_resize",
    device: str | torch.device = "cpu",
    artifact_model: ArtifactModel | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    progress_file: TextIO | None = None,
) -> list[PreparedImage]:
    """:func:`prepare_image` for every path, once, kept in memory.

    With ``cache_dir``, results are also stored there (one ``.pt`` per image,
    named by a hash of the file and the settings) and reused by later runs,
    which saves the LFM cost when a dataset is trained on repeatedly.
    """
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    artifact = artifact_model.label if artifact_model is not None else "none"
    out: list[PreparedImage] = []
    bar = tqdm(
        paths,
        desc="preparing inputs (LFM, partition)",
        unit="img",
        disable=not progress,
        file=progress_file or sys.stderr,
    )
    for p in bar:
        entry = None
        if cache is not None:
            entry = _cache_file(
                cache, p, resize=resize, seed=seed, lfm_order=lfm_order, artifact=artifact
            )
            if entry.exists():
                try:
                    data = torch.load(entry, weights_only=True)
                    out.append(PreparedImage(data["technical"], data["rationality"]))
                    continue
                except Exception:  # noqa: BLE001 - a corrupt cache entry is recomputed
                    pass
        item = prepare_image(
            p,
            resize=resize,
            seed=seed,
            lfm_order=lfm_order,
            device=device,
            artifact_model=artifact_model,
        )
        if entry is not None:
            tmp = entry.with_suffix(".tmp")
            torch.save({"technical": item.technical, "rationality": item.rationality}, tmp)
            os.replace(tmp, entry)  # atomic: a concurrent run never reads half a file
        out.append(item)
    return out


def augment(
    img: torch.Tensor, crop: int, generator: torch.Generator, hflip: bool = True
) -> torch.Tensor:
    """RandomCrop(``crop``) then, with probability 1/2, a horizontal flip (torchvision's draws)."""
    _, h, w = img.shape
    top = int(torch.randint(0, h - crop + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - crop + 1, (1,), generator=generator))
    out = img[:, top : top + crop, left : left + crop]
    if hflip and float(torch.rand(1, generator=generator)) < 0.5:
        out = out.flip(-1)
    return out


def center_crop(img: torch.Tensor, crop: int) -> torch.Tensor:
    """CenterCrop(``crop``) with torchvision's offsets (the inference transform)."""
    _, h, w = img.shape
    left, top = center_crop_box(w, h, crop)
    return img[:, top : top + crop, left : left + crop]


def make_batch(
    prepared: Sequence[PreparedImage],
    indices: Sequence[int],
    *,
    crop: int,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
    hflip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_technical, x_rationality), normalised float32 on ``device``.

    With a ``generator``: independent random crops and flips per input (the
    authors transform the two files separately); without: center crops.
    The uint8 crops travel to the device and are normalised there (4x less copying).
    """
    ts, rs = [], []
    for i in indices:
        item = prepared[i]
        if generator is None:
            ts.append(center_crop(item.technical, crop))
            rs.append(center_crop(item.rationality, crop))
        else:
            ts.append(augment(item.technical, crop, generator, hflip))
            rs.append(augment(item.rationality, crop, generator, hflip))
    xt = torch.stack(ts).to(device, non_blocking=True)
    xr = torch.stack(rs).to(device, non_blocking=True)
    return to_normalized_tensor(xt), to_normalized_tensor(xr)


# ---------------------------------------------------------------------------
# Steps, predictions, fusion, metrics
# ---------------------------------------------------------------------------


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x_technical: torch.Tensor,
    x_rationality: torch.Tensor,
    mos_tech: torch.Tensor,
    mos_rat: torch.Tensor,
    *,
    tau: float = DEFAULT_TAU,
    rank_weight: float = 1.0,
) -> dict[str, float]:
    """One optimiser step on one batch (``model`` in train mode). Returns the loss and its parts."""
    optimizer.zero_grad(set_to_none=True)
    t, r = model(x_technical, x_rationality)
    loss, parts = compute_loss(t, r, mos_tech, mos_rat, tau=tau, rank_weight=rank_weight)
    loss.backward()
    optimizer.step()
    return {"loss": float(loss.detach()), **parts}


@torch.no_grad()
def predict_prepared(
    model: nn.Module,
    prepared: Sequence[PreparedImage],
    indices: Sequence[int],
    *,
    crop: int = CROP,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """(T, R) of ``indices`` in eval mode on center crops (the inference transform), float64."""
    was_training = model.training
    model.eval()
    ts, rs = [], []
    try:
        for s in range(0, len(indices), batch_size):
            xt, xr = make_batch(prepared, indices[s : s + batch_size], crop=crop, device=device)
            t, r = model(xt, xr)
            ts.append(t.float().reshape(-1).cpu())
            rs.append(r.float().reshape(-1).cpu())
    finally:
        model.train(was_training)
    if not ts:
        return np.zeros(0), np.zeros(0)
    return torch.cat(ts).double().numpy(), torch.cat(rs).double().numpy()


@dataclass(frozen=True)
class FusionFit:
    """MOS_nat ~ w_t T + w_r R + intercept, by least squares.

    The intercept is fitted so that the slopes are not bent to explain the
    offset between the MOS scale and the network's outputs; it is stored
    beside w_t and w_r but not used by :class:`~scoring.joint.model.JointModel`
    (N = w_t T + w_r R): a constant shift changes no SRCC/KRCC/PLCC.
    """

    w_t: float
    w_r: float
    intercept: float
    n: int

    @property
    def weights(self) -> FusionWeights:
        return FusionWeights(w_t=self.w_t, w_r=self.w_r)


def fit_fusion(t: Any, r: Any, mos_nat: Any) -> FusionFit:
    """``numpy.linalg.lstsq`` of MOS_nat on the columns [T, R, 1] (see :class:`FusionFit`).

    Degenerate inputs (constant or collinear T and R) get lstsq's minimum-norm solution.
    """
    t = np.asarray(t, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    y = np.asarray(mos_nat, dtype=np.float64)
    design = np.column_stack([t, r, np.ones_like(t)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    if not np.all(np.isfinite(coef)):
        raise TrainingError(f"fusion fit failed: coefficients {coef.tolist()}")
    return FusionFit(w_t=float(coef[0]), w_r=float(coef[1]), intercept=float(coef[2]), n=len(y))


def _metric(pred: np.ndarray, mos: np.ndarray) -> dict[str, Any]:
    """METHODS.md section 8 without bootstrap: SRCC/KRCC raw, PLCC/RMSE after the logistic
    fit, or on raw predictions with fewer than 5 points (``plcc_on`` says which)."""
    from scoring.numerics.agreement import agreement  # numpy/scipy only, no Django

    res = agreement(pred, mos, n_boot=0)
    return {
        "n": res.n,
        "srcc": _finite(res.srcc),
        "krcc": _finite(res.krcc),
        "plcc": _finite(res.plcc),
        "plcc_on": res.plcc_on,
        "rmse": _finite(res.rmse),
    }


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def evaluate(
    t: np.ndarray, r: np.ndarray, targets: np.ndarray, fusion: FusionFit | FusionWeights
) -> dict[str, dict[str, Any]]:
    """Metrics of T vs MOS_tech, R vs MOS_rat and N = w_t T + w_r R vs MOS_nat.

    ``targets`` is n x 3 (MOS_nat, MOS_tech, MOS_rat).
    """
    n = fusion.w_t * t + fusion.w_r * r
    return {
        "technical": _metric(t, targets[:, 1]),
        "rationality": _metric(r, targets[:, 2]),
        "naturalness": _metric(n, targets[:, 0]),
    }


def _selection_key(held_out: dict[str, dict[str, Any]]) -> tuple[float, float]:
    """Best checkpoint: held-out SRCC of N, ties broken by SRCC(T) + SRCC(R); undefined = worst."""

    def s(dim: str) -> float:
        v = held_out[dim]["srcc"]
        return -math.inf if v is None else v

    return s("naturalness"), s("technical") + s("rationality")


# ---------------------------------------------------------------------------
# Initial weights
# ---------------------------------------------------------------------------


def load_backbone_weights(model: JointModel, folder: str | os.PathLike[str]) -> dict[str, str]:
    """Load torchvision ImageNet weight files from a local folder into JOINT's backbones.

    Looks for ``swin_t-*.pth`` (technical branch; its classification ``head``
    is dropped because JOINT replaces it with an identity) and
    ``resnet50-*.pth`` (rationality branch, ``fc`` included), as torchvision
    names its downloads. Nothing is ever downloaded. Returns {branch: file}.
    Raises :class:`TrainingError` when the folder holds neither, holds two
    candidates for one backbone, or a file does not fit.
    """
    root = Path(folder)
    if not root.is_dir():
        raise TrainingError(f"backbone weights folder not found: {root}")
    targets = (
        ("swin_t", "technical", model.technical_feature_extraction, ("head.",)),
        ("resnet50", "rationality", model.rationality_feature_extraction, ()),
    )
    loaded: dict[str, str] = {}
    for prefix, branch, module, drop in targets:
        files = sorted(root.glob(f"{prefix}-*.pth"))
        if len(files) > 1:
            names = ", ".join(f.name for f in files)
            raise TrainingError(f"{root}: several {prefix} weight files ({names}); keep one")
        if not files:
            continue
        try:
            state = torch.load(files[0], map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise TypeError(f"expected a state_dict, got {type(state).__name__}")
            state = {k: v for k, v in state.items() if not k.startswith(drop)}
            module.load_state_dict(state, strict=True)
        except Exception as exc:  # any failure means "not torchvision's weights for this net"
            text = str(exc).strip().splitlines()
            raise TrainingError(
                f"{files[0]}: not torchvision {prefix} weights ({text[0] if text else exc!r})"
            ) from exc
        loaded[branch] = str(files[0])
    if not loaded:
        raise TrainingError(f"{root}: no swin_t-*.pth or resnet50-*.pth weight file")
    return loaded


# ---------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Options of :func:`fine_tune`. ``resize`` / ``crop`` are the spec's 384 / 224; smaller
    values are only for tests and quick trials (the predictor always uses 384 / 224)."""

    epochs: int = 10
    batch_size: int = 8
    lr: float = 1e-5
    weight_decay: float = 0.01
    seed: int = 0
    device: str = "cpu"
    resize: int = RESIZE
    crop: int = CROP
    train_fraction: float = 0.7
    tau: float = DEFAULT_TAU
    rank_weight: float = 1.0
    hflip: bool = True
    lfm_order: LfmOrder = "before_resize"
    eval_batch_size: int = 16

    def validate(self) -> None:
        """Raise :class:`TrainingError` on an option that cannot work."""
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 2, "batch size must be at least 2 (a correlation needs 2 items)"),
            (self.lr > 0 and math.isfinite(self.lr), "lr must be a positive number"),
            (self.weight_decay >= 0, "weight decay must not be negative"),
            (self.crop >= 32, "crop must be at least 32 pixels"),
            (self.resize >= self.crop, "resize must be at least the crop size"),
            (0.0 < self.train_fraction < 1.0, "train fraction must be in (0, 1)"),
            (self.tau > 0, "tau must be positive"),
            (self.rank_weight >= 0, "rank weight must not be negative"),
            (self.eval_batch_size >= 1, "eval batch size must be at least 1"),
            (self.lfm_order in ("before_resize", "after_resize"), "bad lfm_order"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)


@dataclass
class TrainResult:
    """What :func:`fine_tune` wrote and found. ``history`` is the per-epoch record
    (epoch 0: the initial weights, evaluated but never selected)."""

    checkpoint: Path
    fusion_file: Path
    log_file: Path
    best_epoch: int
    fusion: FusionFit
    held_out: dict[str, dict[str, Any]]
    train_names: list[str]
    test_names: list[str]
    history: list[dict[str, Any]] = field(default_factory=list)


def training_log_path(out: str | os.PathLike[str]) -> Path:
    """``<checkpoint>.training.json``: history, split, seed and options of a run."""
    return Path(f"{os.fspath(out)}.training.json")


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _predictions_table(
    names: list[str], idx: list[int], t: np.ndarray, r: np.ndarray, targets: np.ndarray
) -> list[dict[str, Any]]:
    return [
        {
            "image": names[i],
            "technical": float(t[k]),
            "rationality": float(r[k]),
            "mos_nat": float(targets[i, 0]),
            "mos_tech": float(targets[i, 1]),
            "mos_rat": float(targets[i, 2]),
        }
        for k, i in enumerate(idx)
    ]


def fine_tune(
    model: nn.Module,
    samples: Sequence[Sample],
    config: TrainConfig,
    out: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
    prepared: Sequence[PreparedImage] | None = None,
    artifact_model: ArtifactModel | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    extra: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    progress_file: TextIO | None = None,
) -> TrainResult:
    """Fine-tune ``model`` (a :class:`JointModel`, or any module with its forward) on ``samples``.

    JOINT_SPEC "Training facts": seeded 70/30 split by image, T trained on
    MOS_tech and R on MOS_rat with the PLCC + soft-rank losses, AdamW with a
    cosine schedule over all steps, RandomCrop/flip augmentation. After every
    epoch the fusion is refitted on the training split (:func:`fit_fusion`)
    and the held-out SRCC/PLCC of T, R and N are logged (and shown by a tqdm
    bar per epoch). Whenever the held-out SRCC of N improves (ties: SRCC(T) +
    SRCC(R)) the model is saved with
    :func:`~scoring.joint.model.save_checkpoint` to ``out``, its fusion to
    ``fusion_path(out)`` (keys w_t, w_r, plus intercept and provenance), so
    an interrupted run keeps its best epoch. ``<out>.training.json`` is
    rewritten after every epoch with the history, the split (image names),
    the seed and the options (plus ``extra``, e.g. the data source).

    ``names`` label the images in the log (default: the paths);
    ``prepared`` skips :func:`prepare_inputs` (tests, or a caller that
    prepared once for several runs). Seeds torch's global RNG with
    ``config.seed`` (dropout and stochastic depth draw from it). Raises
    :class:`TrainingError` on bad options, too few images or an unreadable image.
    """
    config.validate()
    if len(samples) < MIN_IMAGES:
        raise TrainingError(
            f"{len(samples)} usable images: at least {MIN_IMAGES} are needed "
            "(70/30 split, 2 per part for a correlation)"
        )
    paths = [str(s[0]) for s in samples]
    names = list(names) if names is not None else paths
    if len(names) != len(samples):
        raise TrainingError("names must have one entry per sample")
    targets = np.array([[s[1], s[2], s[3]] for s in samples], dtype=np.float64)
    if not np.all(np.isfinite(targets)):
        raise TrainingError("every MOS must be a finite number")
    out = Path(out)
    fusion_file, log_file = fusion_path(out), training_log_path(out)
    device = torch.device(config.device)
    bar_file = progress_file or sys.stderr

    train_idx, test_idx = split_indices(len(samples), config.seed, config.train_fraction)
    t0 = time.perf_counter()
    if prepared is None:
        prepared = prepare_inputs(
            paths,
            resize=config.resize,
            seed=config.seed,
            lfm_order=config.lfm_order,
            device=device,
            artifact_model=artifact_model,
            cache_dir=cache_dir,
            progress=progress,
            progress_file=bar_file,
        )
    elif len(prepared) != len(samples):
        raise TrainingError("prepared must have one entry per sample")
    prepare_s = time.perf_counter() - t0

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device)
    model.requires_grad_(True)  # a checkpoint loaded with assign=True may carry frozen tensors
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = len(train_batches(len(train_idx), config.batch_size, torch.Generator()))
    total_steps = config.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    y_tech = torch.as_tensor(targets[:, 1], dtype=torch.float32)
    y_rat = torch.as_tensor(targets[:, 2], dtype=torch.float32)

    record: dict[str, Any] = {
        "format": "joint-training/1",
        "spec": "docs/JOINT_SPEC.md, Training facts",
        "seed": config.seed,
        "options": asdict(config),
        "artifact_map": artifact_model.label if artifact_model is not None else "none",
        "loss": "per branch: (1 - PLCC)/2 + rank_weight * (1 - Pearson(soft ranks, ranks))/2",
        "fusion_fit": "least squares of MOS_nat on T, R and a constant, training split",
        "selection": "held-out SRCC of N, ties by SRCC(T) + SRCC(R); epoch 0 is not selectable",
        "n_images": len(samples),
        "split": {"train": [names[i] for i in train_idx], "test": [names[i] for i in test_idx]},
        "prepare_seconds": round(prepare_s, 3),
        "steps_per_epoch": steps_per_epoch,
        **(extra or {}),
        "history": [],
        "best_epoch": None,
    }

    def assess(epoch: int) -> tuple[FusionFit, dict[str, Any], dict[str, Any], tuple[Any, ...]]:
        kw = {"crop": config.crop, "batch_size": config.eval_batch_size, "device": device}
        t_tr, r_tr = predict_prepared(model, prepared, train_idx, **kw)
        t_te, r_te = predict_prepared(model, prepared, test_idx, **kw)
        fusion = fit_fusion(t_tr, r_tr, targets[train_idx, 0])
        train_m = evaluate(t_tr, r_tr, targets[train_idx], fusion)
        held_m = evaluate(t_te, r_te, targets[test_idx], fusion)
        return fusion, train_m, held_m, (t_tr, r_tr, t_te, r_te)

    def line(epoch: int, held: dict[str, Any], extra_text: str = "") -> str:
        def f(v: Any) -> str:
            return "n/a" if v is None else f"{v:.4f}"

        cells = []
        for short, dim in (("T", "technical"), ("R", "rationality"), ("N", "naturalness")):
            m = held[dim]
            raw = "" if m["plcc_on"] == "logistic" else "(raw)"  # too few points for the fit
            cells.append(f"{short} SRCC {f(m['srcc'])} PLCC{raw} {f(m['plcc'])}")
        return f"epoch {epoch}: held-out " + " | ".join(cells) + extra_text

    # Epoch 0: the starting point, as a baseline in the log.
    fusion0, train0, held0, _ = assess(0)
    record["history"].append(
        {
            "epoch": 0,
            "fusion": asdict(fusion0),
            "train": train0,
            "held_out": held0,
        }
    )
    log(line(0, held0, " (initial weights)"))

    best: tuple[float, float] | None = None
    best_epoch, best_fusion, best_held = 0, fusion0, held0
    for epoch in range(1, config.epochs + 1):
        model.train()
        started = time.perf_counter()
        batches = train_batches(len(train_idx), config.batch_size, generator)
        sums: dict[str, float] = {}
        bar = tqdm(
            batches,
            desc=f"epoch {epoch}/{config.epochs}",
            unit="batch",
            disable=not progress,
            file=bar_file,
        )
        for positions in bar:
            idx = [train_idx[p] for p in positions]
            xt, xr = make_batch(
                prepared,
                idx,
                crop=config.crop,
                device=device,
                generator=generator,
                hflip=config.hflip,
            )
            lr = optimizer.param_groups[0]["lr"]
            parts = train_step(
                model,
                optimizer,
                xt,
                xr,
                y_tech[idx].to(device),
                y_rat[idx].to(device),
                tau=config.tau,
                rank_weight=config.rank_weight,
            )
            scheduler.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{parts['loss']:.4f}", lr=f"{lr:.2e}")
        bar.close()
        # a diverged run logs null rather than breaking the strict-JSON history
        losses = {k: _finite(v / len(batches)) for k, v in sums.items()}
        fusion, train_m, held_m, preds = assess(epoch)
        key = _selection_key(held_m)
        improved = best is None or key > best
        entry = {
            "epoch": epoch,
            "steps": len(batches),
            "lr_end": optimizer.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - started, 3),
            "train_loss": losses,
            "fusion": asdict(fusion),
            "train": train_m,
            "held_out": held_m,
            "best_so_far": improved,
        }
        record["history"].append(entry)
        if improved:
            best, best_epoch, best_fusion, best_held = key, epoch, fusion, held_m
            _save(model, out, fusion, epoch)
            t_tr, r_tr, t_te, r_te = preds
            record["best_epoch"] = epoch
            record["fusion"] = asdict(fusion)
            record["best_predictions"] = {
                "train": _predictions_table(names, train_idx, t_tr, r_tr, targets),
                "test": _predictions_table(names, test_idx, t_te, r_te, targets),
            }
        _write_json(log_file, record)
        mark = " (best, saved)" if improved else ""
        mean_loss = losses.get("loss")
        loss_text = "n/a" if mean_loss is None else f"{mean_loss:.4f}"
        log(line(epoch, held_m, f" | train loss {loss_text}{mark}"))

    return TrainResult(
        checkpoint=out,
        fusion_file=fusion_file,
        log_file=log_file,
        best_epoch=best_epoch,
        fusion=best_fusion,
        held_out=best_held,
        train_names=[names[i] for i in train_idx],
        test_names=[names[i] for i in test_idx],
        history=record["history"],
    )


def _save(model: nn.Module, out: Path, fusion: FusionFit, epoch: int) -> None:
    """The checkpoint in the authors' key format, then its fusion JSON (with the intercept).

    ``save_checkpoint`` writes w_t / w_r only when they differ from the
    authors' defaults; the file is rewritten here so it always exists and
    records how it was fitted. A plain module (not a JointModel) is saved as
    its state_dict.
    """
    if isinstance(model, JointModel):
        model.fusion = fusion.weights
        save_checkpoint(model, out)
    else:
        torch.save(model.state_dict(), out)
    _write_json(
        fusion_path(out),
        {
            "w_t": fusion.w_t,
            "w_r": fusion.w_r,
            "intercept": fusion.intercept,
            "n": fusion.n,
            "epoch": epoch,
            "fit": "least squares of MOS_nat on T, R and a constant over the training split; "
            "N = w_t * T + w_r * R (the intercept shifts N only, no correlation changes)",
        },
    )
