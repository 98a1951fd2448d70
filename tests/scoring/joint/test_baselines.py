"""Weight-free baselines on synthetic images with a known ordering."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from scoring.joint.baselines import (
    BASELINES,
    colourfulness,
    contrast,
    luminance,
    sharpness,
    spatial_information,
)
from scoring.joint.predictor import ImageError


def _texture(seed: int = 0, size: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(radius)))


def test_registry_and_interface(tmp_path):
    assert set(BASELINES) == {
        "luminance",
        "contrast",
        "colourfulness",
        "sharpness",
        "spatial_information",
    }
    path = tmp_path / "x.png"
    Image.fromarray(_texture()).save(path)
    for name, scorer in BASELINES.items():
        res = scorer.predict([path, Image.fromarray(_texture(1))], batch_size=8, device="cpu")
        assert [r.image for r in res] == [str(path), "<image 1>"]
        for r in res:
            # one attribute value, documented to fill all three fields
            assert r.technical == r.rationality == r.naturalness
            assert r.artifact_map == "none"
        assert res[0].naturalness == pytest.approx(scorer.score(path)), name
    with pytest.raises(ImageError):
        BASELINES["luminance"].predict([tmp_path / "absent.png"])


def test_luminance_and_contrast_orderings():
    dark = np.full((32, 32, 3), 40, np.uint8)
    bright = np.full((32, 32, 3), 200, np.uint8)
    assert luminance(dark) == pytest.approx(40) and luminance(bright) == pytest.approx(200)
    assert contrast(dark) == pytest.approx(0, abs=1e-9)
    stripes = np.zeros((32, 32, 3), np.uint8)
    stripes[:, ::2] = 255
    low = (stripes // 4 + 96).astype(np.uint8)
    assert contrast(stripes) == pytest.approx(127.5) and contrast(low) < contrast(stripes)
    # luma weights: pure green is brighter than pure blue
    g = np.zeros((4, 4, 3), np.uint8)
    g[..., 1] = 255
    b = np.zeros((4, 4, 3), np.uint8)
    b[..., 2] = 255
    assert luminance(g) > luminance(b)


def test_colourfulness_orderings():
    grey = np.repeat(_texture()[..., :1], 3, axis=2)
    assert colourfulness(grey) == pytest.approx(0.0, abs=1e-9)
    tex = _texture()
    muted = (tex.astype(float) * 0.3 + 0.7 * tex.mean(axis=2, keepdims=True)).astype(np.uint8)
    assert 0 < colourfulness(muted) < colourfulness(tex)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    # flat red: no spread, only the mean term: 0.3 * sqrt(255^2 + 127.5^2)
    assert colourfulness(red) == pytest.approx(0.3 * np.hypot(255, 127.5))


def test_sharpness_and_spatial_information_drop_with_blur():
    tex = _texture(2)
    soft, softer = _blur(tex, 1.0), _blur(tex, 3.0)
    assert sharpness(tex) > sharpness(soft) > sharpness(softer) > 0
    assert spatial_information(tex) > spatial_information(soft) > spatial_information(softer) > 0
    flat = np.full((20, 20, 3), 99, np.uint8)
    assert sharpness(flat) == 0 and spatial_information(flat) == 0
    # tiny images work (reflect-101 borders)
    assert np.isfinite(sharpness(tex[:1, :1])) and np.isfinite(spatial_information(tex[:2, :2]))


def test_spatial_information_of_a_step_edge():
    step = np.zeros((10, 10, 3), np.uint8)
    step[:, 5:] = 100
    # Sobel x response at the edge: 4 * 100 on each of the two columns next to it
    assert spatial_information(step) == pytest.approx(2 * 400 / 10)
