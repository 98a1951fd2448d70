"""Reliability of collected subjective scores (METHODS.md section 7).

Pure NumPy / pandas / SciPy, same long-frame input as :mod:`scoring.numerics.mos`
(``rater, stimulus, score``, optional ``repetition``). Repetitions are averaged
per (rater, stimulus) first: reliability is about raters agreeing, and a
repeated presentation is not another rater.

- :func:`split_half`: split each stimulus' raters at random into two halves,
  SRCC between the half MOS vectors, repeated with a seed; Spearman-Brown.
- :func:`icc`: ICC(1,1), ICC(1,k), ICC(2,1), ICC(2,k) (Shrout & Fleiss 1979) when
  every rater scored every stimulus.
- :func:`krippendorff_alpha`: Krippendorff's alpha, interval metric, any
  missing-data pattern.
- :func:`rater_agreement`: per rater, Pearson r with the leave-one-out MOS, bias and
  inconsistency against it.
- :func:`reliability_summary`: ICC on full designs, alpha on sparse ones, and says
  which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from scoring.numerics.groupstats import bincount as _bincount
from scoring.numerics.groupstats import div as _div
from scoring.numerics.groupstats import group_moments as _group_moments
from scoring.numerics.groupstats import pearson_by_group as _pearson_by_group
from scoring.numerics.mos import Ratings, prepare_ratings

__all__ = [
    "ICCResult",
    "ReliabilitySummary",
    "SplitHalfResult",
    "icc",
    "is_full_design",
    "krippendorff_alpha",
    "rater_agreement",
    "reliability_summary",
    "spearman_brown",
    "split_half",
]


@dataclass(frozen=True)
class _Pairs:
    """One value per (rater, stimulus): the mean over repetitions."""

    rater: np.ndarray
    stimulus: np.ndarray
    value: np.ndarray
    n_raters: int
    n_stimuli: int


def _pairs(frame: pd.DataFrame | Ratings) -> tuple[Ratings, _Pairs]:
    rt = frame if isinstance(frame, Ratings) else prepare_ratings(frame)
    pr, ps, y = rt.pair_means(rt.x)
    return rt, _Pairs(pr, ps, y, rt.n_raters, rt.n_stimuli)


def spearman_brown(r: float | np.ndarray) -> float | np.ndarray:
    """Spearman-Brown prophecy for doubling the test length: 2r / (1 + r)."""
    return 2.0 * r / (1.0 + r)


# --------------------------------------------------------------------------- split-half


@dataclass(frozen=True)
class SplitHalfResult:
    """Split-half SRCC over ``n_splits`` random splits.

    ``srcc_mean`` / ``srcc_std`` (ddof=1) / ``srcc_low`` / ``srcc_high`` (2.5 and 97.5
    percentiles) describe the half-vs-half SRCC; ``spearman_brown`` is
    2 r / (1 + r) of ``srcc_mean``: the reliability of the full-size MOS.
    ``n_stimuli``: stimuli with at least two raters (the others cannot be split).
    """

    srcc_mean: float
    srcc_std: float
    srcc_low: float
    srcc_high: float
    spearman_brown: float
    n_splits: int
    n_stimuli: int
    seed: int
    values: np.ndarray = field(repr=False)


def split_half(
    frame: pd.DataFrame | Ratings, *, n_splits: int = 100, seed: int = 0
) -> SplitHalfResult:
    """Split-half reliability (METHODS.md section 7), vectorised over stimuli.

    Each split draws a uniform key per (rater, stimulus) pair and sorts by
    (stimulus, key); the first floor(m_j / 2) raters of stimulus j form half A,
    the rest half B (so with an odd count B has one more). Seeded: the same
    ``seed`` gives the same numbers.
    """
    if n_splits < 1:
        raise ValueError(f"n_splits must be at least 1, got {n_splits!r}")
    _, p = _pairs(frame)
    m_j = np.bincount(p.stimulus, minlength=p.n_stimuli)
    usable = m_j[p.stimulus] >= 2
    s, y = p.stimulus[usable], p.value[usable]
    # Renumber the usable stimuli 0..J'-1 so the half means have no holes.
    su, s = np.unique(s, return_inverse=True)
    n_s = len(su)
    if n_s < 3:
        raise ValueError(
            f"split-half needs at least 3 stimuli with two or more raters each, found {n_s}"
        )
    m = np.bincount(s, minlength=n_s)
    start = np.concatenate([[0], np.cumsum(m)[:-1]])
    rng = np.random.default_rng(seed)
    values = np.empty(n_splits)
    base = s.astype(float)
    for k in range(n_splits):
        # One argsort does the random permutation inside every stimulus at once.
        order = np.argsort(base + rng.random(len(s)), kind="stable")
        pos = np.empty(len(s), dtype=np.intp)
        pos[order] = np.arange(len(s)) - start[s[order]]
        in_a = pos < (m // 2)[s]
        mos_a = _div(_bincount(s[in_a], n_s, y[in_a]), _bincount(s[in_a], n_s))
        mos_b = _div(_bincount(s[~in_a], n_s, y[~in_a]), _bincount(s[~in_a], n_s))
        values[k] = stats.spearmanr(mos_a, mos_b).statistic
    mean = float(np.mean(values))
    return SplitHalfResult(
        srcc_mean=mean,
        srcc_std=float(np.std(values, ddof=1)) if n_splits > 1 else float("nan"),
        srcc_low=float(np.percentile(values, 2.5)),
        srcc_high=float(np.percentile(values, 97.5)),
        spearman_brown=float(spearman_brown(mean)),
        n_splits=n_splits,
        n_stimuli=n_s,
        seed=seed,
        values=values,
    )


# --------------------------------------------------------------------------- ICC


@dataclass(frozen=True)
class ICCResult:
    """Shrout & Fleiss (1979) intraclass correlations on an n x k full matrix.

    ``icc1_k`` / ``icc2_k`` are the reliabilities of the mean of the k raters (the
    MOS); ``icc1_1`` / ``icc2_1`` of a single rater. Mean squares are kept for
    checking: ``bms`` (between stimuli), ``wms`` (within), ``jms`` (raters),
    ``ems`` (residual).
    """

    icc1_1: float
    icc1_k: float
    icc2_1: float
    icc2_k: float
    n: int
    k: int
    bms: float
    wms: float
    jms: float
    ems: float


def is_full_design(frame: pd.DataFrame | Ratings) -> bool:
    """True when every rater scored every stimulus (at least once)."""
    rt, p = _pairs(frame)
    return len(p.value) == rt.n_raters * rt.n_stimuli


def icc(frame: pd.DataFrame | Ratings) -> ICCResult:
    """ICC(1,1), ICC(1,k), ICC(2,1), ICC(2,k) from the two-way ANOVA mean squares.

    Needs a full rater x stimulus design (repetitions averaged); ValueError
    otherwise (use :func:`krippendorff_alpha` for sparse data).
    """
    rt, p = _pairs(frame)
    n, k = rt.n_stimuli, rt.n_raters
    if len(p.value) != n * k:
        raise ValueError(
            f"ICC needs a full design (every rater scores every stimulus): {len(p.value)} of "
            f"{n} x {k} = {n * k} rater-stimulus pairs present; use krippendorff_alpha()"
        )
    if n < 2 or k < 2:
        raise ValueError(f"ICC needs at least 2 stimuli and 2 raters, got {n} and {k}")
    y = p.value
    grand = y.mean()
    row = _bincount(p.stimulus, n, y) / k
    col = _bincount(p.rater, k, y) / n
    ss_total = float(np.sum((y - grand) ** 2))
    ss_rows = float(k * np.sum((row - grand) ** 2))
    ss_cols = float(n * np.sum((col - grand) ** 2))
    ss_err = ss_total - ss_rows - ss_cols
    # NumPy scalars, so that constant scores (every mean square 0) give NaN, not a
    # ZeroDivisionError from Python floats.
    bms = np.float64(ss_rows) / (n - 1)
    wms = np.float64(ss_total - ss_rows) / (n * (k - 1))
    jms = np.float64(ss_cols) / (k - 1)
    ems = np.float64(ss_err) / ((n - 1) * (k - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        icc1_1 = (bms - wms) / (bms + (k - 1) * wms)
        icc1_k = (bms - wms) / bms
        icc2_1 = (bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n)
        icc2_k = (bms - ems) / (bms + (jms - ems) / n)
    return ICCResult(
        float(icc1_1),
        float(icc1_k),
        float(icc2_1),
        float(icc2_k),
        n,
        k,
        float(bms),
        float(wms),
        float(jms),
        float(ems),
    )


# --------------------------------------------------------------------------- alpha


def krippendorff_alpha(frame: pd.DataFrame | Ratings) -> float:
    """Krippendorff's alpha with the interval metric, for any missing-data pattern.

    alpha = 1 - D_o / D_e over the pairable values (stimuli with at least two
    raters; n values in all). With the interval metric the pair sums have closed
    forms: sum over ordered pairs i != j within a unit of (v_i - v_j)^2 is
    2 m_u SS_u, so D_o = (1/n) sum_u 2 m_u SS_u / (m_u - 1) and
    D_e = 2 SS_total / (n - 1) (Krippendorff 2011, "Computing Krippendorff's
    alpha-reliability"). NaN when all pairable values are equal (D_e = 0).
    """
    _, p = _pairs(frame)
    m_u = np.bincount(p.stimulus, minlength=p.n_stimuli)
    pairable = m_u[p.stimulus] >= 2
    if not pairable.any():
        raise ValueError("Krippendorff's alpha needs at least one stimulus with two raters")
    s, v = p.stimulus[pairable], p.value[pairable]
    n = float(len(v))
    m, _, _, ss = _group_moments(s, v, p.n_stimuli)
    used = m >= 2
    d_o = float(np.sum(2.0 * m[used] * ss[used] / (m[used] - 1.0))) / n
    ss_total = float(np.sum((v - v.mean()) ** 2))
    d_e = 2.0 * ss_total / (n - 1.0)
    return float("nan") if d_e == 0 else 1.0 - d_o / d_e


# --------------------------------------------------------------------------- per rater


def rater_agreement(frame: pd.DataFrame | Ratings) -> pd.DataFrame:
    """Per rater: Pearson r with the leave-one-out MOS, bias and inconsistency.

    The leave-one-out MOS of (i, j) is the mean of the other raters' scores of j,
    so a rater is never compared with themself. Columns: ``rater``, ``n``
    (stimuli), ``corr_loo`` (NaN with fewer than 2 comparable stimuli or no
    variance), ``bias_loo`` (mean of score - LOO MOS), ``inconsistency_loo`` (std,
    ddof=0, of score - LOO MOS - bias).
    """
    rt, p = _pairs(frame)
    n_s, n_r = p.n_stimuli, p.n_raters
    stim_sum = _bincount(p.stimulus, n_s, p.value)
    stim_n = _bincount(p.stimulus, n_s)
    loo = _div(stim_sum[p.stimulus] - p.value, stim_n[p.stimulus] - 1.0)
    ok = np.isfinite(loo)
    g = p.rater[ok]
    corr = _pearson_by_group(g, p.value[ok], loo[ok], n_r)
    n_cmp, bias, _, ss = _group_moments(g, p.value[ok] - loo[ok], n_r)
    return pd.DataFrame(
        {
            "rater": rt.raters,
            "n": np.bincount(p.rater, minlength=n_r),
            "corr_loo": corr,
            "bias_loo": bias,
            "inconsistency_loo": np.sqrt(_div(ss, n_cmp)),
        }
    )


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class ReliabilitySummary:
    """``design`` is "full" or "sparse"; ``measure`` names the agreement statistic
    chosen for it ("ICC(2,k)" or "Krippendorff alpha (interval)") and ``value`` is
    its value; ``icc`` is filled on full designs; ``alpha`` always (it is defined
    for both); ``split_half`` may be None if there are too few stimuli; ``raters``
    is :func:`rater_agreement`.
    """

    design: str
    measure: str
    value: float
    n_raters: int
    n_stimuli: int
    n_scores: int
    icc: ICCResult | None
    alpha: float
    split_half: SplitHalfResult | None
    raters: pd.DataFrame = field(repr=False)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no frames or arrays)."""
        sh = self.split_half
        return {
            "design": self.design,
            "measure": self.measure,
            "value": self.value,
            "n_raters": self.n_raters,
            "n_stimuli": self.n_stimuli,
            "n_scores": self.n_scores,
            "icc": None if self.icc is None else self.icc.__dict__.copy(),
            "alpha": self.alpha,
            "split_half": None
            if sh is None
            else {k: v for k, v in sh.__dict__.items() if k != "values"},
            "notes": list(self.notes),
        }


def reliability_summary(
    frame: pd.DataFrame | Ratings, *, n_splits: int = 100, seed: int = 0
) -> ReliabilitySummary:
    """ICC(2,k) when the rater x stimulus matrix is full, Krippendorff's alpha
    (interval) when it is sparse, plus split-half SRCC and per-rater agreement."""
    rt = frame if isinstance(frame, Ratings) else prepare_ratings(frame)
    notes: list[str] = []
    full = is_full_design(rt) and rt.n_raters >= 2 and rt.n_stimuli >= 2
    alpha = krippendorff_alpha(rt)
    icc_res = icc(rt) if full else None
    if icc_res is not None:
        design, measure, value = "full", "ICC(2,k)", icc_res.icc2_k
    else:
        design, measure, value = "sparse", "Krippendorff alpha (interval)", alpha
    try:
        sh = split_half(rt, n_splits=n_splits, seed=seed)
    except ValueError as exc:
        sh = None
        notes.append(f"no split-half: {exc}")
    if rt.has_repeats:
        notes.append("repetitions averaged per rater and stimulus")
    return ReliabilitySummary(
        design=design,
        measure=measure,
        value=float(value),
        n_raters=rt.n_raters,
        n_stimuli=rt.n_stimuli,
        n_scores=len(rt.x),
        icc=icc_res,
        alpha=alpha,
        split_half=sh,
        raters=rater_agreement(rt),
        notes=notes,
    )
