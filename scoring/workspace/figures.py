"""Vega-Lite specifications of the researcher pages' figures, as plain dicts.

Built here from plain data (lists of dicts that scoring.workspace.dashboard reads),
put in the page with Django's ``json_script`` and drawn in the browser by
vega-embed (``static/js/figures.js``, vendored builds in ``static/vendor/vega/``),
whose action menu saves each figure as SVG or PNG. No chart geometry is computed
here: axes, ticks, scales and marks are Vega-Lite's.

Also the reading format of numbers (:func:`readable`): tables show rounded
numbers, downloads keep full precision.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import logit

from scoring.numerics import agreement

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
#: Points of the drawn logistic: enough for a smooth curve at any width.
CURVE_POINTS = 200
#: A log x axis when the predictions are all positive and span more than this ratio.
LOG_SPAN = 100.0
KEPT_COLOUR = "#3b6fd8"
REJECTED_COLOUR = "#d62728"
BAR_COLOUR = "#3b6fd8"
FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"

Spec = dict[str, Any]


# --------------------------------------------------------------------------- numbers


def readable(value: Any) -> str:
    """A number for reading: 3 significant digits, at most 3 decimals, no exponent.

    1.728e-17 -> "0.00", 0.8741 -> "0.874", 12.345 -> "12.3", 18864.2 -> "18,864";
    None, NaN and infinities -> "–". Downloads keep the full precision.
    """
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(x):
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if x == 0:
        return "0.00"
    decimals = max(0, min(3, 2 - math.floor(math.log10(abs(x)))))
    text = f"{x:.{decimals}f}"
    if float(text) == 0:
        return "0.00"  # rounds to zero: never "-0.000" nor "1.728e-17"
    return text


def readable_interval(low: Any, high: Any) -> str:
    """ "[low, high]" in :func:`readable` numbers, or "" when the interval is missing."""
    if low is None or high is None:
        return ""
    if not (math.isfinite(float(low)) and math.isfinite(float(high))):
        return ""
    return f"[{readable(low)}, {readable(high)}]"


# --------------------------------------------------------------------------- helpers


def _finite(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _base(description: str, *, height: int = 260, title: str = "", subtitle: str = "") -> Spec:
    """What every figure shares: schema, the width of its container, fonts.

    Titles stay short (a long one would squeeze the plot on a phone): the page's
    heading and caption say what a figure shows; ``description`` is its accessible
    name.
    """
    spec: Spec = {
        "$schema": SCHEMA,
        "description": description,
        "width": "container",
        "height": height,
        "autosize": {"type": "fit-x", "contains": "padding"},
        "config": {
            "font": FONT,
            "axis": {"labelFontSize": 11, "titleFontSize": 12, "grid": True},
            "legend": {"labelFontSize": 11, "titleFontSize": 12, "orient": "bottom"},
            "view": {"stroke": "#d4d4d8"},
        },
    }
    if title:
        spec["title"] = {
            "text": title,
            "subtitle": subtitle,
            "anchor": "start",
            "fontSize": 12,
            "fontWeight": 600,
            "subtitleColor": "#555",
        }
    return spec


def _domain(values: Iterable[float | None], lo: float, hi: float) -> list[float]:
    """The scale's range [lo, hi], widened to the data when data fall outside it."""
    finite = [v for v in values if v is not None]
    return [min([lo, *finite]), max([hi, *finite])]


# --------------------------------------------------------------------------- study page


def ratings_per_image(bins: Sequence[Mapping[str, Any]], k: int) -> Spec:
    """Bar chart of how many test images have n first ratings (n = 0..K)."""
    spec = _base(
        f"Histogram of ratings per image: test images with each count of ratings, 0 to K = {k}",
        height=180,
    )
    spec.update(
        data={"values": [{"n": int(b["n"]), "count": int(b["count"])} for b in bins]},
        mark={"type": "bar", "color": BAR_COLOUR, "tooltip": True},
        encoding={
            "x": {
                "field": "n",
                "type": "ordinal",
                "title": f"ratings per image (target K = {k})",
                "axis": {"labelAngle": 0},
            },
            # Whole images: integer ticks (an empty study's axis read "0.000000").
            "y": {
                "field": "count",
                "type": "quantitative",
                "title": "images",
                "axis": {"tickMinStep": 1, "format": "d"},
            },
            "tooltip": [
                {"field": "n", "type": "ordinal", "title": "ratings"},
                {"field": "count", "type": "quantitative", "title": "images"},
            ],
        },
    )
    return spec


def mos_per_stimulus(
    rows: Sequence[Mapping[str, Any]],
    *,
    dimension: str,
    lo: float,
    hi: float,
    ci_label: str,
) -> Spec:
    """MOS of every image of one dimension, sorted, with its confidence interval.

    ``rows``: ``filename``, ``mos``, ``ci_low``, ``ci_high``, ``n``, ``image`` (URL);
    images without a MOS are left out. x is the rank of the image by MOS.
    """
    data = []
    ordered = sorted(
        (r for r in rows if _finite(r.get("mos")) is not None), key=lambda r: float(r["mos"])
    )
    for rank, r in enumerate(ordered, start=1):
        low, high = _finite(r.get("ci_low")), _finite(r.get("ci_high"))
        data.append(
            {
                "rank": rank,
                "filename": r.get("filename", ""),
                "mos": float(r["mos"]),
                "ci_low": low,
                "ci_high": high,
                "ci": readable_interval(low, high) or "none",
                "n": int(r.get("n") or 0),
                "image": r.get("image") or "",
            }
        )
    domain = _domain([d["mos"] for d in data], lo, hi)
    y = {
        "field": "mos",
        "type": "quantitative",
        "title": f"{dimension} MOS",
        "scale": {"domain": domain, "nice": False},
    }
    x = {
        "field": "rank",
        "type": "quantitative",
        "title": "images, sorted by MOS",
        "scale": {"domain": [0, max(1, len(data)) + 1], "nice": False},
        "axis": {"tickMinStep": 1, "format": "d"},
    }
    tooltip = [
        {"field": "filename", "title": "title"},
        {"field": "image", "title": "image"},
        {"field": "mos", "type": "quantitative", "title": "MOS", "format": ".3~f"},
        {"field": "ci", "title": f"95% CI ({ci_label})"},
        {"field": "n", "type": "quantitative", "title": "ratings"},
        {"field": "rank", "type": "quantitative", "title": "rank"},
    ]
    spec = _base(
        f"{dimension}: MOS of each of {len(data)} images, sorted, with 95% intervals ({ci_label})",
        height=280,
    )
    spec.update(
        data={"values": data},
        encoding={"x": x},
        layer=[
            {
                "mark": {"type": "rule", "color": "#9aa5c4", "clip": True},
                "encoding": {
                    "y": {**y, "field": "ci_low"},
                    "y2": {"field": "ci_high"},
                },
            },
            {
                "mark": {
                    "type": "point",
                    "filled": True,
                    "size": 22 if len(data) < 400 else 10,
                    "color": KEPT_COLOUR,
                    "cursor": "pointer",
                },
                "encoding": {"y": y, "tooltip": tooltip, "href": {"field": "image"}},
            },
        ],
    )
    return spec


def histogram_bins(values: Sequence[float], lo: float, hi: float, bins: int = 20) -> list[dict]:
    """Counts of ``values`` in equal-width bins over [lo, hi] (widened to the data):
    data for :func:`mos_histogram` (a few bins travel to the page, not every MOS)."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    low, high = _domain(arr.tolist(), lo, hi)
    if high <= low:
        high = low + 1.0
    counts, edges = np.histogram(arr, bins=bins, range=(low, high))
    return [
        {"lo": float(edges[i]), "hi": float(edges[i + 1]), "count": int(c)}
        for i, c in enumerate(counts)
    ]


def nice_count_scale(tallest: int, ticks: int = 4) -> tuple[int, int]:
    """The top of a count axis and its tick step: a 1-2-5 step giving at most
    ``ticks`` intervals, the top the first tick at or above ``tallest`` (so the
    tallest bar never ends the axis unlabelled)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            candidate = step * factor
            if math.ceil(max(tallest, 1) / candidate) <= ticks:
                return candidate * math.ceil(max(tallest, 1) / candidate), candidate
        step *= 10


def mos_histogram(
    bins: Sequence[Mapping[str, Any]], *, dimension: str, mean: float | None, n: int
) -> Spec:
    """The distribution of one dimension's MOS over images, with its mean marked."""
    mean_text = readable(mean)
    spec = _base(
        f"MOS histogram of {dimension}: {n} images, mean {mean_text}",
        height=140,
        title=dimension,
        subtitle=f"n = {n}; dashed line: mean {mean_text}",
    )
    top, step = nice_count_scale(max((int(b["count"]) for b in bins), default=0))
    x = {
        "field": "lo",
        "type": "quantitative",
        "bin": {"binned": True},
        "title": "MOS",
        "scale": {"domain": [bins[0]["lo"], bins[-1]["hi"]] if bins else [0, 1], "nice": False},
    }
    layers: list[Spec] = [
        {
            "data": {"values": list(bins)},
            "mark": {"type": "bar", "color": BAR_COLOUR, "binSpacing": 1},
            "encoding": {
                "x": x,
                "x2": {"field": "hi"},
                "y": {
                    "field": "count",
                    "type": "quantitative",
                    "title": "images",
                    # Whole counts up to a labelled tick above the tallest bar.
                    "scale": {"domain": [0, top], "nice": False},
                    "axis": {"values": list(range(0, top + 1, step)), "format": "d"},
                },
                "tooltip": [
                    {"field": "lo", "type": "quantitative", "title": "from", "format": ".3~f"},
                    {"field": "hi", "type": "quantitative", "title": "to", "format": ".3~f"},
                    {"field": "count", "type": "quantitative", "title": "images"},
                ],
            },
        }
    ]
    if mean is not None:
        layers.append(
            {
                "data": {"values": [{"mean": mean}]},
                "mark": {"type": "rule", "color": "#111", "strokeDash": [4, 3]},
                "encoding": {
                    "x": {"field": "mean", "type": "quantitative"},
                    "tooltip": [
                        {"field": "mean", "type": "quantitative", "title": "mean", "format": ".3~f"}
                    ],
                },
            }
        )
    spec["layer"] = layers
    return spec


def rater_bias(raters: Sequence[Mapping[str, Any]], *, method: str, dimension: str) -> Spec:
    """Each rater's bias against inconsistency (P.910 Annex E), rejected raters marked.

    ``raters``: ``rater``, ``bias``, ``inconsistency``, ``n``, ``rejected``,
    ``reason``. For P.910 these are the model's Delta_i and upsilon_i; for the other
    methods the mean and spread of the rater's score minus MOS (said in the title).
    """
    data = [
        {
            "rater": str(r["rater"]),
            "bias": _finite(r.get("bias")),
            "inconsistency": _finite(r.get("inconsistency")),
            "n": int(r.get("n") or 0),
            "status": "rejected" if r.get("rejected") else "kept",
            "reason": str(r.get("reason") or "") or "–",
            # What score was compared with: the MOS, or (for a rater whose images all
            # lost their MOS) the mean of all the images' raters.
            "against": str(r.get("reference") or "") or "MOS",
        }
        for r in raters
    ]
    data = [d for d in data if d["bias"] is not None and d["inconsistency"] is not None]
    model = (
        "P.910 rater model"
        if method == "p910"
        else "score minus MOS, descriptive (P.910 model: run p910)"
    )
    spec = _base(
        f"Rater bias against inconsistency on {dimension} ({model}): {len(data)} raters, "
        "rejected raters marked",
        height=280,
    )
    colour = {
        "field": "status",
        "type": "nominal",
        "title": "rater",
        "scale": {"domain": ["kept", "rejected"], "range": [KEPT_COLOUR, REJECTED_COLOUR]},
    }
    spec.update(
        data={"values": data},
        layer=[
            {
                "data": {"values": [{"zero": 0}]},
                "mark": {"type": "rule", "color": "#9a9ca6", "strokeDash": [4, 3]},
                "encoding": {"x": {"field": "zero", "type": "quantitative"}},
            },
            {
                "mark": {"type": "point", "filled": True, "size": 45, "opacity": 0.85},
                "encoding": {
                    "x": {
                        "field": "bias",
                        "type": "quantitative",
                        "title": "bias (mean of score − MOS)",
                        "scale": {"zero": False},
                    },
                    "y": {
                        "field": "inconsistency",
                        "type": "quantitative",
                        "title": "inconsistency (spread of score − MOS)",
                        "scale": {"zero": True},
                    },
                    "color": colour,
                    "shape": {
                        "field": "status",
                        "type": "nominal",
                        "title": "rater",
                        "scale": {"domain": ["kept", "rejected"], "range": ["circle", "cross"]},
                    },
                    "tooltip": [
                        {"field": "rater", "title": "rater"},
                        {"field": "status", "title": "verdict"},
                        {"field": "n", "type": "quantitative", "title": f"n ({dimension})"},
                        {"field": "bias", "type": "quantitative", "format": ".3~f"},
                        {"field": "inconsistency", "type": "quantitative", "format": ".3~f"},
                        {"field": "against", "title": "score minus"},
                        {"field": "reason", "title": "reason"},
                    ],
                },
            },
        ],
    )
    return spec


# --------------------------------------------------------------------------- agreement


def x_axis_choice(xs: Sequence[float]) -> str:
    """ "log" when every prediction is positive and they span more than
    :data:`LOG_SPAN` (max / min), else "linear"."""
    values = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    if not values:
        return "linear"
    lo, hi = min(values), max(values)
    return "log" if lo > 0 and hi / lo > LOG_SPAN else "linear"


def logistic_curve(
    params: Sequence[float], lo: float, hi: float, *, log: bool, points: int = CURVE_POINTS
) -> list[dict[str, float]]:
    """The fitted 4-parameter logistic (scoring.numerics.agreement.logistic4) over
    the predictions [lo, hi], as points for a line.

    ``points`` predictions evenly spread on the axis the curve is drawn on
    (geometric on a log axis), plus ``points`` evenly spread in MOS along the
    curve: a steep logistic then shows its bend instead of a jump between two
    samples. Sorted by prediction.
    """
    if not hi > lo:
        return []
    b1, b2, b3, b4 = (float(p) for p in params)
    grid = np.geomspace(lo, hi, points) if log and lo > 0 else np.linspace(lo, hi, points)
    ends = (agreement.logistic4(np.array([lo, hi]), b1, b2, b3, b4) - b2) / (b1 - b2)
    if b1 != b2 and np.all(np.isfinite(ends)):
        share = np.linspace(ends[0], ends[1], points + 2)[1:-1]
        share = share[(share > 0) & (share < 1)]
        along = b3 + abs(b4) * logit(share)  # the logistic's inverse
        grid = np.concatenate([grid, along[(along > lo) & (along < hi)]])
    grid = np.unique(grid)
    ys = agreement.logistic4(grid, b1, b2, b3, b4)
    return [
        {"x": float(x), "y": float(y)}
        for x, y in zip(grid, ys, strict=True)
        if math.isfinite(float(y))
    ]


def _ranks(values: Sequence[float]) -> list[float]:
    """Average ranks, 1-based (ties share their mean rank, as SRCC ranks them)."""
    arr = np.asarray(values, dtype=float)
    order = np.argsort(arr, kind="mergesort")
    ranks = np.empty(len(arr))
    ranks[order] = np.arange(1, len(arr) + 1)
    for value in np.unique(arr):
        tied = arr == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks.tolist()


def agreement_scatter(
    points: Sequence[Mapping[str, Any]],
    params: Sequence[float] | None,
    *,
    axis: str,
    x_title: str = "naturalness prediction",
    y_title: str = "overall MOS",
) -> Spec:
    """Prediction against MOS, one point per image coloured by generator, with the
    fitted logistic; ``axis`` is "linear", "log" or "rank" (x = rank of the prediction).

    ``points``: ``filename``, ``generator``, ``naturalness``, ``overall``, ``image``
    (URL, for the tooltip's thumbnail and the click).
    """
    if axis not in ("linear", "log", "rank"):
        raise ValueError(f"axis must be linear, log or rank, got {axis!r}")
    clean = [
        p
        for p in points
        if _finite(p.get("naturalness")) is not None and _finite(p.get("overall")) is not None
    ]
    if axis == "log":
        clean = [p for p in clean if float(p["naturalness"]) > 0]
    xs = [float(p["naturalness"]) for p in clean]
    ranks = _ranks(xs) if clean else []
    data = [
        {
            "filename": p.get("filename", ""),
            "generator": p.get("generator") or "(none)",
            "prediction": float(p["naturalness"]),
            "mos": float(p["overall"]),
            "rank": rank,
            "image": p.get("image") or "",
        }
        for p, rank in zip(clean, ranks, strict=True)
    ]
    field = "rank" if axis == "rank" else "prediction"
    if axis == "rank":
        scale: Spec = {"type": "linear", "domain": [0, len(data) + 1], "nice": False}
        title = f"{x_title} (rank)"
    elif axis == "log":
        scale = {"type": "log", "nice": True}
        title = f"{x_title} (log scale)"
    else:
        scale = {"type": "linear", "zero": False, "nice": True}
        title = x_title
    x_axis: Spec = {"grid": True}
    if axis == "log":
        x_axis["format"] = "~g"
    tooltip = [
        {"field": "filename", "title": "title"},
        {"field": "image", "title": "image"},
        {"field": "generator", "title": "generator"},
        {"field": "prediction", "type": "quantitative", "title": "prediction", "format": ".4~g"},
        {"field": "mos", "type": "quantitative", "title": y_title, "format": ".3~f"},
        {"field": "rank", "type": "quantitative", "title": "prediction rank"},
    ]
    # The MOS decide the y range: a logistic that runs past them is clipped, it
    # never stretches the axis.
    mos_values = [d["mos"] for d in data] or [0.0, 1.0]
    y_scale = {"domain": [min(mos_values), max(mos_values)], "zero": False, "nice": True}
    y = {"field": "mos", "type": "quantitative", "title": y_title, "scale": y_scale}
    x = {"field": field, "type": "quantitative", "title": title, "scale": scale, "axis": x_axis}
    layers: list[Spec] = [
        {
            "data": {"values": data},
            "mark": {"type": "point", "filled": True, "size": 40, "opacity": 0.8},
            "encoding": {
                "x": x,
                "y": y,
                "color": {
                    "field": "generator",
                    "type": "nominal",
                    "title": "generator",
                    "scale": {"scheme": "category10"},
                },
                "tooltip": tooltip,
                "href": {"field": "image"},
            },
        }
    ]
    curve = _curve_values(data, params, axis)
    if curve:
        layers.append(
            {
                "data": {"values": curve},
                "mark": {"type": "line", "color": "#111", "strokeWidth": 1.5, "clip": True},
                "encoding": {
                    "x": {"field": "x", "type": "quantitative", "scale": scale},
                    "y": {"field": "y", "type": "quantitative", "scale": y_scale},
                    "order": {"field": "x", "type": "quantitative"},
                },
            }
        )
    which = {"log": "log axis", "rank": "rank axis", "linear": "linear axis"}[axis]
    spec = _base(
        f"Scatter of {len(data)} images: {x_title} ({which}) against {y_title}, "
        "with the fitted 4-parameter logistic",
        height=320,
    )
    spec["layer"] = layers
    spec["resolve"] = {"scale": {"x": "shared", "y": "shared"}}
    return spec


def _curve_values(
    data: Sequence[Mapping[str, Any]], params: Sequence[float] | None, axis: str
) -> list[dict[str, float]]:
    """The logistic's points in the x of ``axis``: sampled over the predictions on a
    linear or log axis; on the rank axis, at each image's rank (the curve is a
    function of the prediction, and ranks keep its order)."""
    if not params or not data or any(_finite(p) is None for p in params):
        return []
    xs = [d["prediction"] for d in data]
    if axis == "rank":
        pairs = sorted({(d["rank"], d["prediction"]) for d in data})
        step = max(1, len(pairs) // CURVE_POINTS)
        chosen = pairs[::step] + ([pairs[-1]] if (len(pairs) - 1) % step else [])
        ys = agreement.logistic4([p for _, p in chosen], *params)
        return [{"x": r, "y": float(y)} for (r, _), y in zip(chosen, ys, strict=True)]
    return logistic_curve(params, min(xs), max(xs), log=axis == "log")


def agreement_scatters(
    points: Sequence[Mapping[str, Any]], params: Sequence[float] | None
) -> dict[str, Any]:
    """The scatter on the axis that suits the predictions (log or linear) and on the
    rank axis, for the page's axis switch: ``{"default": ..., "specs": {...}}``."""
    default = x_axis_choice([p.get("naturalness") for p in points])
    return {
        "default": default,
        "specs": {
            default: agreement_scatter(points, params, axis=default),
            "rank": agreement_scatter(points, params, axis="rank"),
        },
    }
