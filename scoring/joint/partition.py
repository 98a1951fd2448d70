"""Artifact-aware patch partition: the technical branch's input (JOINT_SPEC.md, "Technical input").

1. ``cv_resize_bilinear``: the RGB image resized to 224 x 224 with OpenCV
   ``resize(..., INTER_LINEAR)`` semantics, re-implemented in NumPy (OpenCV is
   not a dependency): half-pixel centres (sx = (dx + 0.5) * src/dst - 0.5,
   clamped at the borders), no antialiasing when shrinking, and OpenCV's
   uint8 fixed-point arithmetic: 11-bit weights (``saturate_cast<short>(w *
   2048)``), an exact integer horizontal pass, and the vertical pass of its x86
   SIMD kernel, ((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16) + 2 >> 2.
   This reproduces the authors' 224 x 224 partition of CoCosNet_23 exactly.
2. An artifact map (224 x 224, non-zero = artifact) from a PAL4VST TorchScript
   model (:class:`ArtifactModel`), or none: then no patch is protected and the
   result records ``artifact_map = "none"``.
3. ``partition_patches``: a 7 x 7 grid of 32 x 32 patches, visited row by
   row; an artifact-free patch not yet swapped is swapped with a random one of
   its in-grid 8-neighbours that is not yet swapped and artifact-free (if
   any), and both are marked swapped. Artifact patches never move. The random
   choice draws from a NumPy ``Generator``, so a seed fixes the result.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = [
    "GRID",
    "NO_ARTIFACT_MAP",
    "PATCH",
    "SIZE",
    "ArtifactModel",
    "ArtifactModelError",
    "Partition",
    "artifact_patches",
    "cv_resize_bilinear",
    "partition_image",
    "partition_patches",
]

SIZE = 224
GRID = 7
PATCH = SIZE // GRID  # 32
NO_ARTIFACT_MAP = "none"
# PAL4VST input normalisation (RGB, 0..255 scale)
PAL_MEAN = (123.675, 116.28, 103.53)
PAL_STD = (58.395, 57.12, 57.375)

_COEF_BITS = 11
_COEF_SCALE = 1 << _COEF_BITS


# ---------------------------------------------------------------------------
# OpenCV INTER_LINEAR resize for uint8
# ---------------------------------------------------------------------------


def _cv_linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per output index: first source index, second source index, and the two 11-bit weights."""
    scale = 1.0 / (dst / src)  # OpenCV: scale_x = 1. / inv_scale_x, inv = dst / src
    d = np.arange(dst, dtype=np.float64)
    f = ((d + 0.5) * scale - 0.5).astype(np.float32)  # OpenCV computes fx in float
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    low = s < 0
    f[low] = 0.0
    s[low] = 0
    high = s >= src - 1
    f[high] = 0.0
    s[high] = src - 1
    # saturate_cast<short>(float) rounds half to even, as np.rint does
    w1 = np.rint(f * np.float32(_COEF_SCALE)).astype(np.int64)
    w0 = np.rint((np.float32(1.0) - f) * np.float32(_COEF_SCALE)).astype(np.int64)
    s1 = np.minimum(s + 1, src - 1)
    return s, s1, np.stack([w0, w1], axis=1)


def cv_resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(image, size, interpolation=INTER_LINEAR)`` for uint8 H x W x C arrays.

    ``size`` is (width, height) as in OpenCV. See the module docstring for
    the arithmetic; identical sizes return a copy.
    """
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    squeeze = image.ndim == 2
    img = image[..., None] if squeeze else image
    h, w = img.shape[:2]
    out_w, out_h = size
    if (out_w, out_h) == (w, h):
        return image.copy()
    x0, x1, wx = _cv_linear_taps(w, out_w)
    y0, y1, wy = _cv_linear_taps(h, out_h)
    ax0, ax1 = wx[None, :, 0, None].astype(np.int32), wx[None, :, 1, None].astype(np.int32)

    def hpass(rows: np.ndarray) -> np.ndarray:
        # exact integers S[x0] * a0 + S[x1] * a1 (at most 255 * 2048: int32 is enough);
        # only the source rows the vertical pass reads are computed
        src = img[rows].astype(np.int32)
        return src[:, x0, :] * ax0 + src[:, x1, :] * ax1

    # vertical pass, OpenCV's SIMD kernel (VResizeLinearVec_32s8u)
    r0 = hpass(y0) >> 4
    r1 = hpass(y1) >> 4
    b0 = wy[:, 0][:, None, None].astype(np.int32)
    b1 = wy[:, 1][:, None, None].astype(np.int32)
    val = (((r0 * b0) >> 16) + ((r1 * b1) >> 16) + 2) >> 2
    out = np.clip(val, 0, 255).astype(np.uint8)
    return out[..., 0] if squeeze else out


# ---------------------------------------------------------------------------
# Patch partition
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    """A partitioned 224 x 224 image and where each of its patches came from.

    ``source[i, j]`` is the (row, col) grid cell whose patch now sits at (i, j);
    ``artifact[i, j]`` tells whether that cell held an artifact pixel.
    """

    image: np.ndarray
    source: np.ndarray  # GRID x GRID x 2 int
    artifact: np.ndarray  # GRID x GRID bool


def artifact_patches(mask: np.ndarray | None) -> np.ndarray:
    """GRID x GRID bool: which 32 x 32 patches of a 224 x 224 map hold a non-zero pixel."""
    if mask is None:
        return np.zeros((GRID, GRID), dtype=bool)
    m = np.asarray(mask)
    if m.shape != (SIZE, SIZE):
        raise ValueError(f"artifact map must be {SIZE} x {SIZE}, got {m.shape}")
    return (m != 0).reshape(GRID, PATCH, GRID, PATCH).any(axis=(1, 3))


_NEIGHBOURS = [(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)]


def partition_patches(
    image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
) -> Partition:
    """Shuffle the patches of a 224 x 224 x C uint8 image (spec, technical input step 3).

    Eligible neighbours are listed in row-major offset order and one is drawn
    with ``rng.integers``; a patch with no eligible neighbour stays (unmarked).
    """
    if image.shape[:2] != (SIZE, SIZE):
        raise ValueError(f"expected a {SIZE} x {SIZE} image, got {image.shape}")
    art = artifact_patches(mask)
    swapped = np.zeros((GRID, GRID), dtype=bool)
    source = np.stack(np.meshgrid(np.arange(GRID), np.arange(GRID), indexing="ij"), axis=-1)
    for i in range(GRID):
        for j in range(GRID):
            if swapped[i, j] or art[i, j]:
                continue
            cands = [
                (i + di, j + dj)
                for di, dj in _NEIGHBOURS
                if 0 <= i + di < GRID
                and 0 <= j + dj < GRID
                and not swapped[i + di, j + dj]
                and not art[i + di, j + dj]
            ]
            if not cands:
                continue
            k, m = cands[int(rng.integers(len(cands)))]
            source[[i, k], [j, m]] = source[[k, i], [m, j]]
            swapped[i, j] = swapped[k, m] = True
    out = np.empty_like(image)
    for i in range(GRID):
        for j in range(GRID):
            si, sj = source[i, j]
            out[i * PATCH : (i + 1) * PATCH, j * PATCH : (j + 1) * PATCH] = image[
                si * PATCH : (si + 1) * PATCH, sj * PATCH : (sj + 1) * PATCH
            ]
    return Partition(image=out, source=source, artifact=art)


def partition_image(
    rgb: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator
) -> Partition:
    """Full-size H x W x 3 uint8 RGB -> OpenCV-bilinear 224 x 224 -> patch partition."""
    return partition_patches(cv_resize_bilinear(rgb, (SIZE, SIZE)), mask, rng)


# ---------------------------------------------------------------------------
# PAL4VST artifact maps (optional)
# ---------------------------------------------------------------------------


class ArtifactModelError(Exception):
    """The artifact model file cannot be loaded or its output is not a 224 x 224 map."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ArtifactModel:
    """A PAL4VST artifact localiser exported to TorchScript (``end2end.pt``).

    Preprocessing (spec, technical input step 2): the RGB image resized to
    224 x 224 by PIL (``Image.resize``'s default filter, bicubic, unless
    ``resample`` says otherwise), RGB 0..255 normalised with mean
    (123.675, 116.28, 103.53) and std (58.395, 57.12, 57.375), NCHW float32;
    output ``[0][0]`` is the 224 x 224 map, non-zero where artifacts are.
    Images are run one at a time because an exported graph may fix batch 1.
    ``label`` ("<file name>@sha256:<digest>") is recorded with every result.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        resample: int = Image.Resampling.BICUBIC,
    ) -> None:
        p = Path(path)
        if not p.is_file():
            raise ArtifactModelError(f"artifact model not found: {p}")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        try:
            with warnings.catch_warnings():
                # torch >= 2.10 deprecates TorchScript; PAL4VST ships only as TorchScript
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(str(p), map_location=self.device).eval()
        except Exception as exc:  # any load failure means "not a TorchScript file"
            raise ArtifactModelError(f"{p}: not a TorchScript model ({exc})") from exc
        self.resample = resample
        self.label = f"{p.name}@sha256:{_sha256(p)}"

    def prepare(self, rgb: Image.Image) -> torch.Tensor:
        """3 x 224 x 224 float32 input for one RGB PIL image (CPU; cheap, worker-safe)."""
        small = rgb.convert("RGB").resize((SIZE, SIZE), self.resample)
        arr = np.asarray(small, dtype=np.float32)
        arr = (arr - np.array(PAL_MEAN, np.float32)) / np.array(PAL_STD, np.float32)
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())

    @torch.inference_mode()
    def masks(self, inputs: torch.Tensor) -> np.ndarray:
        """N x 3 x 224 x 224 prepared inputs -> N x 224 x 224 bool artifact masks."""
        maps = []
        for x in inputs:
            out = self.module(x[None].to(self.device))
            m = out[0][0]
            if not torch.is_tensor(m) or tuple(m.shape) != (SIZE, SIZE):
                shape = tuple(m.shape) if torch.is_tensor(m) else type(m).__name__
                raise ArtifactModelError(
                    f"artifact model output [0][0] must be a {SIZE} x {SIZE} map, got {shape}"
                )
            maps.append((m != 0).cpu().numpy())
        return np.stack(maps) if maps else np.zeros((0, SIZE, SIZE), dtype=bool)

    def mask(self, rgb: Image.Image) -> np.ndarray:
        """224 x 224 bool artifact mask of one RGB PIL image."""
        return self.masks(self.prepare(rgb)[None])[0]
