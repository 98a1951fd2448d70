"""Model-vs-human agreement, the VQEG convention used by the AGIN authors (METHODS.md section 8).

Pure NumPy / SciPy / pandas: no Django, no Celery, so the same numbers come out
of a notebook, the ``agreement`` management command and the dashboard.

- SRCC (Spearman) and KRCC (Kendall tau-b) on the raw predictions.
- PLCC and RMSE after a monotonic 4-parameter logistic fit of predictions x to
  MOS y, ``yhat = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``
  (:func:`logistic4`, :func:`fit_logistic`). When the fit fails (or there are
  too few points), PLCC is computed on the raw predictions and RMSE after a
  linear fit, and the result says so (``fit``, ``plcc_on``, ``rmse_on``,
  ``notes``): never a silent NaN.
- Percentile bootstrap 95% intervals for SRCC, KRCC, PLCC and RMSE, resampling
  stimuli with replacement (``n_boot`` resamples, NumPy ``default_rng(seed)``).
  SRCC is vectorised over resamples; the logistic is refitted on every
  resample, started from the full-sample parameters (a warm start: a few
  Levenberg-Marquardt steps, the same local optimum as the point estimate),
  capped at :data:`BOOT_MAXFEV` evaluations. 1,000 resamples of 6,000 stimuli
  take 1.5-4.5 s on two loaded cores.

:func:`agreement` works on two aligned arrays, :func:`agreement_table` on a
frame with prediction and MOS columns (optionally per generator, task, ...),
and :func:`read_predictions_and_mos` joins a predictions CSV with a MOS CSV.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit, leastsq
from scipy.special import expit

__all__ = [
    "DEFAULT_PAIRS",
    "METRICS",
    "MIN_BOOTSTRAP_POINTS",
    "MIN_FIT_POINTS",
    "AgreementResult",
    "JoinedScores",
    "LogisticFitError",
    "ScoresFileError",
    "agreement",
    "agreement_table",
    "fit_logistic",
    "logistic4",
    "read_predictions_and_mos",
]

METRICS = ("srcc", "krcc", "plcc", "rmse")
# JOINT's outputs and the MOS columns they are compared with (METHODS.md section 8).
DEFAULT_PAIRS: dict[str, str] = {
    "naturalness": "overall",
    "technical": "technical",
    "rationality": "rationality",
}
# Four parameters need more points than parameters: with exactly 4 the curve
# interpolates the data (PLCC = 1 by construction) and has no covariance.
MIN_FIT_POINTS = 5
# Below this a resample is too often constant for an interval to mean anything.
MIN_BOOTSTRAP_POINTS = 4
# Generous for the full-sample fit. A warm-started bootstrap refit converges in a
# few steps when the logistic is well determined; the cap only bites on nearly
# linear relations, where the reached point is kept (see _refit_std).
FIT_MAXFEV = 20_000
BOOT_MAXFEV = 50
# PLCC and RMSE need far less precision than the default 1.5e-8 relative tolerances.
BOOT_TOL = 1e-6
# Resamples are drawn and ranked in blocks of about this many values (memory bound).
_BLOCK_VALUES = 2_000_000


# --------------------------------------------------------------------------- logistic


class LogisticFitError(RuntimeError):
    """The 4-parameter logistic could not be fitted; ``str(exc)`` is the reason."""


def logistic4(x: Any, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The VQEG monotonic logistic ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``.

    Written with :func:`scipy.special.expit`, which is the same function without
    overflow for large ``|x - b3| / |b4|``. ``b4`` must be non-zero.
    """
    x = np.asarray(x, dtype=float)
    return (b1 - b2) * expit((x - b3) / abs(b4)) + b2


def _logistic_jac(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    # Analytic Jacobian: exact, and about twice as fast as finite differences,
    # which matters for 1,000 bootstrap refits.
    a = abs(b4)
    s = expit((x - b3) / a)
    d = (b1 - b2) * s * (1.0 - s)
    return np.column_stack([s, 1.0 - s, -d / a, -d * (x - b3) / (a * a) * np.sign(b4)])


@dataclass(frozen=True)
class _Scale:
    """Affine standardisation of x and y: the fit runs on z-scores, so it is scale-free."""

    mx: float
    sx: float
    my: float
    sy: float

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray) -> _Scale:
        return cls(float(x.mean()), float(x.std()), float(y.mean()), float(y.std()))

    def to_std(self, p: Sequence[float] | np.ndarray) -> np.ndarray:
        b1, b2, b3, b4 = p
        return np.array(
            [
                (b1 - self.my) / self.sy,
                (b2 - self.my) / self.sy,
                (b3 - self.mx) / self.sx,
                b4 / self.sx,
            ]
        )

    def from_std(self, q: Sequence[float] | np.ndarray) -> np.ndarray:
        c1, c2, c3, c4 = q
        return np.array(
            [
                self.my + self.sy * c1,
                self.my + self.sy * c2,
                self.mx + self.sx * c3,
                self.sx * abs(c4),  # only |b4| enters the curve: report it positive
            ]
        )


def _fit_std(xs: np.ndarray, ys: np.ndarray, q0: np.ndarray, maxfev: int) -> np.ndarray:
    """Fit on standardised data; raise :class:`LogisticFitError` with a readable reason."""
    try:
        with warnings.catch_warnings():
            # An OptimizeWarning means the covariance could not be estimated: the
            # parameters are not determined by the data, so the fit counts as failed.
            warnings.simplefilter("error", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            q, _ = curve_fit(
                logistic4, xs, ys, p0=q0, jac=_logistic_jac, maxfev=maxfev, method="lm"
            )
    except OptimizeWarning as exc:
        raise LogisticFitError(" ".join(str(exc).split())) from None
    except (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        raise LogisticFitError(" ".join(str(exc).split())) from None
    if not np.all(np.isfinite(q)):
        raise LogisticFitError("non-finite parameters")
    if q[3] == 0.0:
        raise LogisticFitError("zero slope parameter b4 (a step, not a logistic)")
    return q


def _default_p0(x: np.ndarray, y: np.ndarray) -> list[float]:
    """METHODS.md section 8 starting values, b1 and b2 swapped for a decreasing relation.

    The swap lets predictions that fall as quality rises (a distortion score)
    start on the right branch instead of relying on the optimiser to cross over.
    """
    b1, b2 = float(y.max()), float(y.min())
    if np.corrcoef(x, y)[0, 1] < 0:
        b1, b2 = b2, b1
    return [b1, b2, float(x.mean()), float(x.std()) / 4.0]


def fit_logistic(
    x: Any, y: Any, *, p0: Sequence[float] | None = None, maxfev: int | None = None
) -> np.ndarray:
    """Fit :func:`logistic4` of predictions ``x`` to MOS ``y`` (METHODS.md section 8).

    Starting values b1 = max(y), b2 = min(y), b3 = mean(x), b4 = std(x) / 4
    (b1, b2 swapped when x and y are negatively correlated) unless ``p0`` is
    given, with at most ``maxfev`` (default :data:`FIT_MAXFEV`) evaluations.
    The fit runs on standardised x and y, which changes nothing but the
    conditioning. Returns ``array([b1, b2, b3, b4])`` with ``b4 > 0`` (only
    ``|b4|`` enters the curve). Raises :class:`LogisticFitError` on fewer than
    :data:`MIN_FIT_POINTS` finite pairs, constant x or y, non-convergence, an
    undetermined covariance (OptimizeWarning), non-finite parameters or a flat
    fitted curve; ``ValueError`` on arrays of different shapes.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D and of one length, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise LogisticFitError("x and y must be finite (drop the missing pairs first)")
    if len(x) < MIN_FIT_POINTS:
        raise LogisticFitError(
            f"fewer than {MIN_FIT_POINTS} points (n={len(x)}): "
            "4 parameters need more points than parameters"
        )
    scale = _Scale.of(x, y)
    if scale.sx == 0.0:
        raise LogisticFitError("constant prediction")
    if scale.sy == 0.0:
        raise LogisticFitError("constant MOS")
    if p0 is not None and (len(p0) != 4 or not np.all(np.isfinite(p0)) or p0[3] == 0):
        raise ValueError(f"p0 must be 4 finite numbers with b4 != 0, got {p0!r}")
    q0 = scale.to_std(_default_p0(x, y) if p0 is None else p0)
    q = _fit_std(
        (x - scale.mx) / scale.sx,
        (y - scale.my) / scale.sy,
        q0,
        FIT_MAXFEV if maxfev is None else maxfev,
    )
    params = scale.from_std(q)
    if not np.all(np.isfinite(params)):
        raise LogisticFitError("non-finite parameters")
    if np.ptp(logistic4(x, *params)) == 0.0:
        raise LogisticFitError("the fitted curve is flat over the predictions")
    return params


# --------------------------------------------------------------------------- correlations


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``a`` with the same row of ``b``; NaN for a constant row."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", a, b)
    den = np.sqrt(np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", b, b))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(den > 0, num / den, np.nan)
    return np.clip(r, -1.0, 1.0)


def _linear_rmse(x: np.ndarray, y: np.ndarray) -> float:
    """RMSE of the least-squares line y ~ a + b x (the fallback when the logistic fails)."""
    # The closed form, not np.polyfit: polyfit scales x by its norm, which underflows
    # to 0 for x spread over 1e-200, and its SVD then fails on NaN (found by hypothesis).
    return float(_rowwise_linear_rmse(x[None, :], y[None, :])[0])


def _rowwise_linear_rmse(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Residual variance of OLS with intercept: var(y) - cov(x, y)^2 / var(x).
    xc = x - x.mean(axis=1, keepdims=True)
    # The residual does not change with the scale of x; x scaled to at most 1 keeps
    # var(x) from underflowing for tiny spreads (1e-200) or overflowing for huge ones.
    span = np.abs(xc).max(axis=1, keepdims=True)
    xc = np.divide(xc, span, out=np.zeros_like(xc), where=span > 0)
    yc = y - y.mean(axis=1, keepdims=True)
    vx = np.einsum("ij,ij->i", xc, xc) / x.shape[1]
    vy = np.einsum("ij,ij->i", yc, yc) / x.shape[1]
    cov = np.einsum("ij,ij->i", xc, yc) / x.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        resid = np.where(vx > 0, vy - cov * cov / vx, vy)
    return np.sqrt(np.maximum(resid, 0.0))


def _kendall(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0.0 or np.ptp(y) == 0.0:
        return math.nan
    return float(stats.kendalltau(x, y).statistic)  # tau-b, SciPy's default variant


# --------------------------------------------------------------------------- result


def _clean(v: Any) -> Any:
    """JSON-ready: NaN and infinities become None, NumPy scalars plain Python."""
    if v is None:
        return None
    if isinstance(v, dict):
        return {k: _clean(w) for k, w in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_clean(w) for w in v]
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None
    return v


@dataclass
class AgreementResult:
    """Agreement of one prediction vector with one MOS vector (METHODS.md section 8).

    ``plcc`` and ``rmse`` are after the logistic fit when ``fit == "ok"``;
    otherwise ``plcc_on == "raw"`` (Pearson on raw predictions) and
    ``rmse_on == "linear"`` (RMSE after a least-squares line). ``ci95`` maps each
    metric to ``[low, high]`` (percentile bootstrap) or None. A metric that is
    NaN here has a note saying why, and is None in :meth:`as_dict`.
    """

    n: int
    srcc: float
    krcc: float
    plcc: float
    rmse: float
    logistic_params: list[float] | None
    fit: str
    plcc_on: str
    rmse_on: str
    ci95: dict[str, list[float] | None]
    n_boot: int
    seed: int | None
    n_dropped: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``json.dumps(..., allow_nan=False)`` works): None for NaN."""
        return _clean(
            {
                "n": self.n,
                "srcc": self.srcc,
                "krcc": self.krcc,
                "plcc": self.plcc,
                "rmse": self.rmse,
                "logistic_params": self.logistic_params,
                "fit": self.fit,
                "plcc_on": self.plcc_on,
                "rmse_on": self.rmse_on,
                "ci95": self.ci95,
                "n_boot": self.n_boot,
                "seed": self.seed,
                "n_dropped": self.n_dropped,
                "notes": list(self.notes),
            }
        )


# --------------------------------------------------------------------------- bootstrap


def _refit_std(xs: np.ndarray, ys: np.ndarray, q0: np.ndarray) -> np.ndarray:
    """Bootstrap refit: Levenberg-Marquardt from ``q0`` for at most :data:`BOOT_MAXFEV` steps.

    Tolerances are :data:`BOOT_TOL`. Unlike :func:`_fit_std` the point reached
    is kept when the budget runs out:
    LM only takes steps that lower the squared error, so it is never worse than
    the warm start, and along the flat valley of a nearly linear relation (where
    b1 - b2 and b4 grow together) convergence would cost seconds per resample
    for no visible change in PLCC or RMSE.
    """

    def residual(q: np.ndarray) -> np.ndarray:
        return logistic4(xs, *q) - ys

    def jac(q: np.ndarray) -> np.ndarray:
        return _logistic_jac(xs, *q)

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        q, _ = leastsq(residual, q0, Dfun=jac, maxfev=BOOT_MAXFEV, ftol=BOOT_TOL, xtol=BOOT_TOL)
    if not np.all(np.isfinite(q)) or q[3] == 0.0:
        raise LogisticFitError("non-finite or degenerate parameters")
    return q


def _resample_ranks(codes: np.ndarray, k: int) -> np.ndarray:
    """Average ranks (1-based, ties averaged: SciPy's ``rankdata``) of each row.

    ``codes`` holds, per resampled value, its position among the ``k`` distinct
    values of the full sample (``np.unique(..., return_inverse=True)``). Counting
    how often each distinct value was drawn gives every rank without sorting
    each resample again.
    """
    b = codes.shape[0]
    flat = codes + (np.arange(b) * k)[:, None]
    counts = np.bincount(flat.ravel(), minlength=b * k).reshape(b, k)
    below = np.cumsum(counts, axis=1) - counts
    avg = below + (counts + 1) / 2.0
    return np.take_along_axis(avg, codes, axis=1)


def _bootstrap(
    x: np.ndarray,
    y: np.ndarray,
    params: np.ndarray | None,
    n_boot: int,
    seed: int | None,
) -> tuple[dict[str, np.ndarray], int]:
    """Metric values on ``n_boot`` resamples of the stimuli; and how many refits failed.

    With ``params`` (the full-sample logistic) every resample is refitted from
    those values (:func:`_refit_std`); a resample whose refit fails is scored
    with ``params`` unchanged. Without ``params`` PLCC is raw and RMSE linear,
    as for the point estimate. Resamples are drawn in blocks whose size depends
    only on n, so a seed gives the same intervals on every machine.
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    out = {m: np.empty(n_boot) for m in METRICS}
    failed = 0
    ux, inv_x = np.unique(x, return_inverse=True)
    uy, inv_y = np.unique(y, return_inverse=True)
    if params is not None:
        scale = _Scale.of(x, y)
        xs_all = (x - scale.mx) / scale.sx
        ys_all = (y - scale.my) / scale.sy
        q_full = scale.to_std(params)
    block = max(1, _BLOCK_VALUES // n)
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        xb, yb = x[idx], y[idx]
        # SRCC is Pearson on average ranks, which vectorises over the block.
        out["srcc"][start:stop] = _rowwise_pearson(
            _resample_ranks(inv_x[idx], len(ux)), _resample_ranks(inv_y[idx], len(uy))
        )
        out["krcc"][start:stop] = [_kendall(xb[i], yb[i]) for i in range(len(idx))]
        if params is None:
            out["plcc"][start:stop] = _rowwise_pearson(xb, yb)
            out["rmse"][start:stop] = _rowwise_linear_rmse(xb, yb)
            continue
        for i, row in enumerate(idx):
            xs, ys = xs_all[row], ys_all[row]
            try:
                q = _refit_std(xs, ys, q_full)
            except LogisticFitError:
                failed += 1
                q = q_full
            yhat = logistic4(xs, *q)
            k = start + i
            out["plcc"][k] = _rowwise_pearson(yhat[None, :], ys[None, :])[0]
            out["rmse"][k] = scale.sy * float(np.sqrt(np.mean((yhat - ys) ** 2)))
    return out, failed


def _percentile_ci(
    values: dict[str, np.ndarray], notes: list[str]
) -> dict[str, list[float] | None]:
    ci: dict[str, list[float] | None] = {}
    for m in METRICS:
        v = values[m]
        ok = np.isfinite(v)
        if not ok.any():
            ci[m] = None
            notes.append(f"{m.upper()} interval: undefined on every resample")
            continue
        if not ok.all():
            notes.append(
                f"{m.upper()} interval: undefined on {int((~ok).sum())} of {len(v)} "
                "resamples (constant resample), computed from the others"
            )
        low, high = np.percentile(v[ok], [2.5, 97.5])
        ci[m] = [float(low), float(high)]
    return ci


# --------------------------------------------------------------------------- agreement


def agreement(pred: Any, mos: Any, *, n_boot: int = 1000, seed: int | None = 0) -> AgreementResult:
    """SRCC, KRCC, PLCC and RMSE of predictions vs MOS, with bootstrap 95% intervals.

    METHODS.md section 8. ``pred`` and ``mos`` are aligned 1-D arrays (lists,
    Series); pairs with a NaN or infinite value on either side are dropped and
    counted in ``notes``. ``n_boot`` resamples of the stimuli (0: no intervals)
    with NumPy's ``default_rng(seed)``. Fewer than :data:`MIN_FIT_POINTS` pairs:
    no logistic fit; fewer than :data:`MIN_BOOTSTRAP_POINTS`: no intervals;
    both are said in ``notes``. Raises ``ValueError`` for non-numeric input,
    arrays of different shapes or a negative ``n_boot``.
    """
    try:
        x = np.asarray(pred, dtype=float)
        y = np.asarray(mos, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"predictions and MOS must be numeric: {exc}") from None
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"predictions and MOS must be 1-D and aligned, got shapes {x.shape} and {y.shape}"
        )
    if int(n_boot) != n_boot or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    n_boot = int(n_boot)

    notes: list[str] = []
    keep = np.isfinite(x) & np.isfinite(y)
    n_dropped = int((~keep).sum())
    if n_dropped:
        notes.append(f"dropped {n_dropped} pair(s) with a missing or non-finite prediction or MOS")
    x, y = x[keep], y[keep]
    n = len(x)

    # Rank correlations on raw predictions; undefined (NaN + note) rather than a
    # SciPy warning when there is nothing to rank.
    srcc = krcc = math.nan
    x_const = n >= 1 and np.ptp(x) == 0.0
    y_const = n >= 1 and np.ptp(y) == 0.0
    if n < 2:
        notes.append(f"n={n}: no correlation is defined with fewer than 2 pairs")
    elif x_const or y_const:
        which = " and ".join(w for w, c in (("predictions", x_const), ("MOS", y_const)) if c)
        notes.append(f"{which} constant: SRCC, KRCC and PLCC are undefined")
    else:
        srcc = float(stats.spearmanr(x, y).statistic)
        krcc = _kendall(x, y)

    # PLCC / RMSE after the logistic, or the announced fallback.
    params: np.ndarray | None = None
    try:
        params = fit_logistic(x, y)
    except LogisticFitError as exc:
        fit = f"failed: {exc}"
    else:
        fit = "ok"
    if params is not None:
        yhat = logistic4(x, *params)
        plcc = float(stats.pearsonr(yhat, y).statistic)
        rmse = float(np.sqrt(np.mean((yhat - y) ** 2)))
        plcc_on, rmse_on = "logistic", "logistic"
    else:
        plcc_on, rmse_on = "raw", "linear"
        plcc = math.nan
        if n >= 2 and not (x_const or y_const):
            plcc = float(stats.pearsonr(x, y).statistic)
        rmse = _linear_rmse(x, y) if n >= 1 else math.nan
        if n == 0:
            notes.append("no pairs: RMSE is undefined")
        notes.append(f"logistic fit {fit}; PLCC is on raw predictions and RMSE after a linear fit")

    ci: dict[str, list[float] | None] = dict.fromkeys(METRICS)
    if n_boot == 0:
        notes.append("no bootstrap (n_boot=0): no intervals")
    elif n < MIN_BOOTSTRAP_POINTS:
        notes.append(f"n={n}: no bootstrap intervals with fewer than {MIN_BOOTSTRAP_POINTS} pairs")
    else:
        values, failed = _bootstrap(x, y, params, n_boot, seed)
        if failed:
            notes.append(
                f"logistic refit failed on {failed} of {n_boot} resamples; "
                "those were scored with the full-sample parameters"
            )
        ci = _percentile_ci(values, notes)

    return AgreementResult(
        n=n,
        srcc=srcc,
        krcc=krcc,
        plcc=plcc,
        rmse=rmse,
        logistic_params=None if params is None else [float(p) for p in params],
        fit=fit,
        plcc_on=plcc_on,
        rmse_on=rmse_on,
        ci95=ci,
        n_boot=n_boot,
        seed=seed,
        n_dropped=n_dropped,
        notes=notes,
    )


#: A logistic whose rise (8 |b4|, about 2% to 98% of its range) spans less than
#: this share of the predictions' range is nearly a step: PLCC then rests on
#: which side of the step a few images fall.
STEP_SHARE = 0.02


def fit_check(
    pred: Any, mos: Any, params: Sequence[float] | None, srcc: float | None, plcc: float | None
) -> dict[str, Any]:
    """Whether a logistic fit's PLCC can be read: ``{"plcc_raw": Pearson r on the raw
    predictions (NaN when undefined), "degenerate": reason or ""}``.

    Degenerate: the logistic is nearly a step (:data:`STEP_SHARE`), or PLCC after
    the fit has another sign than SRCC (the fit found a trend the ranks do not
    show). Without a fit (``params`` None) nothing is degenerate. Pairs with a
    non-finite side are dropped, as :func:`agreement` drops them.
    """
    x = np.asarray(pred, dtype=float)
    y = np.asarray(mos, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    plcc_raw = math.nan
    if len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
        plcc_raw = float(stats.pearsonr(x, y).statistic)
    reasons = []
    if params is not None and all(p is not None and math.isfinite(p) for p in params):
        span = float(np.ptp(x)) if len(x) else 0.0
        if span > 0 and 8 * abs(float(params[3])) < STEP_SHARE * span:
            reasons.append("the logistic is nearly a step")
        finite = [v is not None and math.isfinite(v) for v in (srcc, plcc)]
        if all(finite) and srcc and plcc and (srcc > 0) != (plcc > 0):
            reasons.append("PLCC after the fit has another sign than SRCC")
    return {"plcc_raw": plcc_raw, "degenerate": " and ".join(reasons)}


TABLE_COLUMNS = [
    "prediction",
    "mos",
    "n",
    *METRICS,
    *(f"{m}_{end}" for m in METRICS for end in ("low", "high")),
    "fit",
    "plcc_on",
    "b1",
    "b2",
    "b3",
    "b4",
    "notes",
]


def _table_row(pred_col: str, mos_col: str, res: AgreementResult) -> dict[str, Any]:
    row: dict[str, Any] = {"prediction": pred_col, "mos": mos_col, "n": res.n}
    row.update({m: getattr(res, m) for m in METRICS})
    for m in METRICS:
        interval = res.ci95.get(m)
        row[f"{m}_low"], row[f"{m}_high"] = interval if interval else (math.nan, math.nan)
    row["fit"], row["plcc_on"] = res.fit, res.plcc_on
    params = res.logistic_params or [math.nan] * 4
    row.update(zip(("b1", "b2", "b3", "b4"), params, strict=True))
    row["notes"] = "; ".join(res.notes)
    return row


def _resolve_pair(
    frame: pd.DataFrame, pred: str, mos: str, suffixes: tuple[str, str]
) -> tuple[str, str] | None:
    """The frame's columns for one pair, or None when one is absent.

    A name is used as is when it is in the frame and differs from its partner;
    otherwise with its suffix, so that ``technical``/``technical`` finds
    ``technical_pred`` and ``technical_mos`` after
    ``preds.merge(mos, on=..., suffixes=("_pred", "_mos"))``.
    """
    p = pred if pred in frame.columns and pred != mos else pred + suffixes[0]
    m = mos if mos in frame.columns and mos != pred else mos + suffixes[1]
    return (p, m) if p in frame.columns and m in frame.columns else None


def agreement_table(
    frame: pd.DataFrame,
    pairs: Mapping[str, str] | None = None,
    group_by: str | Sequence[str] | None = None,
    *,
    n_boot: int = 1000,
    seed: int | None = 0,
    suffixes: tuple[str, str] = ("_pred", "_mos"),
) -> pd.DataFrame:
    """One :func:`agreement` row per (prediction column, MOS column) pair, and per group.

    ``pairs`` maps prediction columns to MOS columns (default
    :data:`DEFAULT_PAIRS`, JOINT's outputs vs the three MOS, METHODS.md
    section 8). Where the two names of a pair are equal (``technical`` vs
    ``technical``), or a name is absent, the name plus its entry of ``suffixes``
    is looked up instead (``technical_pred``, ``technical_mos``); pairs still
    without both columns are skipped. With ``group_by`` (``"generator"``,
    ``["task", "generator"]``) there is a row per group and pair, the group
    values first; a missing group value is its own group, and a small group
    gives a row with notes, not an error. Columns: the group columns,
    ``prediction, mos`` (the frame's column names used), ``n, srcc, krcc, plcc,
    rmse``, ``<metric>_low/_high`` (NaN without an interval), ``fit, plcc_on,
    b1..b4`` (NaN without a fit) and ``notes`` ("; "-joined). Raises
    ``ValueError`` when no pair is present or a ``group_by`` column is missing.
    """
    pairs = dict(DEFAULT_PAIRS if pairs is None else pairs)
    present = [
        cols for p, m in pairs.items() if (cols := _resolve_pair(frame, p, m, suffixes)) is not None
    ]
    if not present:
        raise ValueError(
            "none of the prediction/MOS column pairs "
            + ", ".join(f"{p}/{m}" for p, m in pairs.items())
            + f" (or with suffixes {suffixes[0]}/{suffixes[1]}) is in the frame; its columns are "
            + ", ".join(map(str, frame.columns))
        )
    keys = [] if group_by is None else [group_by] if isinstance(group_by, str) else list(group_by)
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise ValueError(f"group_by column(s) not in the frame: {', '.join(missing)}")

    rows: list[dict[str, Any]] = []
    if not keys:
        for p, m in present:
            rows.append(_table_row(p, m, agreement(frame[p], frame[m], n_boot=n_boot, seed=seed)))
        return pd.DataFrame(rows, columns=TABLE_COLUMNS)
    for group, part in frame.groupby(keys, dropna=False, sort=True):
        values = group if isinstance(group, tuple) else (group,)
        for p, m in present:
            res = agreement(part[p], part[m], n_boot=n_boot, seed=seed)
            rows.append({**dict(zip(keys, values, strict=True)), **_table_row(p, m, res)})
    return pd.DataFrame(rows, columns=[*keys, *TABLE_COLUMNS])


# --------------------------------------------------------------------------- CSV join


class ScoresFileError(ValueError):
    """A predictions or MOS file that cannot be used; names the file, line (1 = header), column."""

    def __init__(
        self, path: str | Path, message: str, *, line: int | None = None, column: str | None = None
    ) -> None:
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line
        self.column = column


@dataclass
class JoinedScores:
    """Predictions and MOS joined on image name, in the order of the predictions file."""

    keys: list[str]
    pred: np.ndarray
    mos: np.ndarray
    pred_column: str
    mos_column: str
    unmatched: dict[str, Any]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"image": self.keys, "prediction": self.pred, "mos": self.mos})


def _read_scores(path: Path, column: str, role: str) -> tuple[str, dict[str, float]]:
    """Key column name and {key: value} of one file; empty cells become NaN (dropped later)."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ScoresFileError(path, f"cannot read the {role} file: {exc.strerror}") from None
    values: dict[str, float] = {}
    first_line: dict[str, int] = {}
    try:
        with handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise ScoresFileError(
                    path,
                    f"empty {role} file: expected a header naming the image column first "
                    f"and a {column!r} column",
                    line=1,
                )
            header = [h.strip() for h in header]
            if column not in header:
                raise ScoresFileError(
                    path,
                    f"missing column; the header has: {', '.join(header)}",
                    line=1,
                    column=column,
                )
            col = header.index(column)
            if col == 0:
                raise ScoresFileError(
                    path,
                    "the first column holds the image names and cannot be the score column",
                    line=1,
                    column=column,
                )
            key_name = header[0]
            end = reader.line_num
            for row in reader:
                # A quoted field may span lines: report the record's first line.
                line, end = end + 1, reader.line_num
                if not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise ScoresFileError(
                        path, f"{len(row)} fields, but the header has {len(header)}", line=line
                    )
                key = row[0].strip()
                if not key:
                    raise ScoresFileError(path, "empty image name", line=line, column=key_name)
                if key in values:
                    raise ScoresFileError(
                        path,
                        f"duplicate image name {key!r} (first on line {first_line[key]})",
                        line=line,
                        column=key_name,
                    )
                text = row[col].strip()
                if text == "":
                    value = math.nan  # missing: dropped and counted by agreement()
                else:
                    try:
                        value = float(text)
                    except ValueError:
                        raise ScoresFileError(
                            path, f"not a number: {text!r}", line=line, column=column
                        ) from None
                    if not math.isfinite(value):
                        raise ScoresFileError(
                            path, f"not a finite number: {text!r}", line=line, column=column
                        )
                values[key] = value
                first_line[key] = line
    except UnicodeDecodeError as exc:
        raise ScoresFileError(path, f"not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise ScoresFileError(path, f"malformed CSV: {exc}", line=reader.line_num) from None
    if not values:
        raise ScoresFileError(path, f"the {role} file has a header but no rows", line=1)
    return key_name, values


def read_predictions_and_mos(
    pred_csv: str | Path,
    mos_csv: str | Path,
    pred_column: str = "naturalness",
    mos_column: str = "MOS_nat",
) -> JoinedScores:
    """Join a predictions CSV and a MOS CSV on their FIRST columns (the image names).

    Names are stripped and compared as strings. Empty score cells are kept as
    NaN (:func:`agreement` drops and counts them). ``unmatched`` holds the counts
    (and up to 5 examples) of names in only one file. Raises
    :class:`ScoresFileError` (a ``ValueError`` naming file, line and column) on an
    unreadable or empty file, a missing column, a value that is not a finite
    number, a duplicate image name, a row with the wrong number of fields, or
    files with no image name in common.
    """
    pred_path, mos_path = Path(pred_csv), Path(mos_csv)
    _, preds = _read_scores(pred_path, pred_column, "predictions")
    _, moses = _read_scores(mos_path, mos_column, "MOS")
    keys = [k for k in preds if k in moses]
    pred_only = [k for k in preds if k not in moses]
    mos_only = [k for k in moses if k not in preds]
    if not keys:
        raise ScoresFileError(
            pred_path,
            f"no image name in common with {mos_path} (first names: {next(iter(preds))!r} "
            f"vs {next(iter(moses))!r}); both files must name the images in their first column",
        )
    return JoinedScores(
        keys=keys,
        pred=np.array([preds[k] for k in keys], dtype=float),
        mos=np.array([moses[k] for k in keys], dtype=float),
        pred_column=pred_column,
        mos_column=mos_column,
        unmatched={
            "predictions_only": len(pred_only),
            "mos_only": len(mos_only),
            "predictions_only_examples": pred_only[:5],
            "mos_only_examples": mos_only[:5],
        },
    )
