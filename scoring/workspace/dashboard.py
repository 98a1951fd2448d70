"""Figures for the researcher's study page (reads only; no Django views here)."""

from __future__ import annotations

import statistics
from urllib.parse import urlencode

from annotation import protocol
from annotation import selectors as annotation_selectors
from annotation.models import Study
from scoring.models import Analysis


def histogram(values: list[float], lo: float, hi: float, bins: int = 10) -> list[dict]:
    """Equal-width bins over [lo, hi] as dicts with count and a 0-1 height for SVG bars."""
    counts = [0] * bins
    width = (hi - lo) / bins or 1
    for v in values:
        counts[min(bins - 1, max(0, int((v - lo) / width)))] += 1
    top = max(counts) or 1
    return [
        {
            "lo": lo + i * width,
            "hi": lo + (i + 1) * width,
            "count": c,
            **_bar(i, c / top),
        }
        for i, c in enumerate(counts)
    ]


def _bar(index: int, height: float) -> dict:
    """SVG geometry of bar ``index`` in a 10-unit-wide slot of a 50-unit-high plot."""
    h = round(50 * height, 2)
    return {"x": index * 10 + 0.5, "y": round(50 - h, 2), "h": h}


def study_progress(study: Study) -> dict:
    """The annotation side's progress figures plus the SVG geometry of the page's
    histogram of ratings per stimulus."""
    progress = annotation_selectors.study_progress(study)
    bins = progress["stimuli_by_ratings"]
    top = max((b["count"] for b in bins), default=1) or 1
    progress["ratings_histogram"] = [
        {**b, "tx": b["n"] * 10 + 5, **_bar(b["n"], b["count"] / top)} for b in bins
    ]
    progress["hist_width"] = len(bins) * 10
    return progress


def crowd_links(study: Study, base_url: str) -> dict[str, str]:
    """Ready-to-paste study URLs with the platforms' placeholders."""
    entry = base_url.rstrip("/") + study.get_absolute_url()
    prolific = urlencode(
        {
            "PROLIFIC_PID": "{{%PROLIFIC_PID%}}",
            "STUDY_ID": "{{%STUDY_ID%}}",
            "SESSION_ID": "{{%SESSION_ID%}}",
        },
        safe="{}%",
    )
    return {"anonymous": entry, "prolific": f"{entry}?{prolific}", "mturk": entry}


def latest_analysis(study: Study) -> Analysis | None:
    return study.analyses.filter(status=Analysis.Status.DONE).order_by("-finished_at").first()


def analysis_figures(analysis: Analysis) -> dict:
    scale = protocol.get_scale(analysis.study.scale)
    lo, hi = scale.minimum, scale.maximum
    if analysis.method == "zscore":
        lo, hi = 0, 100
    by_dim: dict[str, list[float]] = {}
    for dim, value in analysis.stimulus_results.exclude(mos__isnull=True).values_list(
        "dimension", "mos"
    ):
        by_dim.setdefault(dim, []).append(value)
    order = [d.key for d in protocol.dimensions_for(analysis.study.protocol)]
    histograms = [
        {
            "dimension": dim,
            "label": protocol.BY_KEY[dim].label if dim in protocol.BY_KEY else dim,
            "bins": histogram(by_dim[dim], lo, hi),
            "mean": statistics.fmean(by_dim[dim]),
            "n": len(by_dim[dim]),
        }
        for dim in order
        if dim in by_dim
    ]
    rejected = analysis.rater_results.filter(rejected=True).select_related("rater")
    return {"histograms": histograms, "rejected": rejected, "lo": lo, "hi": hi}
