"""The two network inputs: PIL-exact transforms and the LFM / partition order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from scoring.joint.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _resize_crop_pil,
    content_key,
    content_seed,
    final_transform,
    load_rgb,
    pil_resize_bilinear,
    rationality_input,
    rationality_uint8,
    resize_crop_tensor,
    technical_input,
)

from . import lfm_oracle
from .conftest import AGIN

AUTHORS = T.Compose(
    [T.Resize(384), T.CenterCrop(224), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
)


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


@pytest.mark.parametrize(
    ("src", "dst"),
    [((512, 512), (384, 384)), ((224, 224), (384, 384)), ((53, 37), (90, 20)), ((1, 1), (7, 4))],
)
def test_pil_resize_bilinear_is_bit_exact(src, dst):
    img = np.random.default_rng(src[0]).integers(0, 256, (src[1], src[0], 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(img).resize(dst, Image.Resampling.BILINEAR))
    ours = pil_resize_bilinear(_chw(img), dst).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("size", [(512, 512), (640, 427), (300, 500), (384, 600)])
def test_final_transform_equals_torchvision(size):
    img = Image.fromarray(
        np.random.default_rng(size[0]).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    )
    expected = AUTHORS(img)
    assert torch.equal(final_transform(img), expected)
    # the on-device twin: same uint8 crop, same float ops
    crop = resize_crop_tensor(_chw(np.asarray(img)))
    np.testing.assert_array_equal(crop.permute(1, 2, 0).numpy(), np.asarray(_resize_crop_pil(img)))


def test_load_rgb_converts_like_pil(tmp_path, dreaml_rgb):
    rgba = Image.open(AGIN / "Dreaml_coco_17.png")
    assert rgba.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(load_rgb(AGIN / "Dreaml_coco_17.png")), dreaml_rgb)
    for mode in ("L", "P", "RGBA", "LA", "CMYK"):
        im = Image.fromarray(dreaml_rgb[:40, :40]).convert(mode)
        np.testing.assert_array_equal(np.asarray(load_rgb(im)), np.asarray(im.convert("RGB")))
        path = tmp_path / f"x_{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
        im.save(path)
        assert load_rgb(path).mode == "RGB"


def test_rationality_input_follows_the_spec_order(cocosnet_rgb):
    img = np.ascontiguousarray(cocosnet_rgb[:300, :260])  # portrait: Resize gives 384 x 443
    rgb = Image.fromarray(img)
    expected = np.asarray(_resize_crop_pil(Image.fromarray(lfm_oracle.lfm(img))))
    ours = rationality_uint8(rgb)
    assert ours.shape == (224, 224, 3)
    assert np.abs(ours.astype(int) - expected).max() <= 1
    x = rationality_input(rgb)
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32
    # the cheap order: LFM on the 224 crop (the training loader's order)
    cheap = rationality_uint8(rgb, lfm_order="after_resize")
    ref_cheap = lfm_oracle.lfm(np.asarray(_resize_crop_pil(rgb)))
    assert np.abs(cheap.astype(int) - ref_cheap).max() <= 1
    assert not np.array_equal(cheap, ours)
    with pytest.raises(ValueError):
        rationality_uint8(rgb, lfm_order="sideways")


def test_technical_input_precomputed_and_seeded(cocosnet_rgb):
    part = Image.open(AGIN / "CoCosNet_23_partitioned.png")
    assert torch.equal(technical_input(partitioned=part), AUTHORS(part.convert("RGB")))
    rgb = Image.fromarray(cocosnet_rgb)
    a = technical_input(rgb)
    assert torch.equal(a, technical_input(rgb, rng=content_seed(rgb, 0)))
    assert not torch.equal(a, technical_input(rgb, rng=content_seed(rgb, 1)))
    with pytest.raises(ValueError):
        technical_input()


def test_content_key_depends_on_pixels_only(cocosnet_rgb):
    a = Image.fromarray(cocosnet_rgb)
    b = Image.fromarray(cocosnet_rgb.copy())
    assert content_key(a) == content_key(b)
    c = cocosnet_rgb.copy()
    c[0, 0, 0] ^= 1
    assert content_key(Image.fromarray(c)) != content_key(a)
