"""What the researcher's study and agreement pages show (reads only; no Django views
here): plain rows for the tables, with numbers rounded for reading, and the
Vega-Lite specifications of the figures (scoring.workspace.figures)."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from django.db.models import Avg, Count

from annotation import protocol
from annotation import selectors as annotation_selectors
from annotation.models import Rater, Rating, Stimulus, Study
from scoring.models import Analysis
from scoring.workspace import figures
from scoring.workspace.figures import readable, readable_interval

#: The MOS confidence-interval methods (Analysis.options["ci"]; scoring.numerics.mos).
CI_METHODS: dict[str, dict[str, str]] = {
    "normal": {
        "label": "Normal: MOS ± 1.96 × SE",
        "short": "normal, ±1.96 SE",
        "help": "BT.500 and SUREAL's interval; fine with 15 or more ratings per image.",
    },
    "t": {
        "label": "Student t: MOS ± t(0.975, n − 1) × SE",
        "short": "Student t, n − 1 df",
        "help": (
            "Wider, and honest, when an image has few ratings (below about 15); with two "
            "or three it can reach past the ends of the scale, and is left unclipped."
        ),
    },
}
DEFAULT_CI = "normal"
#: How many analyses the study page lists with their live status.
RECENT_ANALYSES = 10


def dimension_label(key: str) -> str:
    return protocol.BY_KEY[key].label if key in protocol.BY_KEY else key


def ci_method(analysis: Analysis) -> dict[str, str]:
    """The CI method an analysis used (its ``options["ci"]``, normal by default)."""
    key = (analysis.options or {}).get("ci", DEFAULT_CI)
    return {"key": key, **CI_METHODS.get(key, {"label": key, "short": key, "help": ""})}


def image_urls(stimulus_ids: Iterable[int]) -> dict[int, str]:
    """Each stimulus's image URL (for a figure's tooltip thumbnail and click)."""
    return {
        s.pk: s.image.url if s.image else ""
        for s in Stimulus.objects.filter(pk__in=set(stimulus_ids)).only("id", "image")
    }


# --------------------------------------------------------------------------- study page


#: The protocol presets' short names (their form labels explain them relative to
#: each other, which reads wrongly on its own in the study header).
PROTOCOL_NAMES = {
    "overall": "Overall naturalness",
    "perspectives": "Overall, technical and rationality",
    "agin": "AGIN",
}


def protocol_summary(study: Study) -> dict[str, Any]:
    """The study's protocol as "AGIN (13 dimensions)", with the dimensions' labels."""
    try:
        labels = [d.label for d in protocol.dimensions_for(study.protocol)]
    except ValueError:
        labels = []
    name = PROTOCOL_NAMES.get(study.protocol, study.protocol)
    count = f"{len(labels)} dimension{'s' if len(labels) != 1 else ''}"
    return {"text": f"{name} ({count})", "dimensions": ", ".join(labels)}


def study_progress(study: Study) -> dict:
    """The annotation side's progress figures plus the figure of ratings per image,
    and the gold and training items (not test images, so not in the test counts)."""
    progress = annotation_selectors.study_progress(study)
    progress["figure"] = figures.ratings_per_image(progress["stimuli_by_ratings"], progress["k"])
    roles = dict(
        Stimulus.objects.filter(study=study)
        .values_list("role")
        .annotate(n=Count("id"))
        .values_list("role", "n")
    )
    progress["gold"] = roles.get(Stimulus.Role.GOLD, 0)
    progress["training"] = roles.get(Stimulus.Role.TRAINING, 0)
    return progress


def crowd_links(study: Study, base_url: str) -> dict[str, str]:
    """Ready-to-paste study URLs with the platforms' placeholders, for the platforms
    the study takes (its crowd-platforms setting)."""
    entry = base_url.rstrip("/") + study.get_absolute_url()
    prolific = urlencode(
        {
            "PROLIFIC_PID": "{{%PROLIFIC_PID%}}",
            "STUDY_ID": "{{%STUDY_ID%}}",
            "SESSION_ID": "{{%SESSION_ID%}}",
        },
        safe="{}%",
    )
    links = {"anonymous": entry, "prolific": f"{entry}?{prolific}", "mturk": entry}
    return {platform: url for platform, url in links.items() if platform in study.platforms}


def latest_analysis(study: Study) -> Analysis | None:
    return study.analyses.filter(status=Analysis.Status.DONE).order_by("-finished_at").first()


def chosen_analysis(study: Study, analysis_id: int | None) -> Analysis | None:
    """The finished analysis asked for, else the latest finished one."""
    if analysis_id is not None:
        chosen = study.analyses.filter(pk=analysis_id, status=Analysis.Status.DONE).first()
        if chosen is not None:
            return chosen
    return latest_analysis(study)


def analysis_state(analysis: Analysis) -> dict[str, Any]:
    """An analysis's live state, as the page shows it and jobs.json sends it."""
    label = analysis.get_status_display()
    if analysis.status == Analysis.Status.QUEUED and analysis.waiting_for_broker:
        label += " (waiting for the broker)"
    return {
        "id": analysis.pk,
        "method": analysis.method,
        "status": analysis.status,
        "status_label": label,
        "waiting_for_broker": analysis.waiting_for_broker,
        "error": analysis.error[:300],
        "finished": analysis.status in Analysis.FINISHED,
    }


def recent_analyses(study: Study) -> list[dict[str, Any]]:
    """The study's latest analyses with their state and options, newest first."""
    rows = []
    for a in study.analyses.order_by("-created_at")[:RECENT_ANALYSES]:
        rows.append(
            {
                **analysis_state(a),
                "analysis": a,
                "method_label": a.get_method_display(),
                "ci": ci_method(a)["short"],
                "reject_on": a.get_reject_on_display(),
                "created_at": a.created_at,
                "finished_at": a.finished_at,
            }
        )
    return rows


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


#: The MOS table's columns that can be sorted on (?sort=, "-" first for descending).
MOS_SORTS = ("filename", "mos", "ci_low", "ci_high", "n", "std")
#: Rows of the MOS table before "show all".
MOS_TABLE_ROWS = 20


def _sort_key(key: str):
    def value(row: dict[str, Any]) -> tuple:
        v = row.get(key)
        # Images without the value (no MOS) go last whatever the direction.
        return (v is None, v if v is not None else 0)

    return value


def mos_table(rows: list[dict[str, Any]], sort: str | None, show_all: bool) -> dict[str, Any]:
    """The MOS per image as a table: sorted by ``sort`` (a MOS_SORTS key, "-" for
    descending; MOS ascending by default, as the figure), the first
    :data:`MOS_TABLE_ROWS` unless ``show_all``; the headings' sort links."""
    key = (sort or "").removeprefix("-")
    if key not in MOS_SORTS:
        sort, key = "mos", "mos"
    descending = bool(sort and sort.startswith("-"))
    with_value = [r for r in rows if r.get(key) is not None]
    without = [r for r in rows if r.get(key) is None]
    ordered = sorted(with_value, key=_sort_key(key), reverse=descending) + sorted(
        without, key=lambda r: str(r.get("filename") or "")
    )
    shown = ordered if show_all else ordered[:MOS_TABLE_ROWS]
    columns = []
    for name, heading, numeric in (
        ("filename", "image", False),
        ("mos", "MOS", True),
        ("ci_low", "95% CI", True),
        ("n", "n", True),
        ("std", "SD", True),
    ):
        current = key == name
        columns.append(
            {
                "key": name,
                "heading": heading,
                "numeric": numeric,
                "current": current,
                "descending": current and descending,
                # A click on the current column flips its direction.
                "sort": f"-{name}" if current and not descending else name,
            }
        )
    return {
        "rows": [
            {
                **r,
                "mos_text": readable(r.get("mos")),
                "ci_text": readable_interval(r.get("ci_low"), r.get("ci_high")) or "–",
                "std_text": readable(r.get("std")),
            }
            for r in shown
        ],
        "columns": columns,
        "sort": sort,
        "all": show_all,
        "total": len(rows),
        "shown": len(shown),
        "limited": len(shown) < len(rows),
    }


def _reason_number(match: re.Match) -> str:
    """3 significant digits, trailing zeros dropped: 0.1111 -> 0.111, 0.0 -> 0, and
    the rule's thresholds stay as written (0.05, 0.3)."""
    text = format(float(match.group(0)), ".3g")
    return readable(float(match.group(0))) if "e" in text else text


def reason_parts(reason: str) -> list[str]:
    """A rejection reason cut where it may wrap (after its label, between its
    clauses), numbers at 3 significant digits: each part is shown unbroken."""
    text = re.sub(r"\d+\.\d+", _reason_number, reason or "")
    parts: list[str] = []
    for i, piece in enumerate(text.split(": ")):
        clauses = piece.split(" and ")
        for j, clause in enumerate(clauses):
            end = ""
            if j < len(clauses) - 1:
                end = " and"
            elif i < len(text.split(": ")) - 1:
                end = ":"
            parts.append(clause + end)
    return [p for p in parts if p]


def mos_counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How many images of a dimension have a MOS, and why the others have none
    (the analysis's note per image, counted)."""
    missing = [r for r in rows if r.get("mos") is None]
    reasons = Counter(str(r.get("note") or "no MOS") for r in missing)
    return {
        "with_mos": len(rows) - len(missing),
        "total": len(rows),
        "without": len(missing),
        "reasons": [{"note": note, "count": n} for note, n in reasons.most_common()],
    }


def analysis_results(
    analysis: Analysis,
    dimension: str | None = None,
    *,
    sort: str | None = None,
    show_all: bool = False,
) -> dict[str, Any]:
    """Everything the results card shows for one finished analysis: the dimensions
    it has, the chosen one's MOS per image (sorted, with intervals; figure and
    table) and rater bias figure, every dimension's MOS distribution, and the
    rejected raters."""
    study = analysis.study
    scale = protocol.get_scale(study.scale)
    lo, hi = float(scale.minimum), float(scale.maximum)
    if analysis.method == "zscore":
        lo, hi = 0.0, 100.0  # 100 (z + 3) / 6, clipped
    rows = list(
        analysis.stimulus_results.values(
            "stimulus_id",
            "dimension",
            "mos",
            "ci_low",
            "ci_high",
            "n",
            "std",
            "note",
            "stimulus__original_name",
        )
    )
    present = {r["dimension"] for r in rows}
    order = [d.key for d in protocol.dimensions_for(study.protocol)]
    dims = [d for d in order if d in present] + sorted(present - set(order))
    if dimension not in present:
        dimension = "overall" if "overall" in present else (dims[0] if dims else None)
    ci = ci_method(analysis)
    out: dict[str, Any] = {
        "dimensions": [{"key": d, "label": dimension_label(d)} for d in dims],
        "dimension": dimension,
        "dimension_label": dimension_label(dimension) if dimension else "",
        "ci": ci,
        "lo": lo,
        "hi": hi,
    }

    chosen = [r for r in rows if r["dimension"] == dimension]
    urls = image_urls(r["stimulus_id"] for r in chosen)
    per_image = [
        {
            "filename": r["stimulus__original_name"],
            "mos": r["mos"],
            "ci_low": r["ci_low"],
            "ci_high": r["ci_high"],
            "n": r["n"],
            "std": r["std"],
            "note": r["note"],
            "image": urls.get(r["stimulus_id"], ""),
        }
        for r in chosen
    ]
    out["mos_figure"] = figures.mos_per_stimulus(
        per_image,
        dimension=out["dimension_label"],
        lo=lo,
        hi=hi,
        ci_label=ci["short"],
    )
    out["counts"] = mos_counts(per_image)
    out["n_images"] = out["counts"]["with_mos"]
    out["mos_table"] = mos_table(per_image, sort, show_all)

    by_dim: dict[str, list[float]] = {}
    for r in rows:
        if r["mos"] is not None:
            by_dim.setdefault(r["dimension"], []).append(r["mos"])
    out["histograms"] = [
        {
            "dimension": d,
            "label": dimension_label(d),
            "spec_id": f"spec-hist-{d}",
            "spec": figures.mos_histogram(
                figures.histogram_bins(by_dim[d], lo, hi),
                dimension=dimension_label(d),
                mean=_mean(by_dim[d]),
                n=len(by_dim[d]),
            ),
        }
        for d in dims
        if d in by_dim
    ]

    raters = list(analysis.rater_results.select_related("rater").order_by("rater_id"))
    points = [_rater_point(r, dimension) for r in raters]
    fallback = _fallback_bias(analysis, dimension, [p for p in points if _no_bias(p)])
    for point in points:
        if point["rater_id"] in fallback:
            point.update(fallback[point["rater_id"]], reference="all raters' mean")
    out["bias_figure"] = figures.rater_bias(
        points, method=analysis.method, dimension=out["dimension_label"]
    )
    out["bias_fallback"] = sum(1 for p in points if p.get("reference"))
    out["bias_missing"] = [p["rater"] for p in points if _no_bias(p)]
    out["rejected"] = [
        rejected_row(r, fallback.get(r.rater_id) if dimension == "overall" else None)
        for r in raters
        if r.rejected
    ]
    return out


def _no_bias(point: dict[str, Any]) -> bool:
    return point.get("bias") is None or point.get("inconsistency") is None


def _fallback_bias(
    analysis: Analysis, dimension: str | None, points: list[dict[str, Any]]
) -> dict[int, dict[str, float]]:
    """Bias and inconsistency (mean and spread of score minus the image's mean) of
    raters whose images have no MOS, against the mean of all the images' raters.

    A rater is without a bias when every image they rated lost its MOS: e.g. BT.500
    rejected every rater of those images. Their residuals against the all-raters
    mean still show how they rated. Only for methods whose MOS is on the scores'
    scale (not z-scores; P.910's model gives every rater a bias).
    """
    if not points or analysis.method in ("zscore", "p910") or dimension not in protocol.BY_KEY:
        return {}
    ids = [p["rater_id"] for p in points]
    ratings = Rating.objects.filter(
        rater_id__in=ids,
        stimulus__study=analysis.study,
        stimulus__role=Stimulus.Role.TEST,
        is_pilot=False,
        **{f"{dimension}__isnull": False},
    )
    scores = list(ratings.values_list("rater_id", "stimulus_id", dimension))
    means = dict(
        Rating.objects.filter(
            stimulus_id__in={s for _, s, _ in scores},
            is_pilot=False,
            **{f"{dimension}__isnull": False},
        )
        .exclude(rater__status=Rater.Status.EXCLUDED)
        .values("stimulus_id")
        .annotate(m=Avg(dimension))
        .values_list("stimulus_id", "m")
    )
    residuals: dict[int, list[float]] = {}
    for rater_id, stimulus_id, score in scores:
        if means.get(stimulus_id) is not None:
            residuals.setdefault(rater_id, []).append(float(score) - float(means[stimulus_id]))
    return {
        rid: {"bias": statistics.fmean(values), "inconsistency": statistics.pstdev(values)}
        for rid, values in residuals.items()
        if values
    }


def _rater_point(result: Any, dimension: str | None) -> dict[str, Any]:
    """One rater in the bias figure: their figures on ``dimension`` (per_dimension),
    falling back to the stored deciding-dimension figures. Rejected is the
    rater's verdict (a rater rejected on overall is rejected on every dimension)."""
    facts = (result.per_dimension or {}).get(dimension or "", {})
    return {
        "rater_id": result.rater_id,
        "rater": result.rater.pseudonym,
        "bias": facts.get("bias", result.bias),
        "inconsistency": facts.get("inconsistency", result.inconsistency),
        "n": facts.get("n", result.n),
        "rejected": result.rejected,
        "reason": result.reason,
        "reference": "",
    }


def _count(value: Any) -> str:
    """A count stored as a float (BT.500's P and Q): "3", or "–" when there is none."""
    return "–" if value is None else str(round(float(value)))


def _deciding_counts(deciding: list[str], counts: dict[str, Any]) -> list[dict[str, Any]]:
    """n on each deciding dimension: one number when they agree (the usual case, every
    rating has every dimension), else each dimension with its own."""
    values = {counts.get(d) for d in deciding}
    if len(values) == 1:
        return [{"label": "", "n": values.pop()}]
    return [{"label": dimension_label(d), "n": counts.get(d)} for d in deciding]


def rejected_row(result: Any, fallback: dict[str, float] | None = None) -> dict[str, Any]:
    """A rejected rater as the table shows them: the n of the dimension(s) that
    decided (the n its reason counts), and n on every dimension; bias and
    inconsistency against the all-raters mean (``fallback``, overall) when their
    images have no MOS."""
    dims: dict[str, dict[str, Any]] = result.per_dimension or {}
    deciding = [d for d in (result.decided_by or "").split(";") if d]
    counts = {d: facts.get("n") for d, facts in dims.items()}
    values = {n for n in counts.values() if n is not None}
    if len(values) == 1 and len(counts) > 1:
        per_dimension = f"{values.pop()} on each of {len(counts)} dimensions"
    else:
        per_dimension = ", ".join(f"{dimension_label(d)} {n}" for d, n in counts.items())
    facts = dims.get(deciding[0], {}) if deciding else {}
    return {
        "rater": result.rater.pseudonym,
        "decided_by": ", ".join(dimension_label(d) for d in deciding) or "–",
        "n_deciding": _deciding_counts(deciding, counts),
        "n_per_dimension": per_dimension,
        "n_total": result.n,
        "p": _count(facts.get("P", result.p)),
        "q": _count(facts.get("Q", result.q)),
        "bias": readable(_or(facts.get("bias", result.bias), fallback, "bias")),
        "inconsistency": readable(
            _or(facts.get("inconsistency", result.inconsistency), fallback, "inconsistency")
        ),
        "against_all": bool(fallback) and facts.get("bias", result.bias) is None,
        "reason": result.reason,
        "reason_parts": reason_parts(result.reason),
    }


def _or(value: Any, fallback: dict[str, float] | None, key: str) -> Any:
    return fallback.get(key) if value is None and fallback else value


# --------------------------------------------------------------------------- agreement

#: The table's metrics: (key, heading, what the heading's note says).
METRICS = (
    ("srcc", "SRCC", "Spearman rank correlation, on the raw predictions"),
    ("krcc", "KRCC", "Kendall tau-b, on the raw predictions"),
    ("plcc", "PLCC", "Pearson correlation after the 4-parameter logistic fit"),
    ("rmse", "RMSE", "RMSE of the MOS after the 4-parameter logistic fit"),
)


def agreement_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's rows for reading: each metric rounded with its rounded interval,
    and what PLCC / RMSE were computed on (after the logistic, or the fallback)."""
    out = []
    for r in rows:
        metrics = [
            {
                "key": key,
                "value": readable(r.get(key)),
                "interval": readable_interval(r.get(f"{key}_low"), r.get(f"{key}_high")),
            }
            for key, _, _ in METRICS
        ]
        logistic = r.get("plcc_on") != "raw"
        notes = [n.strip() for n in str(r.get("notes") or "").split(";") if n.strip()]
        out.append(
            {
                **r,
                "metrics": metrics,
                "logistic": logistic,
                # The page says once how many images have both a MOS and a prediction:
                # the per-row "dropped N pair(s)" repeats it. Resampling notes are
                # details, behind a disclosure.
                "main_notes": [
                    n for n in notes if not n.startswith("dropped ") and not _is_resample_note(n)
                ],
                "resample_notes": [n for n in notes if _is_resample_note(n)],
                "degenerate": r.get("degenerate") or "",
                "plcc_raw": readable(r.get("plcc_raw")),
                "fit_text": "logistic fit"
                if logistic
                else "logistic fit failed: PLCC on raw predictions, RMSE after a linear fit",
            }
        )
    return out


def _is_resample_note(note: str) -> bool:
    return "resample" in note or note.startswith("no bootstrap")


def agreement_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The scatter of the naturalness prediction against overall MOS, on the axis
    that suits the predictions and on the rank axis, with image URLs for its
    tooltip and click; and the axes to switch between."""
    points = report.get("points") or []
    urls = image_urls(p["stimulus_id"] for p in points if p.get("stimulus_id") is not None)
    with_images = [{**p, "image": urls.get(p.get("stimulus_id"), "")} for p in points]
    pair = next((r for r in report.get("pairs", []) if r.get("prediction") == "naturalness"), None)
    params = None
    if pair and pair.get("plcc_on") != "raw" and pair.get("b1") is not None:
        params = [pair["b1"], pair["b2"], pair["b3"], pair["b4"]]
    scatter = figures.agreement_scatters(with_images, params)
    labels = {"log": "log scale", "linear": "linear scale", "rank": "rank"}
    xs = [p["naturalness"] for p in points if p.get("naturalness") is not None]
    steep = bool(params and xs and 8 * abs(params[3]) < 0.02 * (max(xs) - min(xs)))
    return {
        "steep": steep,
        "scatter": scatter,
        "axes": [
            {"value": axis, "label": labels[axis], "checked": axis == scatter["default"]}
            for axis in scatter["specs"]
        ],
        "has_fit": params is not None,
    }
