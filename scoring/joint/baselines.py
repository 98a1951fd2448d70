"""Weight-free baseline scorers with the :class:`~scoring.joint.predictor.Predictor` interface.

Each scorer measures one image attribute on the full-resolution RGB image
(``.convert("RGB")``, values 0..255, float64) and puts that ONE value in all
three result fields, ``technical``, ``rationality`` and ``naturalness``: a
baseline does not know the dimensions apart, and filling all three lets the
agreement page show how far the single attribute explains each MOS dimension.
``artifact_map`` is always "none".

Grey is BT.601 luma, 0.299 R + 0.587 G + 0.114 B. Filters use OpenCV's
default border (reflect-101), as ``cv2.Laplacian`` / ``cv2.Sobel`` would.

- luminance: mean grey.
- contrast: standard deviation of grey (population, ddof = 0).
- colourfulness: Hasler and Suesstrunk (2003), M = sigma_rgyb + 0.3 mu_rgyb,
  with rg = R - G and yb = (R + G) / 2 - B.
- sharpness: variance of the 4-neighbour Laplacian of grey.
- spatial_information: mean Sobel gradient magnitude of grey (ITU-T P.910's
  SI takes the standard deviation instead; the mean is asked for here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .partition import NO_ARTIFACT_MAP
from .predictor import ImageInput, JointResult, image_name, open_image

__all__ = [
    "BASELINES",
    "BaselineScorer",
    "colourfulness",
    "contrast",
    "grey",
    "luminance",
    "sharpness",
    "spatial_information",
]


def grey(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 (0..255) -> H x W float64 BT.601 luma."""
    x = np.asarray(rgb, dtype=np.float64)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def _pad101(a: np.ndarray) -> np.ndarray:
    # numpy "reflect" is OpenCV's reflect-101; a length-1 axis repeats itself
    return np.pad(a, 1, mode="reflect")


def luminance(rgb: np.ndarray) -> float:
    return float(grey(rgb).mean())


def contrast(rgb: np.ndarray) -> float:
    return float(grey(rgb).std())


def colourfulness(rgb: np.ndarray) -> float:
    x = np.asarray(rgb, dtype=np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    sigma = np.sqrt(rg.std() ** 2 + yb.std() ** 2)
    mu = np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    return float(sigma + 0.3 * mu)


def sharpness(rgb: np.ndarray) -> float:
    p = _pad101(grey(rgb))
    lap = p[:-2, 1:-1] + p[1:-1, :-2] - 4 * p[1:-1, 1:-1] + p[1:-1, 2:] + p[2:, 1:-1]
    return float(lap.var())


def spatial_information(rgb: np.ndarray) -> float:
    p = _pad101(grey(rgb))
    # Sobel: x derivative [-1 0 1] smoothed by [1 2 1] along y, and the transpose
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return float(np.sqrt(gx**2 + gy**2).mean())


class BaselineScorer:
    """A weight-free scorer: ``predict(images, ...)`` like :class:`Predictor`.

    ``technical_images``, ``batch_size`` and ``device`` are accepted for
    interface compatibility and ignored (the attribute is cheap NumPy).
    """

    def __init__(self, name: str, fn: Callable[[np.ndarray], float]) -> None:
        self.name = name
        self.fn = fn

    def __repr__(self) -> str:
        return f"BaselineScorer({self.name!r})"

    def score(self, image: ImageInput) -> float:
        return self.fn(np.asarray(open_image(image, 0)))

    def predict(
        self,
        images: Sequence[ImageInput],
        technical_images: Sequence[ImageInput | None] | None = None,
        *,
        batch_size: int | None = None,
        device: object = None,
    ) -> list[JointResult]:
        results = []
        for i, image in enumerate(images):
            value = self.fn(np.asarray(open_image(image, i)))
            results.append(
                JointResult(
                    image=image_name(image, i),
                    technical=value,
                    rationality=value,
                    naturalness=value,
                    artifact_map=NO_ARTIFACT_MAP,
                )
            )
        return results


BASELINES: dict[str, BaselineScorer] = {
    name: BaselineScorer(name, fn)
    for name, fn in (
        ("luminance", luminance),
        ("contrast", contrast),
        ("colourfulness", colourfulness),
        ("sharpness", sharpness),
        ("spatial_information", spatial_information),
    )
}
