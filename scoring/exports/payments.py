"""Who gets a bonus: a rule the researcher sets on a finished MOS analysis, then the
platform file through annotation.payments (which records it, so nobody is paid twice).

The rule is P.808's crowdsourcing practice made explicit: rank the analysis's raters
by the Pearson correlation of their overall scores with the MOS (``RaterResult.corr``,
as the analysis's method computes it); the top ``top_percent`` of the raters with a
correlation (rounded up, at least one; ties broken by the earlier rater) get the bonus
if their correlation is at least ``min_corr`` and the analysis's screening kept them.
P.808's example is a correlation of at least 0.7 and the top 20%.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from annotation.models import PaymentExport, Rater, Study
from annotation.payments import PLATFORMS, BonusChoice, PaymentError, bonus_amount
from annotation.payments import payment_export_bonus as _record
from scoring.models import Analysis, RaterResult

CURRENCIES = ("GBP", "USD", "EUR")
#: P.808's example rule, the form's defaults.
DEFAULT_MIN_CORR = 0.7
DEFAULT_TOP_PERCENT = 20.0


@dataclass(frozen=True)
class BonusRule:
    analysis_id: int
    min_corr: float
    top_percent: float
    amount: Decimal
    currency: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "amount": f"{self.amount:.2f}"}


def _number(data: Mapping, name: str, label: str) -> float:
    raw = data.get(name)
    try:
        value = float(str(raw).strip())
    except (TypeError, ValueError):
        raise PaymentError(f"{label} is not a number", field=name) from None
    if not math.isfinite(value):
        raise PaymentError(f"{label} is not a number", field=name)
    return value


def bonus_rule_parse(study: Study, data: Mapping) -> BonusRule:
    """The rule from a form or JSON body, each bad value refused on its field."""
    try:
        analysis_id = int(str(data.get("analysis", "")).strip())
    except ValueError:
        raise PaymentError("choose a finished analysis", field="analysis") from None
    analysis = _analysis(study, analysis_id)
    min_corr = _number(data, "min_corr", "the minimum correlation")
    if not -1.0 <= min_corr <= 1.0:
        raise PaymentError("the minimum correlation is between -1 and 1", field="min_corr")
    top = _number(data, "top_percent", "the top share")
    if not 0.0 < top <= 100.0:
        raise PaymentError(
            "the top share is a percentage above 0, at most 100", field="top_percent"
        )
    amount = bonus_amount(data.get("amount", ""))
    platform = str(data.get("platform", ""))
    currency = str(data.get("currency") or "").strip().upper()
    if platform == "mturk":
        currency = "USD"  # MTurk pays in US dollars only
    if currency not in CURRENCIES:
        raise PaymentError(
            f"the currency is one of {', '.join(CURRENCIES)} (the study's on Prolific)",
            field="currency",
        )
    reason = str(data.get("reason") or "").strip()
    if not reason:
        raise PaymentError("say why the bonus is paid: the worker reads it", field="reason")
    return BonusRule(analysis.pk, min_corr, top, amount, currency, reason)


def _analysis(study: Study, analysis_id: int) -> Analysis:
    analysis = (
        study.analyses.filter(pk=analysis_id, status=Analysis.Status.DONE)
        .exclude(method="imported")
        .first()
    )
    if analysis is None:
        raise PaymentError("choose a finished MOS analysis of this study", field="analysis")
    return analysis


def bonus_ranking(study: Study, rule: BonusRule) -> list[dict[str, Any]]:
    """Every rater of the analysis with a correlation, best first: rank, correlation,
    whether the rule chooses them and why (or why not)."""
    analysis = _analysis(study, rule.analysis_id)
    results = list(
        RaterResult.objects.filter(analysis=analysis, corr__isnull=False)
        .select_related("rater")
        .order_by("rater_id")
    )
    results.sort(key=lambda r: -float(r.corr or 0.0))
    n_top = max(1, math.ceil(len(results) * rule.top_percent / 100.0)) if results else 0
    rows = []
    for rank, result in enumerate(results, start=1):
        corr = float(result.corr or 0.0)
        if rank > n_top:
            why = f"not in the top {rule.top_percent:g}% ({n_top} of {len(results)})"
        elif corr < rule.min_corr:
            why = f"correlation below {rule.min_corr:g}"
        elif result.rejected:
            why = "screened out by the analysis"
        elif result.rater.status == Rater.Status.EXCLUDED:
            why = "excluded from the MOS since"
        else:
            why = ""
        rows.append(
            {
                "rater": result.rater,
                "rank": rank,
                "corr": corr,
                "chosen": not why,
                "why": why or f"rank {rank} of {len(results)}, correlation {corr:.3f}",
            }
        )
    return rows


def bonus_export_create(*, study: Study, platform: str, rule: BonusRule, user) -> PaymentExport:
    """Record and return the bonus file of the platform's raters the rule chooses,
    leaving out anyone paid a bonus before: a second export of the same raters is
    empty."""
    if platform not in PLATFORMS:
        raise PaymentError(
            f"unknown platform {platform!r}; use {' or '.join(PLATFORMS)}", field="platform"
        )
    chosen = [
        BonusChoice(row["rater"], rule.amount, row["why"])
        for row in bonus_ranking(study, rule)
        if row["chosen"] and row["rater"].source == PLATFORMS[platform]
    ]
    return _record(
        study=study,
        platform=platform,
        choices=chosen,
        rule={**rule.as_json(), "rule": "corr_top_share"},
        reason=rule.reason,
        user=user,
    )
