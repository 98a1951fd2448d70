"""Model-vs-human agreement (scoring/numerics/agreement.py, METHODS.md section 8).

Pure: no Django, no database. Reference figures come from SciPy itself
(spearmanr, kendalltau, pearsonr, curve_fit) on the NFLX ratings: the MOS of
raters 0-12 plays the "prediction", the MOS of raters 13-25 the "truth".
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.optimize import curve_fit

from scoring.numerics import agreement as agreement_module
from scoring.numerics.agreement import (
    METRICS,
    AgreementResult,
    LogisticFitError,
    ScoresFileError,
    agreement,
    agreement_table,
    fit_logistic,
    logistic4,
    read_predictions_and_mos,
)

NFLX = Path(__file__).resolve().parent.parent / "data" / "sureal_nflx" / "ratings.csv"


@pytest.fixture(scope="module")
def halves() -> tuple[np.ndarray, np.ndarray]:
    """MOS of raters 0-12 ("prediction") and of raters 13-25 ("truth") per NFLX stimulus."""
    wide = pd.read_csv(NFLX).pivot_table(index="stimulus", columns="rater", values="score")
    assert wide.shape == (79, 26) and not wide.isna().any().any()
    raters = sorted(wide.columns)
    return (
        wide[raters[:13]].mean(axis=1).to_numpy(),
        wide[raters[13:]].mean(axis=1).to_numpy(),
    )


@pytest.fixture(scope="module")
def nflx_result(halves: tuple[np.ndarray, np.ndarray]) -> AgreementResult:
    return agreement(*halves, n_boot=1000, seed=0)


def _json(res: AgreementResult) -> dict:
    # allow_nan=False: a NaN anywhere in as_dict() fails the test.
    return json.loads(json.dumps(res.as_dict(), allow_nan=False))


def _naive_resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    # The module draws all resamples in one block when n * n_boot is small.
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


# --------------------------------------------------------------------------- point estimates


def test_point_estimates_equal_scipy_on_nflx(
    halves: tuple[np.ndarray, np.ndarray], nflx_result: AgreementResult
) -> None:
    x, y = halves
    res = nflx_result
    assert res.n == 79 and res.fit == "ok" and res.notes == []
    assert res.plcc_on == "logistic" and res.rmse_on == "logistic"
    assert res.srcc == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert res.krcc == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    yhat = logistic4(x, *res.logistic_params)
    assert res.plcc == pytest.approx(stats.pearsonr(yhat, y).statistic, abs=1e-12)
    assert res.rmse == pytest.approx(math.sqrt(np.mean((yhat - y) ** 2)), abs=1e-12)
    # An independent curve_fit on the raw scale with METHODS.md's starting values
    # reaches the same optimum as our standardised fit.
    ref, _ = curve_fit(logistic4, x, y, p0=[y.max(), y.min(), x.mean(), x.std() / 4], maxfev=20000)
    assert res.logistic_params == pytest.approx([*ref[:3], abs(ref[3])], rel=1e-4)
    ref_hat = logistic4(x, *ref)
    assert res.plcc == pytest.approx(stats.pearsonr(ref_hat, y).statistic, abs=1e-8)
    assert res.rmse == pytest.approx(math.sqrt(np.mean((ref_hat - y) ** 2)), abs=1e-7)
    # Figures that the two halves of one panel should give: high agreement.
    assert 0.9 < res.srcc < res.plcc < 1 and 0 < res.rmse < 0.5


def test_as_dict_is_json_ready(nflx_result: AgreementResult) -> None:
    d = _json(nflx_result)
    assert list(d) == [
        "n",
        "srcc",
        "krcc",
        "plcc",
        "rmse",
        "logistic_params",
        "fit",
        "plcc_on",
        "rmse_on",
        "ci95",
        "n_boot",
        "seed",
        "n_dropped",
        "notes",
    ]
    assert set(d["ci95"]) == set(METRICS) and len(d["logistic_params"]) == 4
    assert d["n_boot"] == 1000 and d["seed"] == 0


def test_nan_pairs_are_dropped_and_counted(halves: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = halves[0].copy(), halves[1].copy()
    x[3], y[10], y[11] = np.nan, np.nan, np.inf
    res = agreement(pd.Series(x), list(y), n_boot=0)
    keep = np.isfinite(x) & np.isfinite(y)
    assert res.n == 76 and res.n_dropped == 3
    assert any("dropped 3 pair" in note for note in res.notes)
    assert res.srcc == pytest.approx(stats.spearmanr(x[keep], y[keep]).statistic, abs=1e-12)
    assert res.ci95 == dict.fromkeys(METRICS)
    assert any("n_boot=0" in note for note in res.notes)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="aligned"):
        agreement([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="aligned"):
        agreement(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="numeric"):
        agreement(["a", "b"], [1, 2])
    with pytest.raises(ValueError, match="n_boot"):
        agreement([1, 2, 3], [1, 2, 3], n_boot=-1)
    with pytest.raises(ValueError, match="p0"):
        fit_logistic(np.arange(6.0), np.arange(6.0) ** 2, p0=[1, 0, 0, 0])


# --------------------------------------------------------------------------- logistic


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_fit_recovers_a_known_logistic(sign: float) -> None:
    rng = np.random.default_rng(7)
    true = (4.6, 1.3, 2.0, 0.7 * sign)  # b4 enters as |b4|: the sign is not identifiable
    x = rng.uniform(-1.0, 5.0, 500)
    y = logistic4(x, *true) + rng.normal(0.0, 1e-3, x.size)
    params = fit_logistic(x, y)
    assert params[3] > 0
    assert params == pytest.approx([4.6, 1.3, 2.0, 0.7], rel=5e-3)
    # Scale-free: predictions in other units give the same curve in those units.
    scaled = fit_logistic(1000.0 * x + 50.0, y)
    assert scaled == pytest.approx([4.6, 1.3, 2050.0, 700.0], rel=5e-3)


def test_fit_follows_a_decreasing_relation() -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 10.0, 300)
    y = logistic4(x, 1.0, 5.0, 5.0, 1.2) + rng.normal(0.0, 0.05, x.size)
    params = fit_logistic(x, y)
    assert params == pytest.approx([1.0, 5.0, 5.0, 1.2], abs=0.06)
    res = agreement(x, y, n_boot=0)
    assert res.fit == "ok" and res.srcc < -0.9 and res.plcc > 0.99


def test_plcc_after_fit_beats_raw_plcc_on_a_nonlinear_relation() -> None:
    rng = np.random.default_rng(11)
    x = rng.uniform(-4.0, 4.0, 400)
    y = logistic4(x, 5.0, 1.0, 0.5, 0.6) + rng.normal(0.0, 0.15, x.size)
    res = agreement(x, y, n_boot=0)
    raw = stats.pearsonr(x, y).statistic
    assert res.fit == "ok" and res.plcc > raw + 0.02
    slope, intercept = np.polyfit(x, y, 1)
    assert res.rmse < math.sqrt(np.mean((intercept + slope * x - y) ** 2))


def test_fit_logistic_errors() -> None:
    with pytest.raises(LogisticFitError, match="constant prediction"):
        fit_logistic(np.full(10, 3.0), np.arange(10.0))
    with pytest.raises(LogisticFitError, match="constant MOS"):
        fit_logistic(np.arange(10.0), np.full(10, 3.0))
    with pytest.raises(LogisticFitError, match="fewer than 5 points"):
        fit_logistic([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 4.0, 3.0])
    with pytest.raises(LogisticFitError, match="finite"):
        fit_logistic([1.0, np.nan, 3.0, 4.0, 5.0], [1.0, 2.0, 4.0, 3.0, 5.0])
    with pytest.raises(LogisticFitError):
        fit_logistic(np.linspace(0, 1, 50), np.linspace(0, 1, 50) ** 3, maxfev=2)


def test_constant_predictions_fail_with_finite_fallback_and_notes() -> None:
    y = np.linspace(1.0, 5.0, 30)
    res = agreement(np.full(30, 2.5), y, n_boot=200, seed=1)
    d = _json(res)
    assert d["fit"] == "failed: constant prediction"
    assert d["plcc_on"] == "raw" and d["rmse_on"] == "linear"
    assert d["srcc"] is None and d["krcc"] is None and d["plcc"] is None
    assert d["logistic_params"] is None
    assert d["rmse"] == pytest.approx(y.std())  # the best line through constant x: mean(y)
    assert any("constant" in note and "undefined" in note for note in d["notes"])
    assert any("logistic fit failed" in note for note in d["notes"])
    assert d["ci95"]["srcc"] is None and d["ci95"]["rmse"] is not None


def test_failed_fit_reports_raw_plcc_and_linear_rmse(
    halves: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Starve the optimiser: curve_fit raises RuntimeError, which must become the
    # announced fallback, not an exception and not a NaN.
    monkeypatch.setattr(agreement_module, "FIT_MAXFEV", 2)
    x, y = halves
    res = agreement(x, y, n_boot=300, seed=0)
    assert res.fit.startswith("failed: ") and res.logistic_params is None
    assert res.plcc_on == "raw" and res.rmse_on == "linear"
    assert res.plcc == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    fit = stats.linregress(x, y)
    linear = fit.intercept + fit.slope * x
    assert res.rmse == pytest.approx(math.sqrt(np.mean((linear - y) ** 2)), abs=1e-12)
    # The bootstrap uses the same fallback on every resample.
    idx = _naive_resamples(len(x), 300, 0)
    plcc = [stats.pearsonr(x[i], y[i]).statistic for i in idx]
    assert res.ci95["plcc"] == pytest.approx(np.percentile(plcc, [2.5, 97.5]), abs=1e-12)
    assert all(v is not None for v in _json(res)["ci95"].values())


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4])
def test_too_few_points_say_so(n: int) -> None:
    x = np.array([1.0, 2.0, 3.5, 3.0])[:n]
    y = np.array([1.2, 2.5, 3.1, 4.0])[:n]
    res = agreement(x, y, n_boot=100)
    d = _json(res)
    assert d["n"] == n and d["fit"].startswith("failed: fewer than 5 points")
    assert d["logistic_params"] is None and d["notes"]
    if n < 2:
        assert d["srcc"] is None and any("fewer than 2" in note for note in d["notes"])
    else:
        assert d["srcc"] == pytest.approx(stats.spearmanr(x, y).statistic)
        assert d["plcc"] == pytest.approx(stats.pearsonr(x, y).statistic)
    if n < 4:
        assert d["ci95"] == dict.fromkeys(METRICS)
        assert any("no bootstrap" in note for note in d["notes"])


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_contains_point_estimate_and_is_seeded(
    halves: tuple[np.ndarray, np.ndarray], nflx_result: AgreementResult
) -> None:
    for m in METRICS:
        low, high = nflx_result.ci95[m]
        assert low < getattr(nflx_result, m) < high, m
    again = agreement(*halves, n_boot=1000, seed=0)
    assert again.ci95 == nflx_result.ci95
    other = agreement(*halves, n_boot=1000, seed=1)
    assert other.ci95 != nflx_result.ci95
    assert other.srcc == nflx_result.srcc  # the point estimates do not depend on the seed


def test_bootstrap_rank_correlations_match_a_naive_loop(
    halves: tuple[np.ndarray, np.ndarray],
) -> None:
    x, y = halves
    res = agreement(x, y, n_boot=300, seed=5)
    idx = _naive_resamples(len(x), 300, 5)
    srcc = [stats.spearmanr(x[i], y[i]).statistic for i in idx]
    krcc = [stats.kendalltau(x[i], y[i]).statistic for i in idx]
    assert res.ci95["srcc"] == pytest.approx(np.percentile(srcc, [2.5, 97.5]), abs=1e-12)
    assert res.ci95["krcc"] == pytest.approx(np.percentile(krcc, [2.5, 97.5]), abs=1e-12)


def test_bootstrap_logistic_refit_matches_full_refits(
    halves: tuple[np.ndarray, np.ndarray],
) -> None:
    # The warm-started, capped refit must land where a full curve_fit lands, up
    # to the cap: on NFLX a few resamples drift along the flat valley of a nearly
    # linear logistic, where 50 evaluations stop a few 1e-4 short in RMSE (far
    # below the Monte Carlo error of a 2.5% percentile).
    x, y = halves
    res = agreement(x, y, n_boot=60, seed=2)
    plcc, rmse = [], []
    for i in _naive_resamples(len(x), 60, 2):
        params = fit_logistic(x[i], y[i], p0=res.logistic_params)
        yhat = logistic4(x[i], *params)
        plcc.append(stats.pearsonr(yhat, y[i]).statistic)
        rmse.append(math.sqrt(np.mean((yhat - y[i]) ** 2)))
    assert res.ci95["plcc"] == pytest.approx(np.percentile(plcc, [2.5, 97.5]), abs=1e-4)
    assert res.ci95["rmse"] == pytest.approx(np.percentile(rmse, [2.5, 97.5]), abs=5e-4)


def test_resample_ranks_equal_scipy_rankdata() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 7, 40).astype(float)  # many ties
    ux, inv = np.unique(x, return_inverse=True)
    idx = rng.integers(0, 40, size=(25, 40))
    ranks = agreement_module._resample_ranks(inv[idx], len(ux))
    np.testing.assert_allclose(ranks, stats.rankdata(x[idx], axis=1))


def test_bootstrap_in_several_blocks(
    halves: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agreement_module, "_BLOCK_VALUES", 79 * 7)  # 7 resamples per block
    res = agreement(*halves, n_boot=100, seed=0)
    assert res.ci95 == agreement(*halves, n_boot=100, seed=0).ci95
    for m in METRICS:
        low, high = res.ci95[m]
        assert low <= getattr(res, m) <= high


def test_constant_resamples_are_counted() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([1.5, 1.9, 3.2, 3.9, 5.1])
    d = _json(agreement(x, y, n_boot=500, seed=0))
    assert d["fit"] == "ok"
    assert any("SRCC interval: undefined on" in note for note in d["notes"])
    assert all(d["ci95"][m] is not None for m in METRICS)


# --------------------------------------------------------------------------- table


def _study_frame() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    n = 60
    overall = rng.uniform(1, 5, n)
    technical = np.clip(overall + rng.normal(0, 0.5, n), 1, 5)
    generator = np.array(["sd"] * 30 + ["dalle"] * 25 + ["tiny"] * 3 + [None] * 2, dtype=object)
    return pd.DataFrame(
        {
            "image": [f"img{i}.png" for i in range(n)],
            "generator": generator,
            "naturalness": overall + rng.normal(0, 0.4, n),
            "technical": technical + rng.normal(0, 0.4, n),
            "overall": overall,
            "MOS_technical": technical,
            # no rationality columns: that pair is skipped
        }
    )


def test_agreement_table_rows_per_pair() -> None:
    frame = _study_frame()
    table = agreement_table(
        frame,
        pairs={"naturalness": "overall", "technical": "MOS_technical", "rationality": "x"},
        n_boot=50,
    )
    assert table[["prediction", "mos"]].values.tolist() == [
        ["naturalness", "overall"],
        ["technical", "MOS_technical"],
    ]
    first = agreement(frame["naturalness"], frame["overall"], n_boot=50)
    row = table.iloc[0]
    assert row["n"] == 60 and row["fit"] == "ok"
    assert row["srcc"] == first.srcc and row["plcc"] == first.plcc
    assert [row["srcc_low"], row["srcc_high"]] == first.ci95["srcc"]
    assert [row[b] for b in ("b1", "b2", "b3", "b4")] == first.logistic_params
    # The default pairs: only naturalness/overall is present here ("technical" is
    # a prediction and technical/technical needs technical_pred + technical_mos).
    assert agreement_table(frame, n_boot=0)["mos"].tolist() == ["overall"]


def test_agreement_table_finds_suffixed_columns_for_equal_names() -> None:
    frame = _study_frame().rename(
        columns={"technical": "technical_pred", "MOS_technical": "technical_mos"}
    )
    table = agreement_table(frame, n_boot=0)
    assert table[["prediction", "mos"]].values.tolist() == [
        ["naturalness", "overall"],
        ["technical_pred", "technical_mos"],
    ]
    expected = agreement(frame["technical_pred"], frame["technical_mos"], n_boot=0)
    assert table.iloc[1]["krcc"] == expected.krcc


def test_agreement_table_by_group_with_small_groups() -> None:
    table = agreement_table(
        _study_frame(),
        pairs={"naturalness": "overall", "technical": "MOS_technical"},
        group_by="generator",
        n_boot=50,
    )
    assert list(table.columns[:3]) == ["generator", "prediction", "mos"]
    counts = dict(zip(table["generator"].fillna("<none>"), table["n"], strict=False))
    assert counts == {"dalle": 25, "sd": 30, "tiny": 3, "<none>": 2}
    assert len(table) == 8
    tiny = table[table["generator"] == "tiny"].iloc[0]
    assert tiny["fit"].startswith("failed: fewer than") and "no bootstrap" in tiny["notes"]
    assert math.isnan(tiny["srcc_low"]) and math.isnan(tiny["b1"])
    sd = table[(table["generator"] == "sd") & (table["prediction"] == "naturalness")].iloc[0]
    assert sd["fit"] == "ok" and sd["notes"] == ""


def test_agreement_table_errors() -> None:
    with pytest.raises(ValueError, match="naturalness/overall"):
        agreement_table(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(ValueError, match="task"):
        agreement_table(_study_frame(), group_by=["generator", "task"], n_boot=0)


# --------------------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-50, 50), min_size=2, max_size=40, unique=True),
    st.lists(st.integers(1, 5), min_size=40, max_size=40),
)
def test_rank_correlations_ignore_increasing_transforms(pred: list[int], mos: list[int]) -> None:
    x = np.array(pred, dtype=float)
    y = np.array(mos[: len(pred)], dtype=float)
    base = agreement(x, y, n_boot=0)
    for transformed in (np.exp(x / 10.0), x**3 + x, 7.0 * x - 3.0):
        res = agreement(transformed, y, n_boot=0)
        if math.isnan(base.srcc):
            assert math.isnan(res.srcc) and math.isnan(res.krcc)
        else:
            assert res.srcc == pytest.approx(base.srcc, abs=1e-12)
            assert res.krcc == pytest.approx(base.krcc, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False),
            st.floats(1, 5, allow_nan=False),
        ),
        min_size=0,
        max_size=30,
    )
)
@example([(0.0, 1.0), (1e-200, 2.0), (3e-200, 4.0)])  # np.polyfit's SVD failed here
def test_plcc_after_fit_is_a_correlation_and_json_never_holds_nan(
    pairs: list[tuple[float, float]],
) -> None:
    x = np.array([p for p, _ in pairs], dtype=float)
    y = np.array([m for _, m in pairs], dtype=float)
    res = agreement(x, y, n_boot=20, seed=0)
    d = _json(res)
    assert d["fit"] == "ok" or d["fit"].startswith("failed: ")
    if d["plcc"] is None:
        assert res.notes  # an undefined PLCC is always explained
    else:
        assert -1.0 <= d["plcc"] <= 1.0
    if d["rmse"] is not None:
        assert d["rmse"] >= 0.0


# --------------------------------------------------------------------------- CSV join


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_join_on_first_columns(tmp_path: Path) -> None:
    pred = _write(
        tmp_path,
        "pred.csv",
        "\ufeffimage,technical,naturalness\n a.png ,1,0.5\nb.png,2,0.7\n\nc.png,3,\nx.png,4,0.1\n",
    )
    mos = _write(
        tmp_path,
        "mos.csv",
        'filename,MOS_nat,generator\nc.png,4.0,sd\nb.png,3.5,"d,e"\na.png,2.0,sd\ny.png,1,sd\n'
        "z.png,1,sd\n",
    )
    joined = read_predictions_and_mos(pred, mos)
    assert joined.keys == ["a.png", "b.png", "c.png"]
    np.testing.assert_array_equal(joined.pred, [0.5, 0.7, np.nan])
    np.testing.assert_array_equal(joined.mos, [2.0, 3.5, 4.0])
    assert joined.unmatched == {
        "predictions_only": 1,
        "mos_only": 2,
        "predictions_only_examples": ["x.png"],
        "mos_only_examples": ["y.png", "z.png"],
    }
    assert joined.frame().columns.tolist() == ["image", "prediction", "mos"]
    other = read_predictions_and_mos(pred, mos, pred_column="technical")
    np.testing.assert_array_equal(other.pred, [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("pred_text", "mos_text", "file", "pattern"),
    [
        ("image,score\na,1\n", "f,MOS_nat\na,1\n", "pred", "line 1, column 'naturalness'"),
        ("image,naturalness\na,1\n", "f,MOS\na,1\n", "mos", "line 1, column 'MOS_nat'.*MOS"),
        ("image,naturalness\na,1\nb,high\n", "f,MOS_nat\na,1\n", "pred", "line 3, column"),
        ("image,naturalness\na,1\nb,nan\n", "f,MOS_nat\na,1\n", "pred", "line 3.*finite"),
        ("image,naturalness\na,1\n", "f,MOS_nat\na,1\n\na ,2\n", "mos", "line 4.*first on line 2"),
        ("", "f,MOS_nat\na,1\n", "pred", "line 1: empty predictions file"),
        ("image,naturalness\n", "f,MOS_nat\na,1\n", "pred", "line 1: .*no rows"),
        ("image,naturalness\na,1,2\n", "f,MOS_nat\na,1\n", "pred", "line 2: 3 fields"),
        ("image,naturalness\n,1\n", "f,MOS_nat\na,1\n", "pred", "line 2, column 'image'"),
        ("image,naturalness\na,1\n", "f,MOS_nat\nb,1\n", "pred", "no image name in common"),
        ("naturalness,image\n1,a\n", "f,MOS_nat\na,1\n", "pred", "first column"),
    ],
)
def test_join_errors_name_file_line_and_column(
    tmp_path: Path, pred_text: str, mos_text: str, file: str, pattern: str
) -> None:
    pred = _write(tmp_path, "pred.csv", pred_text)
    mos = _write(tmp_path, "mos.csv", mos_text)
    with pytest.raises(ScoresFileError, match=pattern) as info:
        read_predictions_and_mos(pred, mos)
    assert str(info.value).startswith(str(pred if file == "pred" else mos))
    assert isinstance(info.value, ValueError)


def test_join_unreadable_files(tmp_path: Path) -> None:
    mos = _write(tmp_path, "mos.csv", "f,MOS_nat\na,1\n")
    with pytest.raises(ScoresFileError, match="cannot read the predictions file"):
        read_predictions_and_mos(tmp_path / "missing.csv", mos)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("image,naturalness\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(ScoresFileError, match="UTF-8"):
        read_predictions_and_mos(latin, mos)


@pytest.mark.parametrize("scale", [1e-200, 1.0, 1e150])
def test_linear_rmse_ignores_the_scale_of_the_predictions(scale: float) -> None:
    """The fallback line's RMSE depends on y only through the fit, never on x's units:
    a spread of 1e-200 or 1e150 gives the RMSE of the same points at unit scale."""
    from scoring.numerics.agreement import _linear_rmse

    x = np.array([0.0, 1.0, 2.0, 3.0, 5.0])
    y = np.array([1.0, 2.1, 2.9, 4.2, 5.8])
    slope, intercept = np.polyfit(x, y, 1)
    want = float(np.sqrt(np.mean((intercept + slope * x - y) ** 2)))
    assert _linear_rmse(x * scale, y) == pytest.approx(want, rel=1e-9)
