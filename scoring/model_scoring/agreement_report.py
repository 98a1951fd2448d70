"""Model-vs-human agreement for a study: the reads behind the dashboard, the API
and ``manage.py agreement <slug>`` (numerics in scoring.numerics.agreement)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from django.core.cache import cache

from annotation.models import Study
from scoring.models import Analysis, ModelVersion, Prediction, StimulusResult
from scoring.numerics import agreement

PAIRS = {"naturalness": "overall", "technical": "technical", "rationality": "rationality"}


class AgreementUnavailable(ValueError):
    """Nothing to compare yet (no analysis, no predictions)."""


def reference_analysis(study: Study, analysis_id: int | None = None) -> Analysis:
    qs = Analysis.objects.filter(study=study, status=Analysis.Status.DONE)
    if analysis_id is not None:
        analysis = qs.filter(pk=analysis_id).first()
        if analysis is None:
            raise AgreementUnavailable(f"no finished analysis {analysis_id} in this study")
        return analysis
    analysis = qs.order_by("-finished_at").first()
    if analysis is None:
        raise AgreementUnavailable(
            "the study has no finished MOS analysis yet: run one (study page, admin, API or "
            "manage.py run_analysis)"
        )
    return analysis


def agreement_frame(study: Study, version: ModelVersion, analysis: Analysis) -> pd.DataFrame:
    """One row per stimulus with a prediction and a MOS: predictions as ``<name>_pred``
    (naturalness kept as is), MOS as ``<dimension>_mos`` (overall kept as is)."""
    preds = pd.DataFrame.from_records(
        Prediction.objects.filter(model_version=version, stimulus__study=study).values(
            "stimulus_id",
            "technical",
            "rationality",
            "naturalness",
            "stimulus__original_name",
            "stimulus__generator",
            "stimulus__task",
        )
    )
    if preds.empty:
        raise AgreementUnavailable(f"{version.name} has no predictions for this study yet")
    mos = pd.DataFrame.from_records(
        StimulusResult.objects.filter(analysis=analysis, dimension__in=list(PAIRS.values())).values(
            "stimulus_id", "dimension", "mos"
        )
    )
    if mos.empty:
        raise AgreementUnavailable("the analysis has no MOS for overall/technical/rationality")
    wide = mos.pivot(index="stimulus_id", columns="dimension", values="mos")
    wide.columns = [c if c == "overall" else f"{c}_mos" for c in wide.columns]
    preds = preds.rename(
        columns={
            "technical": "technical_pred",
            "rationality": "rationality_pred",
            "stimulus__original_name": "filename",
            "stimulus__generator": "generator",
            "stimulus__task": "task",
        }
    )
    frame = preds.merge(wide, left_on="stimulus_id", right_index=True, how="inner")
    if frame.empty:
        raise AgreementUnavailable("no stimulus has both a prediction and a MOS")
    frame["generator"] = frame["generator"].replace("", "(none)")
    frame["task"] = frame["task"].replace("", "(none)")
    return frame


def _clean(value):
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _plain(column: str) -> str:
    return column.removesuffix("_pred").removesuffix("_mos")


def _rows(table: pd.DataFrame, frame: pd.DataFrame, group: str | None = None) -> list[dict]:
    rows = [{k: _clean(v) for k, v in row.items()} for row in table.to_dict("records")]
    for row in rows:
        # "technical_pred" vs "technical_mos" reads as "technical / technical MOS".
        row["label"] = f"{_plain(row['prediction'])} / {_plain(row['mos'])} MOS"
        # Whether PLCC after the fit can be read, with the raw PLCC to read instead.
        part = frame if group is None else frame[frame[group] == row[group]]
        params = [row.get(b) for b in ("b1", "b2", "b3", "b4")]
        check = agreement.fit_check(
            part[row["prediction"]],
            part[row["mos"]],
            params if all(p is not None for p in params) else None,
            row.get("srcc"),
            row.get("plcc"),
        )
        row["plcc_raw"] = _clean(check["plcc_raw"])
        row["degenerate"] = check["degenerate"]
    return rows


def agreement_report(
    study: Study,
    version: ModelVersion,
    analysis: Analysis | None = None,
    *,
    n_boot: int = 1000,
    group_boot: int = 200,
    seed: int = 0,
) -> dict:
    """Overall metrics per pair, per generator and per task, and scatter data.

    Cached until a prediction or the analysis changes: the bootstrap is the
    expensive part and the dashboard is read far more often than models run.
    """
    analysis = analysis or reference_analysis(study)
    latest = (
        Prediction.objects.filter(model_version=version, stimulus__study=study)
        .order_by("-created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    stamp = latest.timestamp() if latest else 0
    key = f"agreement:v3:{study.pk}:{version.pk}:{analysis.pk}:{stamp}:{n_boot}:{group_boot}:{seed}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    frame = agreement_frame(study, version, analysis)
    overall = agreement.agreement_table(frame, PAIRS, n_boot=n_boot, seed=seed)
    report = {
        "study": study.slug,
        "model_version": version.name,
        "analysis": analysis.pk,
        "analysis_method": analysis.method,
        "n": int(len(frame)),
        # Images with a naturalness prediction and an overall MOS (the main pair): the
        # others (no MOS, e.g. every rater of theirs rejected) are said once, not per row.
        "n_both": int(frame[["naturalness", "overall"]].notna().all(axis=1).sum())
        if "overall" in frame
        else 0,
        "pairs": _rows(overall, frame),
        "by_generator": _rows(
            agreement.agreement_table(frame, PAIRS, "generator", n_boot=group_boot, seed=seed),
            frame,
            "generator",
        ),
        "by_task": _rows(
            agreement.agreement_table(frame, PAIRS, "task", n_boot=group_boot, seed=seed),
            frame,
            "task",
        ),
        "points": [
            {**p, "stimulus_id": int(p["stimulus_id"])}
            for p in frame[["stimulus_id", "filename", "generator", "naturalness", "overall"]]
            .dropna()
            .to_dict("records")
        ],
    }
    cache.set(key, report, 3600)
    return report
