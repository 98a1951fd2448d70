"""Statistics per group of integer codes (one ``np.bincount`` each), shared by the
MOS methods and the reliability measures."""

from __future__ import annotations

import numpy as np

__all__ = ["bincount", "div", "group_moments", "pearson_by_group"]


def bincount(codes: np.ndarray, size: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(codes, weights=weights, minlength=size).astype(float)


def div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return a / b


def group_moments(codes: np.ndarray, x: np.ndarray, size: int):
    """Count, mean, deviations from the group mean and their sum of squares.

    Two passes (mean first, then squared deviations) for accuracy: the one-pass
    sum(x^2) - n mean^2 loses digits on 0-100 scales.
    """
    n = bincount(codes, size)
    mean = div(bincount(codes, size, x), n)
    d = x - mean[codes]
    ss = bincount(codes, size, d * d)
    return n, mean, d, ss


def pearson_by_group(g: np.ndarray, a: np.ndarray, b: np.ndarray, size: int) -> np.ndarray:
    """Pearson r of a and b within each group of codes g (NaN if undefined)."""
    n, _, da, saa = group_moments(g, a, size)
    _, _, db, sbb = group_moments(g, b, size)
    sab = bincount(g, size, da * db)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sab / np.sqrt(saa * sbb)
    r[(n < 2) | (saa <= 0) | (sbb <= 0)] = np.nan
    return np.clip(r, -1.0, 1.0)
