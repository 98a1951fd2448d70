"""The study's raters pages: the list (external ids, status, pay decision, flags in
words) with the crowd platforms' payment files, and one rater's page (timeline,
decisions, re-running the analysis). Viewers read; owners and editors act
(annotation.rater_decisions, annotation.payments, scoring.exports.payments)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotation import rater_review
from annotation.models import PLATFORM_CHOICES, PaymentExport, Rater, RaterDecision, Study
from annotation.payments import (
    PLATFORMS,
    PaymentError,
    payment_export_verdicts,
    payment_file_response,
)
from annotation.payments import assignments as payment_assignments
from annotation.payments import pending_counts as payment_pending_counts
from annotation.permissions import can_edit_study
from annotation.rater_decisions import (
    DecisionError,
    rater_exclude,
    rater_in_study,
    rater_include,
    rater_set_pay,
    raters_approve_completed,
)
from scoring.exports.payments import (
    CURRENCIES,
    DEFAULT_MIN_CORR,
    DEFAULT_TOP_PERCENT,
    bonus_export_create,
    bonus_rule_parse,
)
from scoring.models import Analysis, RaterResult
from scoring.workspace import dashboard
from scoring.workspace.access import study_for, study_to_change

ACTIONS = {
    "exclude": "Excluded from the MOS",
    "include": "Re-included in the MOS",
    "approve": "Approved for payment",
    "reject": "Rejected for payment",
}
PLATFORM_LABELS = {key: dict(PLATFORM_CHOICES)[key] for key in PLATFORMS}
#: Rows of the raters table on one page.
RATERS_SHOWN = 500


def _rater_or_404(study: Study, rater_id: int) -> Rater:
    try:
        return rater_in_study(study, rater_id)
    except DecisionError:
        raise Http404("no such rater in this study") from None


# --- the list and the payment files ----------------------------------------------------


def _list_context(request: HttpRequest, study: Study) -> dict[str, Any]:
    status = request.GET.get("status", "")
    pay = request.GET.get("pay", "")
    table = list(rater_review.raters_table(study, status, pay)[:RATERS_SHOWN])
    stats = rater_review.overall_stats(r.pk for r in table)
    analyses = list(
        study.analyses.filter(status=Analysis.Status.DONE)
        .exclude(method="imported")
        .order_by("-finished_at")[:20]
    )
    verdicts = _verdicts(analyses[0] if analyses else None, [r.pk for r in table])
    rows = [
        {
            "rater": r,
            "flags": rater_review.flags_in_words(r, stats.get(r.pk)),
            "overall": stats.get(r.pk),
            "verdict": verdicts.get(r.pk),
        }
        for r in table
    ]
    return {
        "study": study,
        "here": "raters",
        "can_edit": can_edit_study(request.user, study),
        "rows": rows,
        "shown_limit": RATERS_SHOWN,
        "status": status,
        "pay": pay,
        "statuses": Rater.Status.choices,
        "pending": [
            {"key": key, "label": PLATFORM_LABELS[key], **counts}
            for key, counts in payment_pending_counts(study).items()
        ],
        "platforms": list(PLATFORM_LABELS.items()),
        "exports": _exports(study),
        "analyses": analyses,
        "latest": analyses[0] if analyses else None,
        "currencies": CURRENCIES,
        "bonus": {
            "min_corr": DEFAULT_MIN_CORR,
            "top_percent": f"{DEFAULT_TOP_PERCENT:g}",
            "amount": "",
            "currency": "GBP",
            "reason": "Bonus for careful ratings (your ratings agreed closely with the mean)",
            "platform": "prolific",
            "analysis": analyses[0].pk if analyses else "",
        },
        "errors": {},
    }


def _verdicts(analysis: Analysis | None, rater_ids: list[int]) -> dict[int, RaterResult]:
    """Each rater's verdict in the analysis (correlation with the MOS, kept or not)."""
    if analysis is None:
        return {}
    return {
        r.rater_id: r for r in RaterResult.objects.filter(analysis=analysis, rater_id__in=rater_ids)
    }


def _exports(study: Study) -> list[dict[str, Any]]:
    rows = []
    for export in study.payment_exports.prefetch_related("lines").order_by("-created_at", "-id"):
        lines = list(export.lines.all())
        rows.append(
            {
                "export": export,
                "n": len(lines),
                "total": sum((line.amount or Decimal(0) for line in lines), Decimal(0))
                if export.kind == PaymentExport.Kind.BONUS
                else None,
            }
        )
    return rows


@login_required
@require_GET
def rater_list(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_for(request, slug)
    return render(request, "workspace/raters.html", _list_context(request, study))


@login_required
@require_POST
def raters_approve_all(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_to_change(request, slug)
    try:
        n = raters_approve_completed(study=study, user=request.user)
    except DecisionError as exc:
        messages.error(request, f"Nothing changed: {exc.message}.")
    else:
        messages.success(request, f"Approved for payment: {n} rater(s) who completed the study.")
    return redirect(reverse("scoring:raters", args=[study.slug]) + "#payments")


@login_required
@require_POST
def payment_export_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Make a payment file (approvals, rejections or bonuses by a rule); a refused one
    is shown on the page with what was typed, and records nothing."""
    study = study_to_change(request, slug)
    kind = request.POST.get("kind", "")
    platform = request.POST.get("platform", "")
    try:
        if kind == PaymentExport.Kind.BONUS:
            rule = bonus_rule_parse(study, request.POST)
            export = bonus_export_create(
                study=study, platform=platform, rule=rule, user=request.user
            )
        else:
            export = payment_export_verdicts(
                study=study, platform=platform, kind=kind, user=request.user
            )
    except PaymentError as exc:
        context = _list_context(request, study)
        if kind == PaymentExport.Kind.BONUS:
            context["bonus"] = {k: request.POST.get(k, "") for k in context["bonus"]}
        context["errors"] = {"kind": kind, "field": exc.field or "", "message": exc.message}
        return render(request, "workspace/raters.html", context, status=exc.status)
    n = export.lines.count()
    name = f"{export.get_platform_display()} {export.get_kind_display().lower()} file #{export.pk}"
    if n:
        messages.success(request, f"{name}: {n} line(s), ready to download below.")
    else:
        messages.info(request, f"{name} is empty: nobody new to put in it.")
    if export.left_out:
        messages.warning(
            request,
            f"{len(export.left_out)} rater(s) left out of {name}: "
            + "; ".join(f"{x['pseudonym']}: {x['missing']}" for x in export.left_out[:10]),
        )
    return redirect(reverse("scoring:raters", args=[study.slug]) + f"#export-{export.pk}")


@login_required
@require_GET
def payment_export_download(request: HttpRequest, slug: str, export_id: int) -> HttpResponse:
    study = study_for(request, slug)
    export = study.payment_exports.filter(pk=export_id).first()
    if export is None:
        raise Http404("no such payment file")
    return payment_file_response(export)


# --- one rater -------------------------------------------------------------------------


def _rerun(study: Study, rater: Rater) -> dict[str, Any]:
    """The latest analysis's settings, for a button that runs it again, and whether a
    decision about the rater's MOS use came after it."""
    latest = study.analyses.exclude(method="imported").order_by("-created_at").first()
    last_use = (
        RaterDecision.objects.filter(rater=rater, kind__in=["exclude", "include"])
        .order_by("-decided_at")
        .first()
    )
    stale = bool(last_use and (latest is None or latest.created_at < last_use.decided_at))
    return {
        "analysis": latest,
        "method": latest.method if latest else "bt500",
        "reject_on": latest.reject_on if latest else "overall",
        "ci": (latest.options or {}).get("ci", dashboard.DEFAULT_CI)
        if latest
        else dashboard.DEFAULT_CI,
        "stale": stale,
    }


def _latest_verdict(study: Study, rater: Rater) -> RaterResult | None:
    latest = (
        study.analyses.filter(status=Analysis.Status.DONE)
        .exclude(method="imported")
        .order_by("-finished_at")
        .first()
    )
    return _verdicts(latest, [rater.pk]).get(rater.pk)


def _detail_context(request: HttpRequest, study: Study, rater: Rater) -> dict[str, Any]:
    now = rater_review.overall_stats([rater.pk]).get(rater.pk)
    return {
        "study": study,
        "here": "raters",
        "can_edit": can_edit_study(request.user, study),
        "rater": rater,
        "overall": now,
        "flags": rater_review.flags_in_words(rater, now),
        "reasons": rater_review.attention_reasons(rater, now),
        "timeline": rater_review.timeline(rater),
        "decisions": rater.decisions.order_by("-decided_at", "-id"),
        "assignments": payment_assignments(rater) if rater.source == Rater.Source.MTURK else [],
        "rerun": _rerun(study, rater),
        "verdict": _latest_verdict(study, rater),
        "error": None,
        "action": "",
        "reason": "",
    }


@login_required
@require_GET
def rater_detail(request: HttpRequest, slug: str, rater_id: int) -> HttpResponse:
    study = study_for(request, slug)
    rater = _rater_or_404(study, rater_id)
    return render(request, "workspace/rater_detail.html", _detail_context(request, study, rater))


@login_required
@require_POST
def rater_decide(request: HttpRequest, slug: str, rater_id: int) -> HttpResponse:
    """Exclude / re-include (MOS use) or approve / reject (pay), with the reason."""
    study = study_to_change(request, slug)
    rater = _rater_or_404(study, rater_id)
    action = request.POST.get("action", "")
    reason = request.POST.get("reason", "")
    try:
        if action == "exclude":
            rater_exclude(rater=rater, reason=reason, user=request.user)
        elif action == "include":
            rater_include(rater=rater, reason=reason, user=request.user)
        elif action in ("approve", "reject"):
            rater_set_pay(rater=rater, decision=action, reason=reason, user=request.user)
        else:
            raise DecisionError(
                "choose exclude, include, approve or reject", field="action", status=400
            )
    except DecisionError as exc:
        context = _detail_context(request, study, rater)
        context.update(error=exc.message, action=action, reason=reason)
        return render(request, "workspace/rater_detail.html", context, status=exc.status)
    done = ACTIONS[action]
    if action in ("exclude", "include"):
        done += ": re-run the analysis for the MOS to follow"
    messages.success(request, f"{rater.pseudonym}: {done}.")
    return redirect("scoring:rater-detail", slug=study.slug, rater_id=rater.pk)
