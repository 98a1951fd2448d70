"""scoring.numerics.reliability: textbook values, brute-force cross-checks, the NFLX data."""

from __future__ import annotations

import json
from itertools import permutations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.numerics.reliability import (
    icc,
    is_full_design,
    krippendorff_alpha,
    rater_agreement,
    reliability_summary,
    spearman_brown,
    split_half,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "sureal_nflx"


def _long(matrix: dict[str, list]) -> pd.DataFrame:
    rows = [
        (rater, unit, value)
        for rater, values in matrix.items()
        for unit, value in enumerate(values, start=1)
        if value is not None
    ]
    return pd.DataFrame(rows, columns=["rater", "stimulus", "score"])


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the
# 4 observers x 12 units example with missing values; published interval alpha 0.849.
KRIPPENDORFF_2011 = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}

# Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
)


def _shrout_fleiss_frame() -> pd.DataFrame:
    t, j = np.meshgrid(np.arange(6), np.arange(4), indexing="ij")
    return pd.DataFrame(
        {
            "rater": [f"j{k}" for k in j.ravel()],
            "stimulus": t.ravel(),
            "score": SHROUT_FLEISS.ravel(),
        }
    )


def _alpha_brute_force(frame: pd.DataFrame) -> float:
    """Krippendorff's definition with explicit pairs (interval metric)."""
    units = [g["score"].to_numpy(float) for _, g in frame.groupby("stimulus") if len(g) >= 2]
    values = np.concatenate(units)
    n = len(values)
    d_o = sum(sum((a - b) ** 2 for a, b in permutations(u, 2)) / (len(u) - 1) for u in units) / n
    d_e = sum((a - b) ** 2 for a, b in permutations(values, 2)) / (n * (n - 1))
    return 1 - d_o / d_e


def test_krippendorff_alpha_textbook_example() -> None:
    assert krippendorff_alpha(_long(KRIPPENDORFF_2011)) == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_alpha_hand_computed() -> None:
    # Units (1,1), (2,2), (3,4); n = 6 values.
    # D_o = (1/6) * [0 + 0 + (3-4)^2 * 2 / 1] = 1/3
    # D_e = sum over ordered pairs of all 6 values / (6 * 5) = 2 * 6 * var_pop / 5
    #     = 2 * 41/6 / 5 = 41/15;  alpha = 1 - (1/3) / (41/15) = 1 - 5/41 = 36/41
    frame = _long({"a": [1, 2, 3], "b": [1, 2, 4]})
    assert krippendorff_alpha(frame) == pytest.approx(36 / 41, abs=1e-12)


def test_krippendorff_alpha_matches_brute_force_on_sparse_data() -> None:
    rng = np.random.default_rng(7)
    for _ in range(5):
        seen = rng.random((6, 9)) < 0.6
        r, s = np.nonzero(seen)
        q = rng.uniform(1, 5, 9)
        x = np.round(q[s] + rng.normal(0, 1, len(r)))
        frame = pd.DataFrame({"rater": r, "stimulus": s, "score": x})
        assert krippendorff_alpha(frame) == pytest.approx(_alpha_brute_force(frame), abs=1e-12)


def test_krippendorff_alpha_edge_cases() -> None:
    perfect = _long({"a": [1, 2, 3, 4], "b": [1, 2, 3, 4], "c": [1, None, 3, 4]})
    assert krippendorff_alpha(perfect) == 1.0
    assert np.isnan(krippendorff_alpha(_long({"a": [2, 2], "b": [2, 2]})))
    with pytest.raises(ValueError, match="two raters"):
        krippendorff_alpha(_long({"a": [1, None], "b": [None, 2]}))


def test_icc_shrout_fleiss_table() -> None:
    res = icc(_shrout_fleiss_frame())
    # Published: ICC(1,1) .17, ICC(2,1) .29, ICC(1,4) .44, ICC(2,4) .62;
    # mean squares BMS 11.24, WMS 6.26, JMS 32.49, EMS 1.02.
    assert (res.n, res.k) == (6, 4)
    assert res.icc1_1 == pytest.approx(0.17, abs=5e-3)
    assert res.icc2_1 == pytest.approx(0.29, abs=5e-3)
    assert res.icc1_k == pytest.approx(0.44, abs=5e-3)
    assert res.icc2_k == pytest.approx(0.62, abs=5e-3)
    for got, want in [(res.bms, 11.24), (res.wms, 6.26), (res.jms, 32.49), (res.ems, 1.02)]:
        assert got == pytest.approx(want, abs=5e-3)


def test_icc_of_constant_scores_is_undefined_not_an_error() -> None:
    # Every rater gives every stimulus the same score: all mean squares are 0.
    frame = pd.DataFrame(
        [(r, s, 61.0) for r in range(2) for s in range(3)], columns=["rater", "stimulus", "score"]
    )
    res = icc(frame)
    assert np.isnan(res.icc1_1) and np.isnan(res.icc2_k)
    assert reliability_summary(frame).as_dict()["measure"]  # the summary still answers


def test_icc_needs_a_full_design() -> None:
    frame = _shrout_fleiss_frame().iloc[1:]
    assert not is_full_design(frame)
    with pytest.raises(ValueError, match="full design"):
        icc(frame)


def test_split_half_is_seeded_and_sensible() -> None:
    frame = pd.read_csv(DATA / "ratings.csv")
    a = split_half(frame, n_splits=40, seed=1)
    b = split_half(frame, n_splits=40, seed=1)
    c = split_half(frame, n_splits=40, seed=2)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    assert 0.9 < a.srcc_mean < 1.0 and a.srcc_std > 0
    assert a.srcc_low <= a.srcc_mean <= a.srcc_high
    assert a.spearman_brown == pytest.approx(2 * a.srcc_mean / (1 + a.srcc_mean))
    assert a.n_stimuli == 79 and len(a.values) == 40


def test_split_half_extremes() -> None:
    rng = np.random.default_rng(0)
    q = rng.permutation(20).astype(float)
    # Two raters who agree exactly: both halves are identical.
    same = pd.DataFrame(
        {
            "rater": ["a"] * 20 + ["b"] * 20,
            "stimulus": list(range(20)) * 2,
            "score": np.concatenate([q, q]),
        }
    )
    assert split_half(same, n_splits=5).srcc_mean == pytest.approx(1.0)
    # Pure noise: no reliability.
    r, s = np.meshgrid(np.arange(10), np.arange(300), indexing="ij")
    noise = pd.DataFrame(
        {"rater": r.ravel(), "stimulus": s.ravel(), "score": rng.normal(size=r.size)}
    )
    assert abs(split_half(noise, n_splits=20).srcc_mean) < 0.1
    with pytest.raises(ValueError, match="at least 3 stimuli"):
        split_half(_long({"a": [1, 2], "b": [2, 3]}))
    assert spearman_brown(0.5) == pytest.approx(2 / 3)


def test_rater_agreement_leave_one_out_brute_force() -> None:
    rng = np.random.default_rng(3)
    seen = rng.random((5, 12)) < 0.8
    r, s = np.nonzero(seen)
    frame = pd.DataFrame({"rater": r, "stimulus": s, "score": rng.integers(1, 6, len(r))})
    got = rater_agreement(frame).set_index("rater")
    for rater, mine in frame.groupby("rater"):
        others = frame[frame["rater"] != rater].groupby("stimulus")["score"].mean()
        both = (
            mine.set_index("stimulus")["score"]
            .to_frame("x")
            .join(others.rename("loo"), how="inner")
        )
        assert got.loc[rater, "corr_loo"] == pytest.approx(both["x"].corr(both["loo"]))
        diff = both["x"] - both["loo"]
        assert got.loc[rater, "bias_loo"] == pytest.approx(diff.mean())
        assert got.loc[rater, "inconsistency_loo"] == pytest.approx(diff.std(ddof=0))


def test_summary_picks_icc_when_full_and_alpha_when_sparse() -> None:
    full = reliability_summary(pd.read_csv(DATA / "ratings.csv"), n_splits=20)
    assert full.design == "full" and full.measure == "ICC(2,k)"
    assert full.value == full.icc.icc2_k and full.value > 0.95
    assert full.raters["corr_loo"].between(0.5, 1).all()
    json.dumps(full.as_dict())

    sparse = reliability_summary(_long(KRIPPENDORFF_2011), n_splits=20)
    assert sparse.design == "sparse" and sparse.icc is None
    assert sparse.measure == "Krippendorff alpha (interval)"
    assert sparse.value == pytest.approx(0.849, abs=5e-4)
    json.dumps(sparse.as_dict())


def test_summary_with_repetitions_and_too_few_stimuli() -> None:
    frame = pd.DataFrame(
        {
            "rater": ["a", "a", "b", "b", "a", "b"],
            "stimulus": ["x", "x", "x", "x", "y", "y"],
            "score": [1.0, 3.0, 2.0, 2.0, 4.0, 5.0],
            "repetition": [1, 2, 1, 2, 1, 1],
        }
    )
    res = reliability_summary(frame)
    assert res.design == "full" and res.split_half is None
    assert any("repetitions averaged" in n for n in res.notes)
    assert any("split-half" in n for n in res.notes)
    # repetitions averaged: a -> (2, 4), b -> (2, 5)
    assert res.icc.k == 2 and res.icc.n == 2
