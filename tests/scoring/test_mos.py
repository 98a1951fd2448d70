"""Correctness of scoring.numerics.mos: SUREAL 0.9.0 reference values, properties, degenerate input.

The reference data (tests/data/sureal_nflx, see ORIGIN.md there) is the Netflix
public NFLX dataset: 26 raters x 79 stimuli, full design, ACR 1-5.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from scoring.numerics import mos
from scoring.numerics.mos import (
    METHODS,
    RATER_COLUMNS,
    STIMULUS_COLUMNS,
    compute,
    compute_dimensions,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "sureal_nflx"
ROOT = Path(__file__).resolve().parents[2]
QUICK = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def nflx() -> pd.DataFrame:
    return pd.read_csv(DATA / "ratings.csv")


@cache
def reference() -> dict:
    return json.loads((DATA / "sureal_reference.json").read_text())


def _values(mapping: dict, keys: list) -> np.ndarray:
    return np.array([np.nan if mapping[k] is None else mapping[k] for k in keys], dtype=float)


def _close(ours, theirs, atol: float = 1e-6) -> None:
    ours = np.asarray(ours, dtype=float)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_allclose(ours, theirs, atol=atol, rtol=0, equal_nan=True)


# --------------------------------------------------------------------------- SUREAL

CASES = [
    ("mean", "MosModel", {}),
    ("zscore", "ZscoringMosModel", {"rescale": False}),
    ("bt500", "SubjrejMosModel", {}),
    ("p913", "BiasremvSubjrejMosModel", {}),
    ("p910", "SubjectMLEModelProjectionSolver2", {}),
    ("p910", "SubjectMLEModelProjectionSolver", {"quality_se": "rater"}),
]


@pytest.mark.parametrize(("method", "model", "options"), CASES, ids=[c[1] for c in CASES])
def test_matches_sureal_reference(method: str, model: str, options: dict) -> None:
    ref = reference()["models"][model]
    res = compute(nflx(), method, **options)
    stim = res.stimuli.set_index("stimulus")
    keys = list(ref["quality_scores"])
    assert sorted(keys) == sorted(stim.index)
    stim = stim.loc[keys]
    _close(stim["mos"], _values(ref["quality_scores"], keys))
    # SUREAL's quality_scores_std is the standard error of the estimate; its
    # ci95 are half-widths 1.95996 * that.
    _close(stim["se"], _values(ref["quality_scores_std"], keys))
    _close(
        stim["mos"] - stim["ci_low"], _values(ref["quality_scores_ci95"]["lower_halfwidth"], keys)
    )
    _close(
        stim["ci_high"] - stim["mos"], _values(ref["quality_scores_ci95"]["upper_halfwidth"], keys)
    )
    if "quality_ambiguity" in ref:  # the sample std (ddof=1) of the MOS models
        _close(stim["std"], _values(ref["quality_ambiguity"], keys))
    raters = res.raters.set_index("rater").loc[reference()["raters"]]
    rk = list(raters.index)
    if "observer_bias" in ref:
        _close(raters["bias"], _values(ref["observer_bias"], rk))
    if "observer_bias_std" in ref:
        _close(raters["bias_se"], _values(ref["observer_bias_std"], rk))
        half = _values(ref["observer_bias_ci95"]["upper_halfwidth"], rk)
        _close(raters["bias_ci_high"] - raters["bias"], half)
        _close(raters["bias"] - raters["bias_ci_low"], half)
    if "observer_inconsistency" in ref:
        _close(raters["inconsistency"], _values(ref["observer_inconsistency"], rk))
        _close(raters["inconsistency_se"], _values(ref["observer_inconsistency_std"], rk))
        ci = ref["observer_inconsistency_ci95"]
        _close(
            raters["inconsistency"] - raters["inconsistency_ci_low"],
            _values(ci["lower_halfwidth"], rk),
        )
        _close(
            raters["inconsistency_ci_high"] - raters["inconsistency"],
            _values(ci["upper_halfwidth"], rk),
        )
    if "num_iter" in ref:
        assert res.info["n_iter"] == ref["num_iter"]
        assert res.info["converged"]
    if "rejected_raters" in ref:
        assert res.rejected == ref["rejected_raters"]
        assert len(rk) - len(res.rejected) == ref["n_raters_kept"]
        _close(raters["pq_rate"], _values(ref["observer_rejected_1st_stats"], rk))
        _close(raters["pq_balance"], _values(ref["observer_rejected_2nd_stats"], rk))
        assert res.info["n_zero_variance_stimuli"] == ref["n_zero_variance_stimuli"]
        rejected = raters[raters["rejected"]]
        assert rejected["reason"].str.contains("P\\+Q").all()
        assert (raters.loc[~raters["rejected"], "reason"] == "").all()
    else:
        assert not res.raters["rejected"].any()


def test_frames_have_the_documented_columns() -> None:
    for method in METHODS:
        res = compute(nflx(), method)
        assert list(res.stimuli.columns) == STIMULUS_COLUMNS, method
        assert list(res.raters.columns) == RATER_COLUMNS, method
        assert res.raters["rejected"].dtype == bool
        assert res.method == method


def test_bt500_denominator_choice_is_sureal_on_a_full_design() -> None:
    own = compute(nflx(), "bt500", denominator="rater")
    whole = compute(nflx(), "bt500", denominator="all")
    pd.testing.assert_frame_equal(own.raters, whole.raters)
    pd.testing.assert_frame_equal(own.stimuli, whole.stimuli)


def test_zero_variance_stimulus_counts_as_outlier_both_ways_like_sureal() -> None:
    # NFLX has one stimulus every rater scored 1 (CrowdRun_03_288_375.yuv).
    counted = compute(nflx(), "bt500").raters
    ignored = compute(nflx(), "bt500", zero_variance="ignore").raters
    np.testing.assert_array_equal(counted["P"] - ignored["P"], 1)
    np.testing.assert_array_equal(counted["Q"] - ignored["Q"], 1)
    variants = reference()["models"]["SubjrejMosModel"]["not_sureal_variants_for_reference"]
    assert (
        compute(nflx(), "bt500", zero_variance="ignore").rejected
        == variants["rejected_if_zero_variance_stimuli_not_counted"]
    )
    row = compute(nflx(), "mean").stimuli.set_index("stimulus").loc["CrowdRun_03_288_375.yuv"]
    assert row["std"] == 0 and row["ci_low"] == row["ci_high"] == row["mos"] == 1.0
    assert "zero-width" in row["note"]


def test_zscore_rescale_is_the_live_convention() -> None:
    ref = reference()["models"]["ZscoringMosModel"]
    keys = list(ref["quality_scores"])
    raw = compute(nflx(), "zscore", rescale=False).stimuli.set_index("stimulus").loc[keys]
    scaled = compute(nflx(), "zscore", clip=False).stimuli.set_index("stimulus").loc[keys]
    _close(scaled["mos"], 100 * (_values(ref["quality_scores"], keys) + 3) / 6)
    _close(scaled["se"], raw["se"] * 100 / 6)
    clipped = compute(nflx(), "zscore").stimuli
    assert clipped["mos"].between(0, 100).all()


def test_student_t_interval() -> None:
    res = compute(nflx(), "mean", ci="t").stimuli
    half = stats.t.ppf(0.975, res["n"] - 1) * res["std"] / np.sqrt(res["n"])
    _close(res["ci_high"] - res["mos"], half, atol=1e-12)
    normal = compute(nflx(), "mean").stimuli
    assert ((res["ci_high"] - res["ci_low"]) >= (normal["ci_high"] - normal["ci_low"])).all()


def test_p910_intervals_follow_methods_md() -> None:
    res = compute(nflx(), "p910")
    r = res.raters
    k = r["n"].to_numpy()
    v = r["inconsistency"].to_numpy()
    _close(r["inconsistency_ci_low"], np.sqrt(k / stats.chi2.ppf(0.975, k)) * v, atol=1e-12)
    _close(r["inconsistency_ci_high"], np.sqrt(k / stats.chi2.ppf(0.025, k)) * v, atol=1e-12)
    _close(r["bias_ci_high"] - r["bias"], 1.95996 * v / np.sqrt(k), atol=1e-12)
    assert abs(r["bias"].sum()) < 1e-9  # sum_i Delta_i = 0


# --------------------------------------------------------------------------- properties


@st.composite
def sparse_designs(draw, min_raters: int = 3, max_raters: int = 8) -> pd.DataFrame:
    """A random sparse design with ACR scores; every rater and stimulus present."""
    n_r = draw(st.integers(min_raters, max_raters))
    n_s = draw(st.integers(3, 10))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    seen = rng.random((n_r, n_s)) < 0.7
    seen[rng.integers(n_r, size=n_s), np.arange(n_s)] = True  # each stimulus rated
    seen[np.arange(n_r), rng.integers(n_s, size=n_r)] = True  # each rater rates
    r, s = np.nonzero(seen)
    quality = rng.uniform(1, 5, n_s)
    x = np.clip(np.round(quality[s] + rng.normal(0, 0.8, len(r))), 1, 5)
    return pd.DataFrame(
        {"rater": [f"r{i}" for i in r], "stimulus": [f"s{j}" for j in s], "score": x}
    )


def _canonical(res: mos.MOSResult, rename_r: dict, rename_s: dict) -> tuple:
    stim = res.stimuli.assign(stimulus=res.stimuli["stimulus"].map(rename_s))
    raters = res.raters.assign(rater=res.raters["rater"].map(rename_r))
    return (
        stim.sort_values("stimulus").reset_index(drop=True),
        raters.sort_values("rater").reset_index(drop=True),
    )


@pytest.mark.parametrize("method", list(METHODS))
@QUICK
@given(frame=sparse_designs(), data=st.data())
def test_renaming_and_reordering_change_nothing(method: str, frame: pd.DataFrame, data) -> None:
    perm = data.draw(st.permutations(range(len(frame))))
    raters = sorted(frame["rater"].unique())
    stimuli = sorted(frame["stimulus"].unique())
    new_r = data.draw(st.permutations([f"q{i:02d}" for i in range(len(raters))]))
    new_s = data.draw(st.permutations([f"t{i:02d}" for i in range(len(stimuli))]))
    to_r, to_s = dict(zip(raters, new_r, strict=True)), dict(zip(stimuli, new_s, strict=True))
    shuffled = frame.iloc[list(perm)].reset_index(drop=True)
    shuffled["rater"] = shuffled["rater"].map(to_r)
    shuffled["stimulus"] = shuffled["stimulus"].map(to_s)

    ident = {k: k for k in raters}, {k: k for k in stimuli}
    a_stim, a_rat = _canonical(compute(frame, method), *ident)
    back = {v: k for k, v in to_r.items()}, {v: k for k, v in to_s.items()}
    b_stim, b_rat = _canonical(compute(shuffled, method), *back)
    # P.910 iterates to a tolerance: summation order moves it by ~1e-12.
    atol = 1e-6 if method == "p910" else 1e-9
    pd.testing.assert_frame_equal(a_stim, b_stim, check_exact=False, atol=atol, rtol=0)
    # Rater spreads are square roots of variances: where a variance is 0, a rounding
    # error e of the summation order becomes sqrt(e) (seen: 2.8e-7 against 0.0), so
    # they are compared to 1e-6 on the 0-100 scales; everything else as above.
    pd.testing.assert_frame_equal(
        a_rat.drop(columns="reason"),
        b_rat.drop(columns="reason"),
        check_exact=False,
        atol=max(atol, 1e-6),
        rtol=0,
    )
    assert a_rat["rejected"].tolist() == b_rat["rejected"].tolist()


def _full_design(seed: int, n_r: int, n_s: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    psi = rng.uniform(1, 5, n_s)
    bias = rng.normal(0, 0.5, n_r)
    noise = rng.uniform(0.2, 1.0, n_r)
    r, s = np.meshgrid(np.arange(n_r), np.arange(n_s), indexing="ij")
    x = psi[s] + bias[r] + noise[r] * rng.normal(size=r.shape)
    return pd.DataFrame({"rater": r.ravel(), "stimulus": s.ravel(), "score": x.ravel()})


@QUICK
@given(
    seed=st.integers(0, 2**31 - 1),
    n_r=st.integers(4, 10),
    n_s=st.integers(8, 30),
    which=st.integers(0, 9),
    c=st.floats(-2.0, 2.0, allow_nan=False),
)
def test_p910_shifting_one_rater(seed: int, n_r: int, n_s: int, which: int, c: float) -> None:
    """Adding c to every score of rater k, with sum_i Delta_i = 0 (I raters):

    - psi_j moves by c / I for every stimulus (so differences and ranks of psi
      are unchanged: the rater's offset is absorbed by Delta_k, not by psi),
    - Delta_k moves by c (1 - 1/I), every other Delta_i by -c / I
      (so Delta_k - Delta_i moves by exactly c),
    - every upsilon_i is unchanged.
    Exact at the fixed point; here iterated to 1e-12 and checked to 1e-6.
    """
    k = which % n_r
    frame = _full_design(seed, n_r, n_s)
    shifted = frame.assign(score=frame["score"] + np.where(frame["rater"] == k, c, 0.0))
    opts = {"tol": 1e-12, "max_iter": 20000}
    a = compute(frame, "p910", **opts)
    b = compute(shifted, "p910", **opts)
    assert a.info["converged"] and b.info["converged"]
    np.testing.assert_allclose(b.stimuli["mos"] - a.stimuli["mos"], c / n_r, atol=1e-6)
    expected = np.full(n_r, -c / n_r)
    expected[k] += c
    np.testing.assert_allclose(b.raters["bias"] - a.raters["bias"], expected, atol=1e-6)
    np.testing.assert_allclose(b.raters["inconsistency"], a.raters["inconsistency"], atol=1e-6)
    np.testing.assert_allclose(b.stimuli["se"], a.stimuli["se"], atol=1e-6)
    # Without the normalisation psi is only defined up to a common constant.
    a0 = compute(frame, "p910", zero_mean_bias=False, **opts).stimuli["mos"]
    b0 = compute(shifted, "p910", zero_mean_bias=False, **opts).stimuli["mos"]
    np.testing.assert_allclose(np.diff(b0), np.diff(a0), atol=1e-6)


def _with_random_rater(
    seed: int, n_r: int, per_stimulus: int, n_s: int = 3000, planted: bool = True
) -> pd.DataFrame:
    """Sparse ACR design: rater 0 answers uniformly at random on every stimulus;
    each stimulus also gets ``per_stimulus - 1`` of the other (honest) raters."""
    rng = np.random.default_rng(seed)
    psi = rng.uniform(1.5, 4.5, n_s)
    bias = rng.normal(0, 0.25, n_r)
    noise = rng.uniform(0.4, 0.8, n_r)
    others = np.argsort(rng.random((n_s, n_r - 1)), axis=1)[:, : per_stimulus - 1] + 1
    r = np.concatenate([np.zeros((n_s, 1), dtype=int), others], axis=1)
    s = np.repeat(np.arange(n_s), per_stimulus).reshape(n_s, per_stimulus)
    x = psi[s] + bias[r] + noise[r] * rng.normal(size=r.shape)
    if planted:
        x[:, 0] = rng.uniform(1, 5, n_s)
    x = np.clip(np.round(x), 1, 5)
    return pd.DataFrame({"rater": r.ravel(), "stimulus": s.ravel(), "score": x.ravel()})


@QUICK
@given(seed=st.integers(0, 2**31 - 1), n_r=st.integers(20, 30), k=st.integers(10, 15))
def test_planted_random_rater_is_found(seed: int, n_r: int, k: int) -> None:
    # 3,000 stimuli: BT.500's |P - Q| / (P + Q) < 0.3 is a balance test, and it
    # needs a few hundred outliers to be reliably balanced for a random rater.
    # At least 10 raters per stimulus: with n raters one outlier is at most
    # (n - 1) / sqrt(n) population standard deviations away, so with few raters
    # BT.500 cannot flag anybody (BT.500 asks for 15 or more observers).
    frame = _with_random_rater(seed, n_r, k)
    assert 0 in compute(frame, "bt500").rejected
    assert 0 in compute(frame, "p913").rejected
    p910 = compute(frame, "p910").raters
    assert p910["inconsistency"].idxmax() == p910.index[p910["rater"] == 0][0]
    corr = compute(frame, "correlation").raters.set_index("rater")
    assert corr["corr"].idxmin() == 0 and corr.loc[0, "rejected"]


def test_bt500_sparse_denominator_sureal_rejects_nobody() -> None:
    # Each rater sees ~1/3 of the stimuli: SUREAL's denominator (all stimuli)
    # divides the random rater's outliers by 3x too many.
    rng = np.random.default_rng(5)
    frame = _with_random_rater(1, 24, 8)
    keep = (frame["rater"] != 0) | (rng.random(len(frame)) < 0.15)
    frame = frame[keep]
    assert 0 in compute(frame, "bt500").rejected
    whole = compute(frame, "bt500", denominator="all")
    assert 0 not in whole.rejected
    row = whole.raters.set_index("rater").loc[0]
    assert row["pq_rate"] < 0.05


# --------------------------------------------------------------------------- degenerate


def test_single_rating_stimulus_has_no_interval() -> None:
    frame = pd.DataFrame(
        {
            "rater": ["a", "b", "c", "a", "b", "c"],
            "stimulus": ["x", "x", "x", "y", "y", "z"],
            "score": [1.0, 2.0, 2.0, 3.0, 5.0, 4.0],
        }
    )
    for method in METHODS:
        row = compute(frame, method).stimuli.set_index("stimulus").loc["z"]
        assert row["n"] == 1, method
        assert np.isnan(row["ci_low"]) and np.isnan(row["ci_high"]) and np.isnan(row["se"]), method
        assert row["note"] == "single rating: no interval", method
    assert compute(frame, "mean").stimuli.set_index("stimulus").loc["z", "mos"] == 4.0


def test_constant_rater_has_no_zscore() -> None:
    frame = pd.DataFrame(
        {
            "rater": ["a"] * 3 + ["b"] * 3 + ["c"] * 3,
            "stimulus": ["x", "y", "z"] * 3,
            "score": [3, 3, 3, 1, 2, 5, 2, 3, 4],
        }
    )
    res = compute(frame, "zscore", rescale=False)
    a = res.raters.set_index("rater").loc["a"]
    assert a["rejected"] and "zero variance" in a["reason"] and np.isnan(a["bias"])
    assert (res.stimuli["n"] == 2).all()  # a's scores left out everywhere
    assert res.info["n_undefined_raters"] == 1
    corr = compute(frame, "correlation").raters.set_index("rater").loc["a"]
    assert corr["rejected"] and "straight-lining" in corr["reason"]


def test_rule_that_rejects_everyone_rejects_no_one() -> None:
    # Every stimulus has zero variance: with SUREAL's arithmetic every rater gets
    # P = Q = n, so (P+Q)/n = 2 > 0.05 and |P-Q| = 0 for all of them.
    frame = pd.DataFrame(
        {
            "rater": ["a", "b", "c"] * 2,
            "stimulus": ["x"] * 3 + ["y"] * 3,
            "score": [2, 2, 2, 4, 4, 4],
        }
    )
    res = compute(frame, "bt500")
    assert res.rejected == [] and res.info["rule_rejected_everyone"]
    assert (res.raters["pq_rate"] == 2).all()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame(columns=["rater", "stimulus", "score"]), "empty"),
        (pd.DataFrame({"rater": ["a"], "stimulus": ["x"]}), "missing column.*'score'"),
        (pd.DataFrame({"rater": ["a"], "score": [1]}), "missing column.*'stimulus'"),
        (
            pd.DataFrame({"rater": ["a", "b"], "stimulus": ["x", "x"], "score": [1, np.nan]}),
            "non-finite",
        ),
        (
            pd.DataFrame({"rater": ["a", "b"], "stimulus": ["x", "x"], "score": [1, np.inf]}),
            "non-finite",
        ),
        (
            pd.DataFrame({"rater": ["a", "b"], "stimulus": ["x", "x"], "score": ["1", "good"]}),
            "'good'",
        ),
        (
            pd.DataFrame({"rater": ["a", None], "stimulus": ["x", "x"], "score": [1, 2]}),
            "'rater' has a missing value",
        ),
        (
            pd.DataFrame(
                {"rater": ["a", "a"], "stimulus": ["x", "x"], "score": [1, 2], "repetition": [1, 1]}
            ),
            "duplicate",
        ),
        ([1, 2, 3], "DataFrame"),
    ],
)
def test_bad_input_raises_value_error(frame, message: str) -> None:
    for method in METHODS:
        with pytest.raises(ValueError, match=message):
            compute(frame, method)


def test_bad_options_raise_value_error() -> None:
    with pytest.raises(ValueError, match="unknown method 'median'"):
        compute(nflx(), "median")
    with pytest.raises(ValueError, match="ci must be one of"):
        compute(nflx(), "mean", ci="wald")
    with pytest.raises(ValueError, match="denominator"):
        compute(nflx(), "bt500", denominator="stimuli")
    with pytest.raises(TypeError):
        compute(nflx(), "mean", threshold=0.7)


def test_repetitions_are_pooled_like_sureal() -> None:
    frame = pd.DataFrame(
        {
            "rater": ["a", "a", "b", "b", "c"],
            "stimulus": ["x"] * 5,
            "score": [1.0, 3.0, 4.0, 4.0, 5.0],
            "repetition": [1, 2, 1, 2, 1],
        }
    )
    res = compute(frame, "mean").stimuli.iloc[0]
    assert res["n"] == 5 and res["mos"] == pytest.approx(3.4)
    assert res["std"] == pytest.approx(np.std([1, 3, 4, 4, 5], ddof=1))
    # the same scores without a repetition column are the same repetitions
    same = compute(frame.drop(columns="repetition"), "mean").stimuli.iloc[0]
    assert same["mos"] == res["mos"] and same["n"] == 5


def test_no_django_import() -> None:
    code = (
        "import sys, scoring.numerics.mos, scoring.numerics.reliability, "
        "scoring.numerics.ratings_csv, scoring.numerics.agreement; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('django', 'celery')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --------------------------------------------------------------------------- dimensions


def _dimensions(seed: int = 3) -> pd.DataFrame:
    """Three dimensions; rater 0 answers at random on "overall" only."""
    frames = [
        _with_random_rater(seed + d, 20, 8, n_s=400, planted=name == "overall").assign(
            dimension=name
        )
        for d, name in enumerate(["overall", "technical", "rationality"])
    ]
    return pd.concat(frames, ignore_index=True)


def test_dimensions_reject_on_overall_applies_everywhere() -> None:
    frame = _dimensions()
    res = compute_dimensions(frame, "bt500")
    assert set(res.stimuli.columns) == {"dimension", *STIMULUS_COLUMNS}
    verdict = res.verdicts.set_index("rater")
    assert verdict.loc[0, "rejected"] and verdict.loc[0, "decided_by"] == "overall"
    rejected_overall = set(compute(frame[frame["dimension"] == "overall"], "bt500").rejected)
    assert set(verdict.index[verdict["rejected"]]) == rejected_overall
    per_dim = res.raters.set_index(["dimension", "rater"])
    for dim in ("technical", "rationality"):
        assert per_dim.loc[(dim, 0), "rejected"]
        assert per_dim.loc[(dim, 0), "reason"].startswith("rejected on dimension 'overall'")
        sub = frame[(frame["dimension"] == dim) & ~frame["rater"].isin(rejected_overall)]
        expected = compute(sub, "mean").stimuli.set_index("stimulus")["mos"]
        got = res.stimuli[res.stimuli["dimension"] == dim].set_index("stimulus")["mos"]
        pd.testing.assert_series_equal(got, expected)


def test_dimensions_per_dimension_decides_separately() -> None:
    frame = _dimensions()
    res = compute_dimensions(frame, "bt500", reject_on="per_dimension")
    for dim in ("overall", "technical", "rationality"):
        alone = compute(frame[frame["dimension"] == dim], "bt500")
        got = res.raters[res.raters["dimension"] == dim]
        assert got.loc[got["rejected"], "rater"].tolist() == alone.rejected
    verdict = res.verdicts.set_index("rater")
    assert "overall" in verdict.loc[0, "decided_by"].split(";")
    assert "technical" not in verdict.loc[0, "decided_by"].split(";")


def test_dimensions_without_rejection_rule_are_independent() -> None:
    frame = _dimensions().query("dimension != 'overall'")
    res = compute_dimensions(frame, "p910")  # no 'overall' needed: p910 rejects nobody
    for dim in ("technical", "rationality"):
        alone = compute(frame[frame["dimension"] == dim], "p910").stimuli
        got = res.stimuli[res.stimuli["dimension"] == dim].drop(columns="dimension")
        pd.testing.assert_frame_equal(got.reset_index(drop=True), alone)
    assert not res.verdicts["rejected"].any()


def test_dimensions_with_repetitions() -> None:
    frame = _dimensions().assign(repetition=1)
    res = compute_dimensions(frame, "mean")  # the same repetition in every dimension is fine
    assert len(res.stimuli) == 3 * 400
    dup = pd.concat([frame, frame.iloc[[5]]], ignore_index=True)
    with pytest.raises(ValueError, match="duplicate score"):
        compute_dimensions(dup, "mean")


def test_dimensions_errors() -> None:
    frame = _dimensions()
    with pytest.raises(ValueError, match="needs a dimension named 'overall'"):
        compute_dimensions(frame.query("dimension != 'overall'"), "bt500")
    with pytest.raises(ValueError, match="no 'dimension' column"):
        compute_dimensions(frame.drop(columns="dimension"), "mean")
    with pytest.raises(ValueError, match="reject_on"):
        compute_dimensions(frame, "bt500", reject_on="technical")


def test_bt500_never_counts_a_stimulus_with_one_score() -> None:
    # Rater "solo" is also the only rater of 5 stimuli (as early in a crowd study).
    frame = _with_random_rater(2, 20, 12, n_s=200, planted=False).astype(str)
    frame["score"] = frame["score"].astype(float)
    twin = frame[frame["rater"] == "1"].assign(rater="solo")
    alone = pd.DataFrame(
        {"rater": "solo", "stimulus": [f"only{i}" for i in range(5)], "score": 3.0}
    )
    without = compute(pd.concat([frame, twin]), "bt500")
    res = compute(pd.concat([frame, twin, alone]), "bt500")
    assert res.info["n_single_score_stimuli"] == 5
    a = res.raters.set_index("rater").loc["solo"]
    b = without.raters.set_index("rater").loc["solo"]
    assert (a["P"], a["Q"]) == (b["P"], b["Q"])
    assert not a["rejected"]


def test_correlation_options() -> None:
    frame = _with_random_rater(4, 20, 10, n_s=300)
    sureal = compute(frame, "correlation")
    r = sureal.raters.set_index("rater")
    corr = r["corr"]
    thr = min(0.7, corr.mean() - corr.std(ddof=0))
    assert sureal.info["threshold_used"] == pytest.approx(thr)
    assert r.index[r["rejected"]].tolist() == corr.index[corr <= thr].tolist()
    loo = compute(frame, "correlation", leave_one_out=True).raters.set_index("rater")
    assert (loo["corr"] < r["corr"]).all()  # a rater agrees with a MOS that contains them
    fixed = compute(frame, "correlation", threshold=0.75)
    assert fixed.info["threshold_used"] == 0.75
    assert set(fixed.rejected) == set(corr.index[corr <= 0.75])
    low = compute(frame, "correlation", min_variance=10.0)
    assert low.info["rule_rejected_everyone"] and low.rejected == []


def test_p910_reports_convergence_and_rater_se_option() -> None:
    res = compute(nflx(), "p910", max_iter=3)
    assert res.info["n_iter"] == 3 and not res.info["converged"]
    rater_se = compute(nflx(), "p910", quality_se="rater").stimuli
    stim_se = compute(nflx(), "p910").stimuli
    pd.testing.assert_series_equal(rater_se["mos"], stim_se["mos"])
    assert rater_se["se"].nunique() == 1  # full design: the same raters everywhere


def test_one_registry_names_runs_and_versions_every_method() -> None:
    from scoring.numerics.mos import REGISTRY

    assert set(REGISTRY) == set(METHODS)
    frame = pd.DataFrame(
        [(r, s, float((r * 7 + s * 13) % 5 + 1)) for r in range(6) for s in range(8)],
        columns=["rater", "stimulus", "score"],
    )
    for name, method in REGISTRY.items():
        assert method.name == name and method.version and method.label
        assert compute(frame, name).method == name
    # Only the methods with a rejection rule of their own let reject_on decide.
    assert {n for n, m in REGISTRY.items() if m.rejects} == {"bt500", "p913", "correlation"}
