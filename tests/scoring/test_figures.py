"""The Vega-Lite specifications of the results pages (scoring.workspace.figures): axis
choice, the logistic drawn smooth, numbers rounded for reading. Pure: no database."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scoring.numerics.agreement import logistic4
from scoring.workspace import figures

# The complaint's predictions: a baseline's scores from 0.45 to 18,864.
SPAN = [0.45, 3.2, 41.0, 480.0, 512.0, 633.0, 700.0, 5200.0, 18864.0]
# A steep fit like the one the demo's sharpness baseline gets (b4 tiny against the span).
STEEP = [46.87, 61.40, 633.39, 9.54]


def points(xs, mos=None):
    mos = mos or [40 + 3 * i for i in range(len(xs))]
    return [
        {
            "stimulus_id": i,
            "filename": f"img-{i}.png",
            "generator": "painter-a" if i % 2 else "painter-b",
            "naturalness": x,
            "overall": y,
            "image": f"/media/img-{i}.png",
        }
        for i, (x, y) in enumerate(zip(xs, mos, strict=True))
    ]


def strict_json(spec) -> str:
    return json.dumps(spec, allow_nan=False)  # no NaN can reach the page


# --- numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.728e-17, "0.00"),
        (-1.728e-17, "0.00"),
        (-0.0004, "0.00"),
        (0.0, "0.00"),
        (0.8741, "0.874"),
        (-0.14, "-0.140"),
        (0.0123, "0.012"),
        (1.23456, "1.23"),
        (12.345, "12.3"),
        (123.45, "123"),
        (18864.4355, "18,864"),
        (None, "–"),
        (float("nan"), "–"),
        (float("inf"), "–"),
        ("not a number", "–"),
    ],
)
def test_numbers_are_rounded_for_reading(value, text):
    assert figures.readable(value) == text


def test_intervals_are_rounded_and_never_in_exponent_notation():
    assert figures.readable_interval(1.728e-17, 0.41234) == "[0.00, 0.412]"
    assert figures.readable_interval(-0.4591, -0.0153) == "[-0.459, -0.015]"
    assert figures.readable_interval(None, 0.3) == ""
    assert figures.readable_interval(float("nan"), 0.3) == ""


# --- the agreement scatter's x axis ------------------------------------------------------


@pytest.mark.parametrize(
    ("xs", "axis"),
    [
        (SPAN, "log"),
        ([1.0, 101.0], "log"),
        ([1.0, 100.0], "linear"),  # a ratio of exactly 100 is not "more than"
        ([0.1, 0.9, 5.0], "linear"),
        ([0.0, 5.0, 18864.0], "linear"),  # zero has no logarithm
        ([-3.0, 18864.0], "linear"),
        ([], "linear"),
    ],
)
def test_x_axis_is_log_only_for_positive_predictions_spanning_orders_of_magnitude(xs, axis):
    assert figures.x_axis_choice(xs) == axis


def test_scatter_over_orders_of_magnitude_is_drawn_on_a_log_axis_with_a_rank_switch():
    out = figures.agreement_scatters(points(SPAN), STEEP)
    assert out["default"] == "log"
    assert set(out["specs"]) == {"log", "rank"}
    log = out["specs"]["log"]
    dots, curve = log["layer"]
    assert dots["encoding"]["x"]["field"] == "prediction"
    assert dots["encoding"]["x"]["scale"]["type"] == "log"
    assert "log scale" in dots["encoding"]["x"]["title"]
    assert curve["mark"]["type"] == "line"
    assert curve["encoding"]["x"]["scale"]["type"] == "log"
    assert all(0.45 <= p["x"] <= 18864.0 for p in curve["data"]["values"])
    # Hover: the image and its numbers; click: the image.
    tooltip = {t["title"] for t in dots["encoding"]["tooltip"]}
    assert {"title", "image", "prediction", "overall MOS"} <= tooltip
    assert dots["encoding"]["href"] == {"field": "image"}
    assert dots["data"]["values"][0]["image"] == "/media/img-0.png"
    strict_json(out)


def test_rank_axis_puts_each_image_at_its_prediction_rank():
    xs = [18864.0, 0.45, 480.0, 480.0, 3.2]
    spec = figures.agreement_scatter(points(xs), STEEP, axis="rank")
    dots, curve = spec["layer"]
    assert dots["encoding"]["x"]["field"] == "rank"
    assert dots["encoding"]["x"]["scale"]["type"] == "linear"
    ranks = {d["prediction"]: d["rank"] for d in dots["data"]["values"]}
    assert ranks == {0.45: 1, 3.2: 2, 480.0: 3.5, 18864.0: 5}  # ties share their mean rank
    # The logistic at each image's rank, in rank order.
    xs_curve = [p["x"] for p in curve["data"]["values"]]
    assert xs_curve == sorted(xs_curve) and xs_curve[0] == 1 and xs_curve[-1] == 5


def test_small_spans_keep_a_linear_axis():
    out = figures.agreement_scatters(points([0.2, 0.4, 0.6, 0.8, 0.9]), [80, 20, 0.5, 0.1])
    assert out["default"] == "linear"
    assert out["specs"]["linear"]["layer"][0]["encoding"]["x"]["scale"]["type"] == "linear"


def test_no_fit_no_curve_and_the_y_axis_follows_the_mos():
    spec = figures.agreement_scatter(points(SPAN), None, axis="log")
    assert len(spec["layer"]) == 1
    domain = spec["layer"][0]["encoding"]["y"]["scale"]["domain"]
    assert domain == [40, 40 + 3 * (len(SPAN) - 1)]


def test_a_zero_prediction_is_left_out_of_a_log_axis_only():
    xs = [0.0, *SPAN]
    assert len(
        figures.agreement_scatter(points(xs), None, axis="log")["layer"][0]["data"]["values"]
    ) == len(SPAN)
    assert len(
        figures.agreement_scatter(points(xs), None, axis="rank")["layer"][0]["data"]["values"]
    ) == len(xs)


# --- the logistic, drawn smooth ----------------------------------------------------------


@pytest.mark.parametrize("log", [True, False], ids=["log-axis", "linear-axis"])
@pytest.mark.parametrize(
    "params",
    [STEEP, [20.0, 80.0, 500.0, 2000.0], [80.0, 20.0, 1.0, 0.3]],
    ids=["steep-falling", "gentle-rising", "rising-early"],
)
def test_logistic_is_sampled_smooth_and_monotone(params, log):
    lo, hi = 0.45, 18864.0
    curve = figures.logistic_curve(params, lo, hi, log=log)
    x = np.array([p["x"] for p in curve])
    y = np.array([p["y"] for p in curve])
    assert len(curve) >= figures.CURVE_POINTS
    assert x[0] == pytest.approx(lo) and x[-1] == pytest.approx(hi)
    assert np.all(np.diff(x) > 0)
    np.testing.assert_allclose(y, logistic4(x, *params))
    # Monotone in the fit's direction (b1 > b2 rises).
    steps = np.diff(y)
    assert np.all(steps >= -1e-12) if params[0] > params[1] else np.all(steps <= 1e-12)
    # Smooth: no jump between neighbours larger than 1% of the curve's rise over [lo, hi]
    # (the old drawing, 60 samples spread evenly over the predictions, went from one
    # plateau to the other in a single step).
    rise = abs(y[-1] - y[0])
    assert np.abs(steps).max() <= 0.01 * rise + 1e-9
    # And evenly spread on the axis it is drawn on (no gap wider than an even grid's).
    spacing = np.diff(np.log(x)) if log else np.diff(x)
    even = (math.log(hi / lo) if log else hi - lo) / (figures.CURVE_POINTS - 1)
    assert spacing.max() <= even * (1 + 1e-9)


def test_old_sampling_would_have_jumped():
    """The reason for sampling along the curve: an even grid alone jumps."""
    grid = np.linspace(0.45, 18864.0, 60)
    y = logistic4(grid, *STEEP)
    assert np.abs(np.diff(y)).max() > 0.5 * abs(STEEP[0] - STEEP[1])


# --- study page figures ------------------------------------------------------------------


def test_mos_per_stimulus_is_sorted_with_rounded_intervals_and_drops_missing_mos():
    rows = [
        {"filename": "b.png", "mos": 70.0, "ci_low": 60.0, "ci_high": 80.0, "n": 8},
        {"filename": "a.png", "mos": 20.5, "ci_low": 1.728e-17, "ci_high": 41.0, "n": 8},
        {"filename": "c.png", "mos": None, "ci_low": None, "ci_high": None, "n": 0},
        {"filename": "d.png", "mos": 45.0, "ci_low": None, "ci_high": None, "n": 1},
    ]
    spec = figures.mos_per_stimulus(
        rows, dimension="Overall naturalness", lo=0, hi=100, ci_label="t"
    )
    values = spec["data"]["values"]
    assert [v["filename"] for v in values] == ["a.png", "d.png", "b.png"]
    assert [v["rank"] for v in values] == [1, 2, 3]
    assert values[0]["ci"] == "[0.00, 41.0]" and values[1]["ci"] == "none"
    rule, dots = spec["layer"]
    assert rule["mark"]["type"] == "rule" and rule["encoding"]["y2"] == {"field": "ci_high"}
    assert dots["encoding"]["y"]["scale"]["domain"] == [0, 100]
    strict_json(spec)


def test_histogram_bins_count_every_mos_once_over_the_scale():
    values = [0.0, 10.0, 55.5, 99.9, 100.0, 100.0]
    bins = figures.histogram_bins(values, 0, 100, bins=10)
    assert len(bins) == 10 and bins[0]["lo"] == 0 and bins[-1]["hi"] == 100
    assert sum(b["count"] for b in bins) == len(values)
    assert bins[-1]["count"] == 3  # the top edge belongs to the last bin
    spec = figures.mos_histogram(bins, dimension="Blur", mean=60.9, n=6)
    assert spec["title"]["text"] == "Blur" and "mean 60.9" in spec["title"]["subtitle"]
    strict_json(spec)


def test_histogram_widens_to_data_outside_the_scale():
    bins = figures.histogram_bins([-0.5, 5.5], 1, 5, bins=4)
    assert bins[0]["lo"] == -0.5 and bins[-1]["hi"] == 5.5


def test_rater_bias_marks_rejected_raters_and_skips_undefined_ones():
    raters = [
        {"rater": "R1", "bias": 0.5, "inconsistency": 1.0, "n": 18, "rejected": False},
        {
            "rater": "R2",
            "bias": -3.0,
            "inconsistency": 9.0,
            "n": 18,
            "rejected": True,
            "reason": "x",
        },
        {"rater": "R3", "bias": None, "inconsistency": None, "n": 1, "rejected": True},
    ]
    spec = figures.rater_bias(raters, method="p910", dimension="Overall naturalness")
    values = spec["data"]["values"]
    assert [(v["rater"], v["status"]) for v in values] == [("R1", "kept"), ("R2", "rejected")]
    dots = spec["layer"][1]
    assert dots["encoding"]["x"]["field"] == "bias"
    assert dots["encoding"]["y"]["field"] == "inconsistency"
    assert dots["encoding"]["color"]["scale"]["domain"] == ["kept", "rejected"]
    assert "P.910 rater model" in spec["description"]
    assert "descriptive" in figures.rater_bias(raters, method="bt500", dimension="x")["description"]


def test_ratings_per_image_is_a_bar_chart_of_the_counts():
    spec = figures.ratings_per_image([{"n": 0, "count": 3}, {"n": 1, "count": 5}], k=1)
    assert spec["mark"]["type"] == "bar"
    assert spec["data"]["values"] == [{"n": 0, "count": 3}, {"n": 1, "count": 5}]
    # Counts of images: whole-number ticks, even when every count is 0.
    assert spec["encoding"]["y"]["axis"] == {"tickMinStep": 1, "format": "d"}


def test_every_figure_fits_its_container_and_names_the_vega_lite_schema():
    specs = [
        figures.ratings_per_image([{"n": 0, "count": 1}], k=1),
        figures.mos_per_stimulus([], dimension="x", lo=0, hi=1, ci_label="t"),
        figures.mos_histogram(figures.histogram_bins([1.0], 0, 2), dimension="x", mean=1.0, n=1),
        figures.rater_bias([], method="mean", dimension="x"),
        figures.agreement_scatter(points(SPAN), STEEP, axis="log"),
    ]
    for spec in specs:
        assert spec["$schema"].endswith("/vega-lite/v6.json")
        assert spec["width"] == "container"
        assert spec["description"]
        strict_json(spec)
