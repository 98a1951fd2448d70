"""Plain NumPy/SciPy oracle of the LFM (Ambrosio-Tortorelli smoothing) of JOINT_SPEC.md.

Written straight from the spec, one channel at a time, with SciPy's own ``cg``
(x0 = 0, stop when ||r|| < 0.1 ||b|| before each iteration, at most 6
iterations) and ``np.pad(mode="reflect")``, which is OpenCV's reflect-101
(index -1 reads index 1; an axis of length 1 reads itself, as OpenCV does).
It deliberately shares no code with ``scoring.joint.lfm``: it is the reference
the torch implementation is tested and benchmarked against.

Degenerate cases, defined identically in the torch code:
- a channel whose maximum is 0 gives g = 0 (instead of 0/0 = NaN);
- a right-hand side of norm 0 returns x = 0 (SciPy's ``cg`` already does so);
- a min-max normalisation with max - min <= DBL_EPSILON gives 0 everywhere
  (OpenCV's ``normalize`` uses scale 0 and shift = the lower bound 0 there).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, cg

ALPHA = 1000.0
BETA = 0.01
EPSILON = 0.01
A_CONST = BETA / (4 * EPSILON)  # 0.25
M_CONST = EPSILON * BETA  # 1e-4
DBL_EPSILON = float(np.finfo(np.float64).eps)


def _pad(u: np.ndarray) -> np.ndarray:
    return np.pad(u, 1, mode="reflect")


def dx(u: np.ndarray) -> np.ndarray:
    p = _pad(u)
    return p[1:-1, 2:] - p[1:-1, :-2]


def dy(u: np.ndarray) -> np.ndarray:
    p = _pad(u)
    return p[2:, 1:-1] - p[:-2, 1:-1]


def laplacian(u: np.ndarray) -> np.ndarray:
    p = _pad(u)
    return p[:-2, 1:-1] + p[1:-1, :-2] - 4 * u + p[1:-1, 2:] + p[2:, 1:-1]


def _minmax_to_uint8_trunc(f: np.ndarray) -> np.ndarray:
    lo, hi = float(f.min()), float(f.max())
    if hi - lo > DBL_EPSILON:
        scale = 255.0 * (1.0 / (hi - lo))
        out = f * scale + (-lo * scale)
    else:
        out = np.zeros_like(f)
    # np.uint8 of a float array truncates; clip only guards -0.0000001-like values.
    return np.clip(out, 0, 255).astype(np.uint8)


def lfm_channel(channel: np.ndarray, maxiter: int = 6) -> np.ndarray:
    """LFM of one H x W uint8 channel -> H x W uint8 (spec steps 1-5)."""
    shape = channel.shape
    n = channel.size
    c = channel.astype(np.float64)
    cmax = c.max()
    g = c / cmax if cmax > 0 else np.zeros_like(c)
    f = g
    grad_mag = dx(f) ** 2 + dy(f) ** 2

    def edge_op(v: np.ndarray) -> np.ndarray:
        v = v.reshape(shape)
        return (v * (ALPHA * grad_mag + A_CONST) - M_CONST * laplacian(v)).ravel()

    a_e = LinearOperator((n, n), matvec=edge_op, dtype=np.float64)
    v, _ = cg(a_e, np.full(n, A_CONST), rtol=0.1, maxiter=maxiter)
    e = v.reshape(shape) ** 2

    def image_op(u: np.ndarray) -> np.ndarray:
        u = u.reshape(shape)
        return (u - 2 * ALPHA * (dx(e * dx(u)) + dy(e * dy(u)))).ravel()

    a_f = LinearOperator((n, n), matvec=image_op, dtype=np.float64)
    u, _ = cg(a_f, g.ravel(), rtol=0.1, maxiter=maxiter)
    return _minmax_to_uint8_trunc(u.reshape(shape))


def lfm(rgb: np.ndarray, maxiter: int = 6) -> np.ndarray:
    """LFM of an H x W x C uint8 image -> H x W x C uint8 (spec steps 1-6)."""
    return joint_minmax(
        np.stack([lfm_channel(rgb[..., i], maxiter) for i in range(rgb.shape[-1])], -1)
    )


def joint_minmax(chans: np.ndarray) -> np.ndarray:
    """Spec step 6: min-max over the whole stacked uint8 array to [0, 255], rounded."""
    lo, hi = int(chans.min()), int(chans.max())
    if hi == lo:
        return np.zeros_like(chans)
    scale = 255.0 / (hi - lo)
    return np.clip(np.rint(chans * scale - lo * scale), 0, 255).astype(np.uint8)
