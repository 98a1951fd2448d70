"""JOINT's two network inputs (JOINT_SPEC.md, "Rationality input" and "Technical input").

Both end with the authors' inference transform: PIL ``Resize(384)`` (shorter
side to 384, bilinear) -> ``CenterCrop(224)`` -> ``ToTensor`` -> ImageNet
``Normalize``, in float32.

- Rationality: LFM on the full-resolution RGB image, then the transform
  (``lfm_order="before_resize"``, the authors' inference script). The cheap
  ``"after_resize"`` order runs the transform's Resize/CenterCrop first and LFM
  on the 224 x 224 crop (their training loader's order).
- Technical: the artifact-aware patch partition (``partition.py``), or a
  precomputed partition image, then the transform.

Images are converted with PIL ``.convert("RGB")`` as the authors do (an RGBA
image loses its alpha channel without compositing).

:func:`pil_resize_bilinear` re-implements Pillow's uint8 bilinear resize in
torch, bit for bit (same coefficients, 22-bit fixed point, horizontal pass
first with its uint8 clipping), so the transform can run on a GPU in the main
process (``Predictor(preprocess_on_device=True)``) with results identical to
PIL in the workers.
"""

from __future__ import annotations

import hashlib
import math
import os
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from PIL import Image

from .lfm import lfm_tensor
from .partition import partition_image

__all__ = [
    "CROP",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESIZE",
    "LfmOrder",
    "center_crop_box",
    "content_key",
    "content_seed",
    "final_crop_uint8",
    "final_transform",
    "load_rgb",
    "pil_resize_bilinear",
    "rationality_input",
    "rationality_uint8",
    "resize_crop_tensor",
    "resized_size",
    "technical_input",
    "technical_uint8",
    "to_normalized_tensor",
]

RESIZE = 384
CROP = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LfmOrder = Literal["before_resize", "after_resize"]


def load_rgb(image: str | os.PathLike[str] | Image.Image) -> Image.Image:
    """Open a path (or take a PIL image) and ``.convert("RGB")`` it, as the authors do."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    with Image.open(image) as im:
        im.load()
        return im.convert("RGB")


def content_key(rgb: Image.Image) -> int:
    """64 bits of the SHA-256 of an RGB image's size and pixels."""
    h = hashlib.sha256()
    h.update(f"{rgb.size[0]}x{rgb.size[1]}:".encode())
    h.update(rgb.tobytes())
    return int.from_bytes(h.digest()[:8], "little")


def content_seed(rgb: Image.Image, seed: int) -> np.random.Generator:
    """A Generator fixed by ``seed`` and the image's pixels, so a partition does not
    depend on batch size, order or file name."""
    return np.random.default_rng([seed, content_key(rgb)])


# ---------------------------------------------------------------------------
# Geometry of Resize(384) -> CenterCrop(224), as torchvision computes it
# ---------------------------------------------------------------------------


def resized_size(width: int, height: int, size: int = RESIZE) -> tuple[int, int]:
    """(width, height) after torchvision ``Resize(size)`` (shorter side to ``size``)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def center_crop_box(width: int, height: int, crop: int = CROP) -> tuple[int, int]:
    """(left, top) of torchvision ``CenterCrop(crop)``: int(round((size - crop) / 2))."""
    return int(round((width - crop) / 2.0)), int(round((height - crop) / 2.0))


def _resize_crop_pil(rgb: Image.Image) -> Image.Image:
    """PIL ``Resize(384)`` bilinear then ``CenterCrop(224)`` (torchvision's arithmetic)."""
    w, h = rgb.size
    nw, nh = resized_size(w, h)
    if (nw, nh) != (w, h):  # torchvision returns the image untouched when sizes agree
        rgb = rgb.resize((nw, nh), Image.Resampling.BILINEAR)
    if nw < CROP or nh < CROP:
        raise ValueError(f"image too small for CenterCrop({CROP}) after Resize({RESIZE})")
    left, top = center_crop_box(nw, nh)
    return rgb.crop((left, top, left + CROP, top + CROP))


def final_crop_uint8(rgb: Image.Image) -> np.ndarray:
    """224 x 224 x 3 uint8 after PIL ``Resize(384)`` + ``CenterCrop(224)`` (before ToTensor)."""
    return np.asarray(_resize_crop_pil(rgb))


def to_normalized_tensor(arr: torch.Tensor) -> torch.Tensor:
    """... x 3 x H x W uint8 -> float32 ToTensor (/255) then ImageNet Normalize.

    Same operations and order as torchvision (``div(255)``, ``sub_(mean)``,
    ``div_(std)``), so CPU and CUDA give the same bits.
    """
    x = arr.to(torch.float32).div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return x.sub_(mean).div_(std)


def _hwc_to_chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def final_transform(rgb: Image.Image) -> torch.Tensor:
    """Resize(384) -> CenterCrop(224) -> ToTensor -> Normalize: 3 x 224 x 224 float32."""
    return to_normalized_tensor(_hwc_to_chw(np.asarray(_resize_crop_pil(rgb))))


# ---------------------------------------------------------------------------
# The two inputs
# ---------------------------------------------------------------------------


def rationality_uint8(
    rgb: Image.Image,
    *,
    lfm_order: LfmOrder = "before_resize",
    lfm_backend: str = "eager",
    lfm_device: str | torch.device = "cpu",
) -> np.ndarray:
    """The rationality image before ToTensor: 224 x 224 x 3 uint8 (LFM, resize, crop)."""
    if lfm_order == "before_resize":
        x = _hwc_to_chw(np.asarray(rgb))[None].to(lfm_device)
        smooth = lfm_tensor(x, backend=lfm_backend)[0].permute(1, 2, 0).cpu().numpy()
        return np.asarray(_resize_crop_pil(Image.fromarray(smooth)))
    if lfm_order == "after_resize":
        crop = _hwc_to_chw(np.asarray(_resize_crop_pil(rgb)))[None].to(lfm_device)
        return lfm_tensor(crop, backend=lfm_backend)[0].permute(1, 2, 0).cpu().numpy()
    raise ValueError(f"lfm_order must be 'before_resize' or 'after_resize', not {lfm_order!r}")


def rationality_input(
    rgb: Image.Image,
    *,
    lfm_order: LfmOrder = "before_resize",
    lfm_backend: str = "eager",
) -> torch.Tensor:
    """Rationality branch input: 3 x 224 x 224 float32 (spec: LFM first, then the transform)."""
    arr = rationality_uint8(rgb, lfm_order=lfm_order, lfm_backend=lfm_backend)
    return to_normalized_tensor(_hwc_to_chw(arr))


def technical_uint8(
    rgb: Image.Image,
    *,
    mask: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """The 224 x 224 x 3 uint8 partition (before the final transform)."""
    return partition_image(np.asarray(rgb), mask, rng).image


def technical_input(
    rgb: Image.Image | None = None,
    *,
    mask: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    partitioned: Image.Image | None = None,
) -> torch.Tensor:
    """Technical branch input: 3 x 224 x 224 float32.

    Either from ``rgb`` (partition with ``mask`` and ``rng``; ``rng`` defaults
    to :func:`content_seed` with seed 0), or from a precomputed ``partitioned``
    image (the authors' sibling-folder files), which is only transformed.
    """
    if partitioned is not None:
        return final_transform(load_rgb(partitioned))
    if rgb is None:
        raise ValueError("technical_input needs an image or a precomputed partition")
    rng = rng if rng is not None else content_seed(rgb, 0)
    return final_transform(Image.fromarray(technical_uint8(rgb, mask=mask, rng=rng)))


# ---------------------------------------------------------------------------
# Pillow's bilinear resize in torch (bit-exact), for the on-device path
# ---------------------------------------------------------------------------

_PRECISION_BITS = 32 - 8 - 2  # Pillow Resample.c


@lru_cache(maxsize=64)
def _pil_bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """out x in matrix of Pillow's 22-bit fixed-point bilinear coefficients (as float64)."""
    scale = in_size / out_size  # (double)(in1 - in0) / outSize
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    mat = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        ws = []
        for x in range(xmax):
            t = abs((x + xmin - center + 0.5) * ss)
            ws.append(1.0 - t if t < 1.0 else 0.0)
        ww = sum_left_to_right(ws)
        for x, w in enumerate(ws):
            k = w / ww if ww != 0.0 else w
            # normalize_coeffs_8bpc: C int cast truncates toward zero
            fixed = (
                math.trunc(-0.5 + k * (1 << _PRECISION_BITS))
                if k < 0
                else math.trunc(0.5 + k * (1 << _PRECISION_BITS))
            )
            mat[xx, xmin + x] = fixed
    return mat


def sum_left_to_right(values: list[float]) -> float:
    """Sequential float sum (Pillow's ``ww += w`` loop), not Python's compensated ``sum``."""
    total = 0.0
    for v in values:
        total = total + v
    return total


def _fixed_pass(x: torch.Tensor, mat: torch.Tensor, dim: int) -> torch.Tensor:
    """One Pillow pass along ``dim`` (-1: width, -2: height): integer sums, >> 22, clip8."""
    if dim == -1:
        acc = torch.matmul(x, mat.T)
    else:
        acc = torch.matmul(mat, x)
    acc = acc + float(1 << (_PRECISION_BITS - 1))
    # exact: every term is an integer < 2**53; floor == C's >> on the positive range
    return torch.floor(acc / float(1 << _PRECISION_BITS)).clamp_(0, 255)


@lru_cache(maxsize=64)
def _pil_matrix_on(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """:func:`_pil_bilinear_matrix` as a tensor, cached per device (no copy per call)."""
    return torch.from_numpy(_pil_bilinear_matrix(in_size, out_size)).to(device)


def pil_resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``PIL.Image.resize(size, BILINEAR)`` for ... x C x H x W uint8 tensors, bit-exact.

    ``size`` is (width, height) as in PIL. Works on any device (float64 matmul
    with integer operands is exact here).
    """
    out_w, out_h = size
    h, w = x.shape[-2], x.shape[-1]
    y = x.to(torch.float64)
    if out_w != w:  # Pillow: horizontal pass first, clipped to uint8
        y = _fixed_pass(y, _pil_matrix_on(w, out_w, y.device), -1)
    if out_h != h:
        y = _fixed_pass(y, _pil_matrix_on(h, out_h, y.device), -2)
    return y.to(torch.uint8)


def resize_crop_tensor(x: torch.Tensor) -> torch.Tensor:
    """``Resize(384)`` + ``CenterCrop(224)`` on ... x 3 x H x W uint8 tensors (any device)."""
    h, w = x.shape[-2], x.shape[-1]
    nw, nh = resized_size(w, h)
    if (nw, nh) != (w, h):
        x = pil_resize_bilinear(x, (nw, nh))
    left, top = center_crop_box(nw, nh)
    return x[..., top : top + CROP, left : left + CROP]
