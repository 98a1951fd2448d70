"""Where an analysis is queued, computed (scoring.numerics) and stored."""

from __future__ import annotations

import logging
import math
from typing import Any

from django.db import transaction
from django.utils import timezone

from annotation.models import Study
from scoring.analyses.selectors import ratings_frame
from scoring.models import Analysis, RaterResult, StimulusResult
from scoring.numerics import mos, reliability
from studyweb import jobs
from studyweb.errors import ServiceError

logger = logging.getLogger("scoring")

ALLOWED_OPTIONS: dict[str, set[str] | set[bool]] = {
    "ci": {"normal", "t"},
    "include_excluded": {True, False},
}


class AnalysisError(ServiceError):
    """An analysis that cannot be made as asked (unknown method, bad option...)."""


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def analysis_create(
    *,
    study: Study,
    method: str,
    reject_on: str = "overall",
    options: dict | None = None,
    user=None,
    enqueue: bool = True,
) -> Analysis:
    """Record an analysis and send it to a worker (queue ``default``).

    Raises BrokerUnavailable (the analysis saved, waiting) when the broker is down.
    """
    if not isinstance(options, dict | None):
        raise AnalysisError("options must be an object", field="options")
    options = dict(options or {})
    if method not in mos.REGISTRY:
        raise AnalysisError(
            f"unknown method {method!r}; use one of {', '.join(mos.REGISTRY)}", field="method"
        )
    if reject_on not in ("overall", "per_dimension"):
        raise AnalysisError("reject_on must be 'overall' or 'per_dimension'", field="reject_on")
    for key, value in options.items():
        allowed = ALLOWED_OPTIONS.get(key)
        if allowed is None or not isinstance(value, str | bool) or value not in allowed:
            raise AnalysisError(f"unknown option {key}={value!r}", field="options")
    analysis = Analysis.objects.create(
        study=study,
        method=method,
        method_version=mos.REGISTRY[method].version,
        reject_on=reject_on,
        options=options,
        created_by=user,
        waiting_for_broker=enqueue,
    )
    if enqueue:
        jobs.job_send(analysis)
    return analysis


def analysis_run(*, analysis_id: int) -> Analysis:
    """Compute and store an analysis; a failure is recorded on it, never lost."""
    analysis = Analysis.objects.select_related("study").get(pk=analysis_id)
    if analysis.status in Analysis.FINISHED:
        return analysis  # a redelivered task, or cancelled: nothing to do
    Analysis.objects.filter(pk=analysis.pk).update(
        status=Analysis.Status.RUNNING,
        started_at=timezone.now(),
        error="",
        error_code="",
        error_field="",
    )
    try:
        _compute_and_store(analysis)
    except ServiceError as exc:
        # A refusal the researcher reads on the analysis (too few ratings, a bad
        # option): expected, so a warning without a traceback.
        logger.warning("analysis %s refused: %s", analysis.pk, exc)
        jobs.job_mark_failed(Analysis, analysis.pk, error=str(exc)[:2000], code=exc.code)
    except Exception as exc:
        logger.exception("analysis %s failed", analysis.pk)
        jobs.job_mark_failed(Analysis, analysis.pk, error=str(exc)[:2000], code="error")
    analysis.refresh_from_db()
    return analysis


def _compute_and_store(analysis: Analysis) -> None:
    options = dict(analysis.options)
    include_excluded = options.pop("include_excluded", False)
    frame = ratings_frame(analysis.study, include_excluded=include_excluded)
    if frame.empty:
        raise AnalysisError("the study has no ratings of test items yet", code="no_ratings")
    result = mos.compute_dimensions(frame, analysis.method, reject_on=analysis.reject_on, **options)
    overall = frame[frame["dimension"] == "overall"]
    rejected = set(result.verdicts.loc[result.verdicts["rejected"], "rater"])
    kept = overall[~overall["rater"].isin(rejected)]
    try:
        rel = reliability.reliability_summary(kept.drop(columns="dimension")).as_dict()
    except ValueError as exc:
        rel = {"error": str(exc)}

    stimulus_rows = [
        StimulusResult(
            analysis=analysis,
            stimulus_id=int(row.stimulus),
            dimension=row.dimension,
            mos=_finite(row.mos),
            std=_finite(row.std),
            ci_low=_finite(row.ci_low),
            ci_high=_finite(row.ci_high),
            n=int(row.n),
            note=str(row.note or "")[:200],
        )
        for row in result.stimuli.itertuples(index=False)
    ]
    per_dim: dict[int, dict[str, dict[str, Any]]] = {}
    for row in result.raters.itertuples(index=False):
        per_dim.setdefault(int(row.rater), {})[row.dimension] = {
            "n": int(row.n),
            "bias": _finite(row.bias),
            "inconsistency": _finite(row.inconsistency),
            "P": _finite(row.P),
            "Q": _finite(row.Q),
            "pq_rate": _finite(row.pq_rate),
            "pq_balance": _finite(row.pq_balance),
            "corr": _finite(row.corr),
            "rejected": bool(row.rejected),
            "note": str(row.note or ""),
        }
    rater_rows = []
    for row in result.verdicts.itertuples(index=False):
        rid = int(row.rater)
        dims = per_dim.get(rid, {})
        main = dims.get("overall") or next(iter(dims.values()), {})
        rater_rows.append(
            RaterResult(
                analysis=analysis,
                rater_id=rid,
                n=int(row.n),
                bias=main.get("bias"),
                inconsistency=main.get("inconsistency"),
                p=main.get("P"),
                q=main.get("Q"),
                corr=main.get("corr"),
                rejected=bool(row.rejected),
                decided_by=str(getattr(row, "decided_by", "") or "")[:200],
                reason=str(row.reason or ""),
                per_dimension=dims,
            )
        )
    with transaction.atomic():
        StimulusResult.objects.filter(analysis=analysis).delete()
        RaterResult.objects.filter(analysis=analysis).delete()
        StimulusResult.objects.bulk_create(stimulus_rows, batch_size=5000)
        RaterResult.objects.bulk_create(rater_rows, batch_size=2000)
        jobs.job_mark_done(
            Analysis,
            analysis.pk,
            total=1,
            done=1,
            n_ratings=int(frame[frame["dimension"] == frame["dimension"].iloc[0]].shape[0]),
            n_raters=int(frame["rater"].nunique()),
            n_stimuli=int(frame["stimulus"].nunique()),
            info=_jsonable(result.info),
            reliability=_jsonable(rel),
        )


def _jsonable(value):
    """NaN and numpy scalars out, so the JSON fields stay valid JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int | bool) or value is None:
        return value
    return str(value)
