"""Score recovery for subjective studies: MOS, z-scores, BT.500, P.913, P.910, correlation.

Pure NumPy / pandas / SciPy: no Django, no Celery, so the same code runs in a web
request, a Celery task, a management command and a notebook.

Every method takes a *long* frame (one row per opinion score: columns ``rater``,
``stimulus``, ``score``, optional ``repetition``) and returns a :class:`MOSResult`
with a per-stimulus frame (:data:`STIMULUS_COLUMNS`) and a per-rater frame
(:data:`RATER_COLUMNS`). Sparse designs (each rater saw a subset of the stimuli)
are the normal case: nothing here builds a rater x stimulus matrix. Raters and
stimuli are turned into integer codes once and every statistic is a
``np.bincount`` over those codes, so 2.4 million scores take well under a second.

Formulas and the conventions of the reference implementation (Netflix SUREAL
0.9.0) are in the project's METHODS.md notes; "section N" below refers to them.
Where we deliberately differ from SUREAL it is said where it happens (BT.500
denominator, single-score stimuli); on full designs the results equal SUREAL's
(tests/scoring/test_mos.py checks 1e-6 on the NFLX dataset).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from scoring.numerics.groupstats import bincount as _bincount
from scoring.numerics.groupstats import div as _div
from scoring.numerics.groupstats import group_moments as _group_moments
from scoring.numerics.groupstats import pearson_by_group as _pearson_by_group

__all__ = [
    "METHODS",
    "REGISTRY",
    "Method",
    "RATER_COLUMNS",
    "STIMULUS_COLUMNS",
    "Z95",
    "DimensionsResult",
    "MOSResult",
    "Ratings",
    "bt500_mos",
    "compute",
    "compute_dimensions",
    "correlation_mos",
    "mean_mos",
    "p910_mos",
    "p913_mos",
    "prepare_ratings",
    "zscore_mos",
]

#: Normal 97.5 % quantile, written as SUREAL writes it (its intervals use 1.95996).
Z95 = 1.95996
#: BT.500 A1-2.3.1 thresholds (METHODS.md section 3).
BT500_RATE = 0.05
BT500_BALANCE = 0.3
#: Relative tolerance for "exactly on the boundary" comparisons. Integer ACR scores
#: put u - mean exactly on eps * s surprisingly often (e.g. scores 1,1,1,1,5); the
#: rule says ">=", and without a tolerance the verdict would depend on the
#: summation order of the mean (and so on the row order of the input).
_TIE_RTOL = 1e-9

STIMULUS_COLUMNS = ["stimulus", "mos", "std", "se", "ci_low", "ci_high", "n", "note"]
RATER_COLUMNS = [
    "rater",
    "n",
    "bias",
    "bias_se",
    "bias_ci_low",
    "bias_ci_high",
    "inconsistency",
    "inconsistency_se",
    "inconsistency_ci_low",
    "inconsistency_ci_high",
    "P",
    "Q",
    "pq_rate",
    "pq_balance",
    "corr",
    "rejected",
    "reason",
    "note",
]
_CI_CHOICES = ("normal", "t")


# --------------------------------------------------------------------------- input


@dataclass(eq=False)
class Ratings:
    """Validated scores as integer codes: ``r[k]`` rated ``s[k]`` with score ``x[k]``.

    ``raters[code]`` / ``stimuli[code]`` give back the original labels. Subsets keep
    the label universes, so a rejected rater still has a row in the output.
    """

    r: np.ndarray
    s: np.ndarray
    x: np.ndarray
    raters: pd.Index
    stimuli: pd.Index

    @property
    def n_raters(self) -> int:
        return len(self.raters)

    @property
    def n_stimuli(self) -> int:
        return len(self.stimuli)

    @cached_property
    def _pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        # (pair index of each score, rater of each pair, stimulus of each pair, count).
        # Repetitions are the only reason a (rater, stimulus) pair occurs twice.
        key = self.r.astype(np.int64) * self.n_stimuli + self.s
        n = len(key)
        cells = self.n_raters * self.n_stimuli
        if cells <= 64 * n + 10_000_000:
            # Cheap check first (one byte per rater x stimulus cell): usually there
            # are no repetitions, and then every score is its own pair.
            seen = np.zeros(cells, dtype=bool)
            seen[key] = True
            if np.count_nonzero(seen) == n:
                return np.arange(n), self.r, self.s, np.ones(n, dtype=np.int64)
        pair_of, uniq = pd.factorize(key, sort=False)
        pair_of = pair_of.astype(np.intp)
        uniq = np.asarray(uniq, dtype=np.int64)
        count = np.bincount(pair_of, minlength=len(uniq))
        return (
            pair_of,
            (uniq // self.n_stimuli).astype(np.intp),
            (uniq % self.n_stimuli).astype(np.intp),
            count,
        )

    @property
    def has_repeats(self) -> bool:
        return len(self._pairs[1]) < len(self.x)

    @property
    def max_repetitions(self) -> int:
        return int(self._pairs[3].max()) if len(self.x) else 0

    def pair_means(self, values: np.ndarray, valid: np.ndarray | None = None):
        """Average ``values`` over repetitions: (pair rater, pair stimulus, mean)."""
        pair_of, pr, ps, count = self._pairs
        if valid is None and not self.has_repeats:
            return pr, ps, values  # all keys unique: pair k is score k
        if valid is None:
            valid = np.ones(len(values), dtype=bool)
        total = np.bincount(pair_of, weights=np.where(valid, values, 0.0), minlength=len(pr))
        cnt = np.bincount(pair_of, weights=valid.astype(float), minlength=len(pr))
        with np.errstate(invalid="ignore", divide="ignore"):
            return pr, ps, total / cnt

    def subset(self, mask: np.ndarray) -> Ratings:
        """Scores where ``mask`` holds; label universes unchanged."""
        return Ratings(self.r[mask], self.s[mask], self.x[mask], self.raters, self.stimuli)

    def compact(self, index: np.ndarray) -> Ratings:
        """Scores at ``index`` with codes renumbered to the raters/stimuli present.

        Renumbering keeps the label order (a presence mask and a cumulative sum:
        linear, no sort).
        """
        r, s = self.r[index], self.s[index]
        r_present = np.bincount(r, minlength=self.n_raters) > 0
        s_present = np.bincount(s, minlength=self.n_stimuli) > 0
        r_new = np.cumsum(r_present) - 1
        s_new = np.cumsum(s_present) - 1
        return Ratings(
            r_new[r].astype(np.intp),
            s_new[s].astype(np.intp),
            self.x[index],
            self.raters[r_present],
            self.stimuli[s_present],
        )


def _codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and labels; code -1 marks a missing value.

    Sorted labels make the output order independent of the input row order;
    labels of mixed types cannot be sorted, then first appearance is used.
    """
    if isinstance(values.dtype, pd.StringDtype):
        # pandas' string dtypes factorize ~1.7x slower than plain object arrays.
        values = values.to_numpy(dtype=object, na_value=np.nan)
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:
        codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.intp, copy=False), pd.Index(uniques)


def _codes_checked(frame: pd.DataFrame, col: str) -> tuple[np.ndarray, pd.Index]:
    codes, labels = _codes(frame[col])
    # factorize marks missing values with -1: no separate isna() pass needed.
    if len(codes) and codes.min() < 0:
        raise ValueError(
            f"column {col!r} has a missing value at row {_first_bad(frame, codes < 0)!r}"
        )
    return codes, labels


def _first_bad(frame: pd.DataFrame, bad: np.ndarray) -> Any:
    return frame.index[int(np.flatnonzero(bad)[0])]


def prepare_ratings(frame: pd.DataFrame, *, _within: np.ndarray | None = None) -> Ratings:
    """Validate a long ratings frame and encode it (ValueError with a clear message).

    Columns ``rater``, ``stimulus``, ``score`` are required; ``repetition`` is
    optional. Without it, a rater who scored a stimulus twice contributes two
    scores (repetitions, as in SUREAL's 3-D array); with it, a duplicated
    (rater, stimulus, repetition) is an error.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"ratings must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in ("rater", "stimulus", "score") if c not in frame.columns]
    if missing:
        raise ValueError(
            "ratings frame is missing column(s) "
            + ", ".join(repr(c) for c in missing)
            + "; required: 'rater', 'stimulus', 'score' (optional 'repetition'); has: "
            + (", ".join(repr(str(c)) for c in frame.columns) or "no columns")
        )
    if len(frame) == 0:
        raise ValueError("ratings frame is empty: there are no scores to aggregate")
    r, raters = _codes_checked(frame, "rater")
    s, stimuli = _codes_checked(frame, "stimulus")
    raw = frame["score"]
    if pd.api.types.is_bool_dtype(raw.dtype):
        x = raw.to_numpy(dtype=float)
    else:
        x = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"column 'score' has a non-finite or non-numeric value {raw.iloc[i]!r} at row "
            f"{frame.index[i]!r}: every score must be a finite number"
        )
    if "repetition" in frame:
        rep, _ = _codes_checked(frame, "repetition")
        key = (r.astype(np.int64) * len(stimuli) + s) * (int(rep.max()) + 1) + rep
        if _within is not None:  # e.g. the dimension codes: duplicates only within one
            key = key * (int(_within.max()) + 1) + _within
        dup = pd.Series(key).duplicated().to_numpy()
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            raise ValueError(
                f"duplicate score at row {frame.index[i]!r}: rater {frame['rater'].iloc[i]!r}, "
                f"stimulus {frame['stimulus'].iloc[i]!r}, repetition "
                f"{frame['repetition'].iloc[i]!r} occurs more than once"
            )
    return Ratings(r, s, x, raters, stimuli)


def _as_ratings(data: pd.DataFrame | Ratings) -> Ratings:
    return data if isinstance(data, Ratings) else prepare_ratings(data)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class MOSResult:
    """What every method returns.

    ``stimuli``: one row per stimulus, columns :data:`STIMULUS_COLUMNS` (``std`` is
    the spread of the scores, ``se`` the standard error of ``mos``; the interval is
    ``mos -+ q * se``). ``raters``: one row per rater, columns :data:`RATER_COLUMNS`.
    ``info``: method, options and method-specific facts (iterations, threshold...).
    """

    method: str
    stimuli: pd.DataFrame
    raters: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def rejected(self) -> list[Any]:
        """Labels of the rejected raters, in rater order."""
        return self.raters.loc[self.raters["rejected"], "rater"].tolist()


@dataclass(frozen=True)
class DimensionsResult:
    """Result of :func:`compute_dimensions`.

    ``stimuli``: per stimulus and dimension (``dimension`` + :data:`STIMULUS_COLUMNS`).
    ``raters``: per rater and dimension (``dimension`` + :data:`RATER_COLUMNS`);
    ``rejected`` there says whether the rater's scores were dropped from that
    dimension. ``verdicts``: one row per rater: ``rater, n, rejected, decided_by,
    reason`` (``decided_by`` names the dimension(s) whose rule rejected the rater).
    """

    method: str
    reject_on: str
    stimuli: pd.DataFrame
    raters: pd.DataFrame
    verdicts: pd.DataFrame
    info: dict[str, dict[str, Any]] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _is_zero_spread(sd: np.ndarray, mean: np.ndarray) -> np.ndarray:
    # A constant group can show sd ~ 1e-17 when its mean is not exactly
    # representable (0.1, 0.1, 0.1); treat that as zero, not as a tiny spread.
    return sd <= 1e-12 * (np.abs(mean) + 1.0)


def _quantile(n: np.ndarray, ci: str) -> np.ndarray:
    if ci == "normal":
        return np.full(n.shape, Z95)
    with np.errstate(invalid="ignore"):
        return np.where(n >= 2, stats.t.ppf(0.975, np.maximum(n - 1, 1)), np.nan)


def _stimulus_frame(
    rt: Ratings,
    *,
    mos: np.ndarray,
    std: np.ndarray,
    se: np.ndarray,
    n: np.ndarray,
    ci: str,
) -> pd.DataFrame:
    """Assemble the per-stimulus frame; degenerate stimuli get NaN and a note."""
    se = np.where(n >= 2, se, np.nan)  # one rating: no interval (METHODS.md section 1)
    std = np.where(n >= 2, std, np.nan)
    half = _quantile(n, ci) * se
    note = np.full(len(n), "", dtype=object)
    note[(n >= 2) & _is_zero_spread(std, mos)] = "all scores equal: zero-width interval"
    note[n == 1] = "single rating: no interval"
    note[n == 0] = "no scores left: every rater of this stimulus was rejected"
    return pd.DataFrame(
        {
            "stimulus": rt.stimuli,
            "mos": mos,
            "std": std,
            "se": se,
            "ci_low": mos - half,
            "ci_high": mos + half,
            "n": n.astype(np.int64),
            "note": note,
        }
    )


def _plain_stats(rt: Ratings, x: np.ndarray, keep: np.ndarray):
    """Mean, sample std (ddof=1) and std/sqrt(n) of the kept scores per stimulus."""
    n, mean, _, ss = _group_moments(rt.s[keep], x[keep], rt.n_stimuli)
    std = np.sqrt(_div(ss, n - 1))
    return mean, std, _div(std, np.sqrt(n)), n


def _residual_fit(rt: Ratings, x: np.ndarray, mos: np.ndarray, valid: np.ndarray):
    """Per rater: mean and std (ddof=0) of x - mos over the rater's valid scores.

    Descriptive bias/inconsistency for the methods without a rater model.
    """
    m = valid & np.isfinite(mos[rt.s])
    n, bias, _, ss = _group_moments(rt.r[m], x[m] - mos[rt.s[m]], rt.n_raters)
    return bias, np.sqrt(_div(ss, n))


def _rater_fit(
    rt: Ratings, x: np.ndarray, mos: np.ndarray, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per rater: bias and inconsistency of x - mos, and Pearson r of x with mos.

    Without repetitions the three share one set of group sums
    (var(x - mos) = var x + var mos - 2 cov); with repetitions r is computed on
    the repetition-averaged scores.
    """
    if rt.has_repeats:
        ok = np.ones(len(x), dtype=bool) if valid is None else valid
        bias, inc = _residual_fit(rt, x, mos, ok)
        return bias, inc, _rater_corr(rt, x, mos, valid)
    m = np.isfinite(mos[rt.s])
    if valid is not None:
        m &= valid
    g, a, b = rt.r[m], x[m], mos[rt.s[m]]
    n, mean_a, da, saa = _group_moments(g, a, rt.n_raters)
    _, mean_b, db, sbb = _group_moments(g, b, rt.n_raters)
    sab = _bincount(g, rt.n_raters, da * db)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sab / np.sqrt(saa * sbb)
        inc = np.sqrt(np.maximum(saa + sbb - 2.0 * sab, 0.0) / n)
    r[(n < 2) | (saa <= 0) | (sbb <= 0)] = np.nan
    return mean_a - mean_b, inc, np.clip(r, -1.0, 1.0)


def _rater_corr(
    rt: Ratings, x: np.ndarray, mos: np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """Pearson r of each rater's (repetition-averaged) scores with ``mos``."""
    pr, ps, y = rt.pair_means(x, valid)
    m = np.isfinite(y) & np.isfinite(mos[ps])
    return _pearson_by_group(pr[m], y[m], mos[ps[m]], rt.n_raters)


def _rater_frame(rt: Ratings, n: np.ndarray, **cols: Any) -> pd.DataFrame:
    """Per-rater frame with every column of RATER_COLUMNS (NaN where not computed)."""
    nan = np.full(rt.n_raters, np.nan)
    out: dict[str, Any] = {"rater": rt.raters, "n": n.astype(np.int64)}
    for col in RATER_COLUMNS[2:]:
        if col in ("P", "Q"):
            v = cols.get(col)
            out[col] = pd.array(
                v.astype(np.int64) if v is not None else [pd.NA] * rt.n_raters, dtype="Int64"
            )
        elif col == "rejected":
            out[col] = cols.get(col, np.zeros(rt.n_raters, dtype=bool)).astype(bool)
        elif col in ("reason", "note"):
            v = cols.get(col)
            out[col] = v if v is not None else np.full(rt.n_raters, "", dtype=object)
        else:
            out[col] = cols.get(col, nan)
    return pd.DataFrame(out)


def _fmt(values: np.ndarray) -> np.ndarray:
    """Format numbers for reason strings (vectorised via pandas, no per-rater loop)."""
    return pd.Series(values).round(4).astype(str).to_numpy(dtype=object)


def _fmt_int(values: np.ndarray) -> np.ndarray:
    """Format counts (held as floats) for reason strings: 18.0 -> "18"."""
    return pd.Series(values).round().astype(np.int64).astype(str).to_numpy(dtype=object)


def _forced(rt: Ratings, reject: np.ndarray | None, reason: np.ndarray | None):
    """Normalise an externally decided rejection (compute_dimensions) to arrays."""
    if reject is None:
        return None, None
    reject = np.asarray(reject, dtype=bool)
    if reason is None:
        reason = np.where(reject, "rejected by an external decision", "").astype(object)
    return reject, np.asarray(reason, dtype=object)


def _base_info(rt: Ratings, method: str, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": method,
        "options": options,
        "n_scores": len(rt.x),
        "n_raters": rt.n_raters,
        "n_stimuli": rt.n_stimuli,
        "max_repetitions": rt.max_repetitions,
    }


def _count_note(rt: Ratings, n_i: np.ndarray) -> np.ndarray:
    note = np.full(rt.n_raters, "", dtype=object)
    note[n_i == 1] = "single score"
    return note


# --------------------------------------------------------------------------- 1. plain MOS


def _mean_core(rt: Ratings, *, ci: str = "normal", reject=None, reject_reason=None):
    _check_choice("ci", ci, _CI_CHOICES)
    reject, reject_reason = _forced(rt, reject, reject_reason)
    rejected = reject if reject is not None else np.zeros(rt.n_raters, dtype=bool)
    keep = ~rejected[rt.r]
    mos, std, se, n = _plain_stats(rt, rt.x, keep)
    bias, inc, corr = _rater_fit(rt, rt.x, mos)
    n_i = _bincount(rt.r, rt.n_raters)
    raters = _rater_frame(
        rt,
        n_i,
        bias=bias,
        inconsistency=inc,
        corr=corr,
        rejected=rejected,
        reason=reject_reason,
        note=_count_note(rt, n_i),
    )
    info = _base_info(rt, "mean", {"ci": ci})
    return _stimulus_frame(rt, mos=mos, std=std, se=se, n=n, ci=ci), raters, info


def mean_mos(ratings: pd.DataFrame | Ratings, *, ci: str = "normal") -> MOSResult:
    """Plain MOS, sample std (ddof=1) and 95 % interval (METHODS.md section 1).

    ``ci="normal"``: mos -+ 1.95996 * std / sqrt(n) (BT.500, SUREAL ``MosModel``);
    ``ci="t"``: Student t with n - 1 degrees of freedom, the honest choice when a
    stimulus has few ratings. Rater columns are descriptive (bias = mean of
    score - MOS, inconsistency = std of the rest, corr = Pearson r with MOS).
    """
    stim, raters, info = _mean_core(_as_ratings(ratings), ci=ci)
    return MOSResult("mean", stim, raters, info)


# --------------------------------------------------------------------------- 2. z-scores


def _zscore_core(
    rt: Ratings,
    *,
    ci: str = "normal",
    rescale: bool = True,
    clip: bool = True,
    reject=None,
    reject_reason=None,
):
    _check_choice("ci", ci, _CI_CHOICES)
    reject, reject_reason = _forced(rt, reject, reject_reason)
    n_i, mean_i, _, ss_i = _group_moments(rt.r, rt.x, rt.n_raters)
    sd_i = np.sqrt(_div(ss_i, n_i - 1))  # ddof=1, as SUREAL's zscore_mode
    undefined = ~np.isfinite(sd_i) | _is_zero_spread(sd_i, mean_i)
    z = _div(rt.x - mean_i[rt.r], sd_i[rt.r])
    z[undefined[rt.r]] = np.nan
    if rescale:
        # LIVE convention 100 (z + 3) / 6 (METHODS.md section 2), per score.
        z = 100.0 * (z + 3.0) / 6.0
        if clip:
            z = np.clip(z, 0.0, 100.0)
    rejected = undefined.copy()
    reason = np.full(rt.n_raters, "", dtype=object)
    reason[undefined] = "constant scores (zero variance): no z-score"
    reason[undefined & (n_i < 2)] = "single score: no z-score"
    if reject is not None:
        reason = np.where(reject & ~undefined, reject_reason, reason)
        rejected |= reject
    keep = ~rejected[rt.r]
    mos, std, se, n = _plain_stats(rt, z, keep)
    bias, inc, corr = _rater_fit(rt, z, mos, ~undefined[rt.r])
    raters = _rater_frame(
        rt,
        n_i,
        bias=bias,
        inconsistency=inc,
        corr=corr,
        rejected=rejected,
        reason=reason,
        note=_count_note(rt, n_i),
    )
    info = _base_info(rt, "zscore", {"ci": ci, "rescale": rescale, "clip": clip})
    info["n_undefined_raters"] = int(undefined.sum())
    return _stimulus_frame(rt, mos=mos, std=std, se=se, n=n, ci=ci), raters, info


def zscore_mos(
    ratings: pd.DataFrame | Ratings,
    *,
    ci: str = "normal",
    rescale: bool = True,
    clip: bool = True,
) -> MOSResult:
    """MOS of per-rater z-scores (METHODS.md section 2).

    z = (u - mean_i) / std_i over all scores of rater i (ddof=1). With ``rescale``
    each z becomes 100 (z + 3) / 6, clipped to [0, 100] if ``clip``, before
    averaging; ``rescale=False`` is SUREAL's ``ZscoringMosModel``. A rater with
    constant scores (or a single score) has no z-score: their scores are left
    out, the rater row says so (``rejected`` True with the reason).
    Call it once per rating dimension (or use :func:`compute_dimensions`).
    """
    stim, raters, info = _zscore_core(_as_ratings(ratings), ci=ci, rescale=rescale, clip=clip)
    return MOSResult("zscore", stim, raters, info)


# --------------------------------------------------------------------------- 3. BT.500


def _bt500_counts(
    rt: Ratings, x: np.ndarray, *, denominator: str, zero_variance: str
) -> dict[str, Any]:
    """P_i, Q_i and the two BT.500 ratios for every rater (METHODS.md section 3).

    Moments per stimulus over all its scores (repetitions pooled, as SUREAL);
    population moments (ddof=0) for beta2 and s.
    """
    _check_choice("denominator", denominator, ("rater", "all"))
    _check_choice("zero_variance", zero_variance, ("count", "ignore"))
    s, r = rt.s, rt.r
    n_j, mean, d, ss = _group_moments(s, x, rt.n_stimuli)
    m2 = _div(ss, n_j)
    m4 = _div(_bincount(s, rt.n_stimuli, (d * d) ** 2), n_j)
    beta2 = _div(m4, m2 * m2)
    tol = 1e-9
    eps = np.where((beta2 >= 2.0 - tol) & (beta2 <= 4.0 + tol), 2.0, np.sqrt(20.0))
    sigma = np.sqrt(m2)
    # u >= mean + eps s  <=>  d >= eps s; the tolerance makes exact ties count (">=").
    thr = eps * sigma - _TIE_RTOL * (np.abs(mean) + sigma + 1.0)
    hi = d >= thr[s]
    lo = -d >= thr[s]
    zero = _is_zero_spread(sigma, mean) & (n_j >= 2)
    # With "count", SUREAL's arithmetic: sigma = 0 makes every score of that
    # stimulus >= mean and <= mean, so each of its raters gets P += 1 and Q += 1.
    # "ignore": a stimulus whose scores all agree says nothing about any rater.
    # A stimulus with a single score is never counted: one score cannot be an
    # outlier from itself (SUREAL would count it; it cannot occur in a full design
    # with two or more raters, where we equal SUREAL).
    skip = (n_j < 2) | (zero if zero_variance == "ignore" else False)
    hi &= ~skip[s]
    lo &= ~skip[s]
    P = _bincount(r, rt.n_raters, hi.astype(float))
    Q = _bincount(r, rt.n_raters, lo.astype(float))
    n_i = _bincount(r, rt.n_raters)
    denom = (
        n_i
        if denominator == "rater"
        else np.full(rt.n_raters, rt.n_stimuli * rt.max_repetitions, dtype=float)
    )
    rate = _div(P + Q, denom)
    balance = _div(np.abs(P - Q), P + Q)
    rule = (rate > BT500_RATE) & (balance < BT500_BALANCE)
    return {
        "P": P,
        "Q": Q,
        "denominator": denom,
        "pq_rate": rate,
        "pq_balance": balance,
        "rule": rule,
        "n_zero_variance_stimuli": int(zero.sum()),
        "n_single_score_stimuli": int((n_j == 1).sum()),
    }


def _bt500_verdict(rt: Ratings, counts: dict[str, Any], label: str):
    rule = counts["rule"].copy()
    all_rejected = bool(rule.all())
    if all_rejected:
        rule[:] = False  # reject none rather than every rater (as SUREAL)
    reason = np.full(rt.n_raters, "", dtype=object)
    if rule.any():
        # The n of (P+Q)/n is said with its value, so that the reason can be read
        # against the rater's count of scores in this dimension.
        reason[rule] = (
            f"{label}: P = "
            + _fmt_int(counts["P"][rule])
            + ", Q = "
            + _fmt_int(counts["Q"][rule])
            + ", n = "
            + _fmt_int(counts["denominator"][rule])
            + ": (P+Q)/n = "
            + _fmt(counts["pq_rate"][rule])
            + f" > {BT500_RATE} and |P-Q|/(P+Q) = "
            + _fmt(counts["pq_balance"][rule])
            + f" < {BT500_BALANCE}"
        )
    return rule, reason, all_rejected


def _bt500_core(
    rt: Ratings,
    *,
    ci: str = "normal",
    denominator: str = "rater",
    zero_variance: str = "count",
    reject=None,
    reject_reason=None,
    _bias_removal: bool = False,
):
    _check_choice("ci", ci, _CI_CHOICES)
    reject, reject_reason = _forced(rt, reject, reject_reason)
    n_i = _bincount(rt.r, rt.n_raters)
    x = rt.x
    delta = None
    if _bias_removal:
        # P.913 12.4: Delta_i = mean over the rater's scores of u - MOS (all raters),
        # estimated once and not re-estimated after rejection (as SUREAL).
        mos0 = _div(_bincount(rt.s, rt.n_stimuli, x), _bincount(rt.s, rt.n_stimuli))
        delta = _div(_bincount(rt.r, rt.n_raters, x - mos0[rt.s]), n_i)
        x = x - delta[rt.r]
    label = "P.913 (BT.500 on bias-removed scores)" if _bias_removal else "BT.500"
    counts = _bt500_counts(rt, x, denominator=denominator, zero_variance=zero_variance)
    if reject is None:
        rejected, reason, all_rejected = _bt500_verdict(rt, counts, label)
    else:
        rejected, reason, all_rejected = reject, reject_reason, False
    keep = ~rejected[rt.r]
    mos, std, se, n = _plain_stats(rt, x, keep)
    resid_bias, inc, corr = _rater_fit(rt, x, mos)
    note = _count_note(rt, n_i)
    raters = _rater_frame(
        rt,
        n_i,
        bias=delta if delta is not None else resid_bias,
        inconsistency=inc,
        P=counts["P"],
        Q=counts["Q"],
        pq_rate=counts["pq_rate"],
        pq_balance=counts["pq_balance"],
        corr=corr,
        rejected=rejected,
        reason=reason,
        note=note,
    )
    method = "p913" if _bias_removal else "bt500"
    info = _base_info(
        rt, method, {"ci": ci, "denominator": denominator, "zero_variance": zero_variance}
    )
    info["n_rejected"] = int(rejected.sum())
    info["n_zero_variance_stimuli"] = counts["n_zero_variance_stimuli"]
    info["n_single_score_stimuli"] = counts["n_single_score_stimuli"]
    info["rule_rejected_everyone"] = all_rejected
    return _stimulus_frame(rt, mos=mos, std=std, se=se, n=n, ci=ci), raters, info


def bt500_mos(
    ratings: pd.DataFrame | Ratings,
    *,
    ci: str = "normal",
    denominator: str = "rater",
    zero_variance: str = "count",
) -> MOSResult:
    """ITU-R BT.500-14 A1-2.3.1 subject rejection, then MOS (METHODS.md section 3).

    ``denominator="rater"`` divides P + Q by the rater's own number of scores
    (equals SUREAL on full designs; SUREAL's choice, ``"all"`` = stimuli x
    repetitions, makes rejection nearly impossible in sparse crowd designs).
    ``zero_variance="count"`` reproduces SUREAL on a stimulus whose scores all
    agree (every rater of it gets P += 1 and Q += 1, which cancels in |P - Q| but
    raises (P + Q) / n); ``"ignore"`` skips such stimuli. A stimulus with a single
    score is never counted (SUREAL would treat it as zero-variance; it does not
    occur in full designs). If the rule would reject every rater, none is rejected.
    Every rater row reports P, Q, both ratios and the reason.
    """
    stim, raters, info = _bt500_core(
        _as_ratings(ratings), ci=ci, denominator=denominator, zero_variance=zero_variance
    )
    return MOSResult("bt500", stim, raters, info)


# --------------------------------------------------------------------------- 4. P.913


def p913_mos(
    ratings: pd.DataFrame | Ratings,
    *,
    ci: str = "normal",
    denominator: str = "rater",
    zero_variance: str = "count",
) -> MOSResult:
    """ITU-T P.913 12.4 bias removal, BT.500 rejection, MOS (METHODS.md section 4).

    SUREAL ``P913`` (``BiasremvSubjrejMosModel``): Delta_i from all raters, scores
    u - Delta_i, the BT.500 rule on those, then MOS/std/interval of the bias-removed
    scores of the kept raters. ``bias`` is Delta_i. Options as :func:`bt500_mos`.
    """
    stim, raters, info = _bt500_core(
        _as_ratings(ratings),
        ci=ci,
        denominator=denominator,
        zero_variance=zero_variance,
        _bias_removal=True,
    )
    return MOSResult("p913", stim, raters, info)


# --------------------------------------------------------------------------- 5. P.910


def _p910_core(
    rt: Ratings,
    *,
    ci: str = "normal",
    tol: float = 1e-8,
    max_iter: int = 1000,
    epsilon: float = 1e-8,
    quality_se: str = "stimulus",
    zero_mean_bias: bool = True,
    reject=None,
    reject_reason=None,
):
    _check_choice("ci", ci, _CI_CHOICES)
    _check_choice("quality_se", quality_se, ("stimulus", "rater"))
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter!r}")
    reject, reject_reason = _forced(rt, reject, reject_reason)
    full_rt = rt
    if reject is not None and reject.any():
        rt = rt.subset(~reject[rt.r])  # the model has no rejection of its own
    r, s, x = rt.r, rt.s, rt.x
    n_r, n_s = rt.n_raters, rt.n_stimuli
    cnt_i = _bincount(r, n_r)
    cnt_j = _bincount(s, n_s)

    # Alternating projection, SUREAL SubjectMLEModelProjectionSolver(2) step by step.
    psi = _div(_bincount(s, n_s, x), cnt_j)
    b = _div(_bincount(r, n_r, x - psi[s]), cnt_i)
    converged = False
    itr = 0
    while True:
        psi_prev, b_prev = psi, b
        e = x - psi[s] - b[r]
        # std (ddof=0) of the rater's residuals. Their mean is 0 by construction
        # (b was just set to the mean of x - psi), so no centring pass is needed.
        v_i = np.sqrt(_div(_bincount(r, n_r, e * e), cnt_i))
        w = (1.0 / (v_i**2 + epsilon))[r]
        with np.errstate(invalid="ignore", divide="ignore"):
            psi = _bincount(s, n_s, w * (x - b[r])) / _bincount(s, n_s, w)
        b = _div(_bincount(r, n_r, x - psi[s]), cnt_i)
        itr += 1
        delta = float(np.linalg.norm(np.nan_to_num(psi_prev - psi)))
        if delta < tol:
            converged = True
            break
        if itr >= max_iter:
            break
    # Per-stimulus residual std v_j from the last iteration's residuals (SUREAL's).
    e = x - psi_prev[s] - b_prev[r]
    e_j = _div(_bincount(s, n_s, e), cnt_j)
    v_j = np.sqrt(_div(_bincount(s, n_s, (e - e_j[s]) ** 2), cnt_j))
    # A rater whose residuals are all zero (e.g. the only rater of their stimuli)
    # has upsilon 0 up to rounding: report 0 and leave its standard error undefined.
    flat = (cnt_i > 0) & _is_zero_spread(v_i, np.abs(b))
    v_i = np.where(flat, 0.0, v_i)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv_vi2 = 1.0 / v_i**2
        if quality_se == "stimulus":
            # Solver2 (SUREAL P910): 1 / sqrt(sum over the stimulus' scores of v_j^-2)
            se = 1.0 / np.sqrt(np.maximum(0.0, cnt_j / v_j**2))
        else:
            # Solver (METHODS.md section 5): 1 / sqrt(sum over its raters of v_i^-2)
            se = 1.0 / np.sqrt(np.maximum(0.0, _bincount(s, n_s, inv_vi2[r])))
        bias_se = 1.0 / np.sqrt(np.maximum(0.0, cnt_i * inv_vi2))
        res = x - psi[s] - b[r]
        lpp = cnt_i * inv_vi2 - 3.0 * _bincount(r, n_r, res**2) * inv_vi2**2
        inc_se = np.where(flat, np.nan, 1.0 / np.sqrt(np.maximum(0.0, -lpp)))
        lo_f = np.sqrt(cnt_i / stats.chi2.ppf(0.975, cnt_i))
        hi_f = np.sqrt(cnt_i / stats.chi2.ppf(0.025, cnt_i))
    if zero_mean_bias:
        # sum_i Delta_i = 0 (unweighted mean over raters, as SUREAL)
        present = cnt_i > 0
        m = float(np.mean(b[present])) if present.any() else 0.0
        b = b - m
        psi = psi + m
    bias_half = Z95 * bias_se
    n_i_all = _bincount(full_rt.r, n_r)
    note = _count_note(full_rt, n_i_all)
    note[flat & (cnt_i > 1)] = "no residual variance: weight capped at 1/epsilon"
    rejected = reject if reject is not None else np.zeros(n_r, dtype=bool)
    reason = reject_reason if reject is not None else None
    # Present the stimulus spread as the residual std v_j (ddof=0), so that
    # se = std / sqrt(n) as for the other methods in the default mode.
    stim = _stimulus_frame(full_rt, mos=psi, std=v_j, se=se, n=cnt_j, ci=ci)
    if quality_se == "stimulus":
        flat = (cnt_j >= 2) & _is_zero_spread(v_j, psi)
        stim.loc[flat, "note"] = "zero residual variance: zero-width interval"
    raters = _rater_frame(
        full_rt,
        n_i_all,
        bias=b,
        bias_se=bias_se,
        bias_ci_low=b - bias_half,
        bias_ci_high=b + bias_half,
        inconsistency=v_i,
        inconsistency_se=inc_se,
        inconsistency_ci_low=lo_f * v_i,
        inconsistency_ci_high=hi_f * v_i,
        corr=_rater_corr(full_rt, full_rt.x, psi),
        rejected=rejected,
        reason=reason,
        note=note,
    )
    info = _base_info(
        full_rt,
        "p910",
        {
            "ci": ci,
            "tol": tol,
            "max_iter": max_iter,
            "epsilon": epsilon,
            "quality_se": quality_se,
            "zero_mean_bias": zero_mean_bias,
        },
    )
    info.update(n_iter=itr, converged=converged, last_change=delta)
    return stim, raters, info


def p910_mos(
    ratings: pd.DataFrame | Ratings,
    *,
    ci: str = "normal",
    tol: float = 1e-8,
    max_iter: int = 1000,
    epsilon: float = 1e-8,
    quality_se: str = "stimulus",
    zero_mean_bias: bool = True,
) -> MOSResult:
    """ITU-T P.910 Annex E / P.913 12.6 maximum likelihood (METHODS.md section 5).

    Model u_ijr = psi_j + Delta_i + upsilon_i X; solved by SUREAL's alternating
    projection (``P910`` = ``SubjectMLEModelProjectionSolver2``): stop when the L2
    change of psi is below ``tol`` or after ``max_iter`` iterations; weights
    1 / (upsilon_i^2 + ``epsilon``); ddof=0 throughout. With ``zero_mean_bias`` the
    biases are shifted to mean 0 over raters (psi shifted by the same amount).

    Stimulus ``mos`` is psi_j, ``std`` the residual std v_j of the stimulus; ``se``:
    ``quality_se="stimulus"`` (SUREAL P910) 1/sqrt(sum v_j^-2) = v_j / sqrt(n_j),
    ``"rater"`` (SUREAL's first solver, the METHODS.md formula) 1/sqrt(sum_i
    upsilon_i^-2). Rater rows: bias Delta_i -+ 1.95996 upsilon_i / sqrt(k_i),
    inconsistency upsilon_i in [sqrt(k_i / chi2_k(0.975)), sqrt(k_i / chi2_k(0.025))]
    x upsilon_i. ``ci`` sets the quantile applied to ``se`` (1.95996 or Student t
    with n_j - 1 degrees of freedom). ``info`` has ``n_iter``, ``converged`` and
    ``last_change``.
    """
    stim, raters, info = _p910_core(
        _as_ratings(ratings),
        ci=ci,
        tol=tol,
        max_iter=max_iter,
        epsilon=epsilon,
        quality_se=quality_se,
        zero_mean_bias=zero_mean_bias,
    )
    return MOSResult("p910", stim, raters, info)


# --------------------------------------------------------------------------- 6. correlation


def _loo_mos_pairs(rt: Ratings):
    """Leave-one-out MOS at every (rater, stimulus) pair: mean of the other raters."""
    pair_of, pr, ps, count = rt._pairs
    stim_sum = _bincount(rt.s, rt.n_stimuli, rt.x)
    stim_n = _bincount(rt.s, rt.n_stimuli)
    pair_sum = _bincount(pair_of, len(pr), rt.x)
    loo = _div(stim_sum[ps] - pair_sum, stim_n[ps] - count)
    return pr, ps, _div(pair_sum, count), loo


def _correlation_core(
    rt: Ratings,
    *,
    ci: str = "normal",
    threshold: float | None = None,
    leave_one_out: bool = False,
    min_variance: float | None = None,
    reject=None,
    reject_reason=None,
):
    _check_choice("ci", ci, _CI_CHOICES)
    reject, reject_reason = _forced(rt, reject, reject_reason)
    n_r = rt.n_raters
    n_i, mean_i, _, ss_i = _group_moments(rt.r, rt.x, n_r)
    var_i = _div(ss_i, n_i - 1)
    constant = (n_i >= 2) & _is_zero_spread(np.sqrt(np.nan_to_num(var_i)), mean_i)
    if leave_one_out:
        pr, ps, y, ref = _loo_mos_pairs(rt)
    else:
        mos0 = _div(_bincount(rt.s, rt.n_stimuli, rt.x), _bincount(rt.s, rt.n_stimuli))
        pr, ps, y = rt.pair_means(rt.x)
        ref = mos0[ps]
    m = np.isfinite(ref)
    r_i = _pearson_by_group(pr[m], y[m], ref[m], n_r)
    k_i = _bincount(pr[m], n_r)  # the images each r is computed over
    finite = np.isfinite(r_i)
    if threshold is None:
        # SUREAL SR_MOS: thr = min(0.7, mean(r) - std(r)) (np.std, ddof=0)
        thr = float(np.mean(r_i[finite]) - np.std(r_i[finite])) if finite.any() else np.nan
        thr = min(thr, 0.7)
    else:
        thr = float(threshold)
    rule = finite & (r_i <= thr)
    reason = np.full(n_r, "", dtype=object)
    kind = "leave-one-out " if leave_one_out else ""
    if rule.any():
        reason[rule] = (
            f"Pearson r with {kind}MOS over n = "
            + _fmt_int(k_i[rule])
            + " images = "
            + _fmt(r_i[rule])
            + f" <= {thr:.4f}"
        )
    reason[constant] = "constant scores (zero variance): straight-lining"
    rule |= constant
    if min_variance is not None:
        low = ~constant & (np.nan_to_num(var_i, nan=np.inf) < min_variance)
        reason[low] = "score variance " + _fmt(var_i[low]) + f" < {min_variance}: straight-lining"
        rule |= low
    all_rejected = bool(rule.all())
    if all_rejected:
        rule[:] = False
        reason[:] = ""
    if reject is not None:
        rule, reason = reject, reject_reason
    keep = ~rule[rt.r]
    mos, std, se, n = _plain_stats(rt, rt.x, keep)
    bias, inc, _ = _rater_fit(rt, rt.x, mos)
    note = _count_note(rt, n_i)
    note[~finite & ~constant] = "correlation undefined (fewer than 2 stimuli or constant MOS)"
    raters = _rater_frame(
        rt,
        n_i,
        bias=bias,
        inconsistency=inc,
        corr=r_i,
        rejected=rule,
        reason=reason,
        note=note,
    )
    info = _base_info(
        rt,
        "correlation",
        {
            "ci": ci,
            "threshold": threshold,
            "leave_one_out": leave_one_out,
            "min_variance": min_variance,
        },
    )
    info.update(threshold_used=thr, n_rejected=int(rule.sum()), rule_rejected_everyone=all_rejected)
    return _stimulus_frame(rt, mos=mos, std=std, se=se, n=n, ci=ci), raters, info


def correlation_mos(
    ratings: pd.DataFrame | Ratings,
    *,
    ci: str = "normal",
    threshold: float | None = None,
    leave_one_out: bool = False,
    min_variance: float | None = None,
) -> MOSResult:
    """Correlation screening, then MOS (METHODS.md section 6).

    r_i = Pearson r of rater i's (repetition-averaged) scores with the MOS of the
    same stimuli: the MOS of all raters including i (SUREAL's SR_MOS ``pearson``
    variant) or, with ``leave_one_out``, of the other raters (stricter). Reject
    r_i <= threshold; ``threshold=None`` is SUREAL's min(0.7, mean(r) - std(r)),
    VQEG HDTV uses a fixed 0.75. Raters with constant scores are rejected
    (straight-lining); ``min_variance`` also rejects raters whose score variance
    (ddof=1) is below it (crowd toolkits use ~0.1 on a 1-5 scale). A rater whose
    r is undefined for another reason (one stimulus) is kept and noted.
    """
    stim, raters, info = _correlation_core(
        _as_ratings(ratings),
        ci=ci,
        threshold=threshold,
        leave_one_out=leave_one_out,
        min_variance=min_variance,
    )
    return MOSResult("correlation", stim, raters, info)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Method:
    """One MOS method of the registry (after SUREAL's ``TYPE`` and ``VERSION``).

    ``version`` changes whenever the method's results change for the same input,
    so an analysis stamped with it can be reproduced; ``rejects`` says whether it
    has a rejection rule of its own (where ``reject_on`` matters).
    """

    name: str
    label: str
    version: str
    rejects: bool
    run: Callable[..., MOSResult]
    core: Callable[..., tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]]


def _p913_core(rt: Ratings, **kw: Any):
    return _bt500_core(rt, _bias_removal=True, **kw)


#: The one registry of MOS methods: name -> Method.
REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (
        Method("mean", "Plain MOS", "1.0", False, mean_mos, _mean_core),
        Method("zscore", "Per-rater z-scores (0-100)", "1.0", False, zscore_mos, _zscore_core),
        Method("bt500", "ITU-R BT.500-14 subject rejection", "1.0", True, bt500_mos, _bt500_core),
        Method("p913", "ITU-T P.913 bias removal + rejection", "1.0", True, p913_mos, _p913_core),
        Method(
            "p910", "ITU-T P.910 Annex E maximum likelihood", "1.0", False, p910_mos, _p910_core
        ),
        Method(
            "correlation", "Correlation screening", "1.0", True, correlation_mos, _correlation_core
        ),
    )
}
#: Public entry points by name (a long ratings frame in, a MOSResult out).
METHODS: dict[str, Callable[..., MOSResult]] = {n: m.run for n, m in REGISTRY.items()}


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")


def compute(ratings: pd.DataFrame, method: str, **options: Any) -> MOSResult:
    """Run ``METHODS[method]`` on a long ratings frame with the method's options."""
    _check_method(method)
    return METHODS[method](ratings, **options)


# --------------------------------------------------------------------------- dimensions


def compute_dimensions(
    ratings: pd.DataFrame,
    method: str,
    *,
    reject_on: str = "overall",
    overall: str = "overall",
    **options: Any,
) -> DimensionsResult:
    """Run ``method`` separately on every rating dimension (column ``dimension``).

    Raters use each scale differently, so every statistic (z-scores, biases,
    BT.500 moments) is computed within a dimension. For the methods with a
    rejection rule (bt500, p913, correlation):

    - ``reject_on="overall"`` (default): the rule is decided on dimension
      ``overall`` only, and a rater rejected there loses their scores in every
      dimension; ``verdicts.decided_by`` is ``"overall"``.
    - ``reject_on="per_dimension"``: each dimension decides for itself;
      ``verdicts.decided_by`` lists the dimensions that rejected the rater.

    mean, zscore and p910 have no rejection rule: each dimension is independent
    (a z-score flag, a rater with constant scores, is per dimension by nature).
    """
    _check_method(method)
    _check_choice("reject_on", reject_on, ("overall", "per_dimension"))
    if not isinstance(ratings, pd.DataFrame):
        raise ValueError(f"ratings must be a pandas DataFrame, got {type(ratings).__name__}")
    if "dimension" not in ratings.columns:
        raise ValueError(
            "ratings frame has no 'dimension' column; use compute() for a single dimension"
        )
    d_codes, dims = _codes_checked(ratings, "dimension")
    rt = prepare_ratings(ratings, _within=d_codes)
    dims_list = list(dims)
    decides = REGISTRY[method].rejects and reject_on == "overall"
    if decides and overall not in dims_list:
        raise ValueError(
            f"reject_on='overall' needs a dimension named {overall!r}; dimensions are "
            + ", ".join(repr(str(d)) for d in dims_list)
            + " (use reject_on='per_dimension')"
        )
    # Overall first, so its verdict exists before the other dimensions run.
    if overall in dims_list:
        dims_list.remove(overall)
        dims_list.insert(0, overall)
    order = np.argsort(d_codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(d_codes, minlength=len(dims)))])
    core = REGISTRY[method].core
    overall_verdict: pd.DataFrame | None = None
    stim_frames, rater_frames, infos = [], [], {}
    for dim in dims_list:
        k = dims.get_loc(dim)
        sub = rt.compact(order[bounds[k] : bounds[k + 1]])
        kwargs = dict(options)
        if decides and dim != overall:
            assert overall_verdict is not None
            v = overall_verdict.reindex(sub.raters)
            forced = v["rejected"].fillna(False).to_numpy(dtype=bool)
            why = np.where(
                forced,
                f"rejected on dimension {overall!r}: " + v["reason"].fillna("").astype(str),
                "",
            ).astype(object)
            kwargs.update(reject=forced, reject_reason=why)
        stim, raters, info = core(sub, **kwargs)
        if decides and dim == overall:
            overall_verdict = raters.set_index("rater")[["rejected", "reason"]]
        stim.insert(0, "dimension", dim)
        raters.insert(0, "dimension", dim)
        stim_frames.append(stim)
        rater_frames.append(raters)
        infos[str(dim)] = info
    stimuli = pd.concat(stim_frames, ignore_index=True)
    raters_all = pd.concat(rater_frames, ignore_index=True)
    verdicts = _verdicts(raters_all, decides, overall)
    return DimensionsResult(method, reject_on, stimuli, raters_all, verdicts, infos)


def _verdicts(raters_all: pd.DataFrame, decides: bool, overall: str) -> pd.DataFrame:
    """One row per rater: rejected?, by which dimension(s), and why."""
    n = raters_all.groupby("rater", sort=True)["n"].sum()
    out = pd.DataFrame({"rater": n.index, "n": n.to_numpy()})
    if decides:
        ov = raters_all[raters_all["dimension"] == overall].set_index("rater")
        rej = ov["rejected"].reindex(n.index).fillna(False).to_numpy(dtype=bool)
        out["rejected"] = rej
        out["decided_by"] = np.where(rej, overall, "")
        out["reason"] = np.where(rej, ov["reason"].reindex(n.index).fillna("").to_numpy(), "")
        return out
    hit = raters_all[raters_all["rejected"]]
    by = hit.groupby("rater", sort=True)
    decided = by["dimension"].agg(lambda d: ";".join(map(str, d)))
    reason = (
        (hit["dimension"].astype(str) + ": " + hit["reason"].astype(str))
        .groupby(hit["rater"], sort=True)
        .agg("; ".join)
    )
    out["rejected"] = out["rater"].isin(decided.index).to_numpy()
    out["decided_by"] = decided.reindex(n.index).fillna("").to_numpy()
    out["reason"] = reason.reindex(n.index).fillna("").to_numpy()
    return out
