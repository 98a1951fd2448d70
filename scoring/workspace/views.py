"""Researcher pages: the study page (progress, crowd links, latest analysis)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotation.models import Rater, Study
from annotation.permissions import can_view_study, visible_studies
from scoring.analyses.services import analysis_create
from scoring.exports.formats import FORMATS, csv_lines, export_stream
from scoring.exports.services import analysis_from_param, streaming_download
from scoring.model_scoring import agreement_report
from scoring.model_scoring.services import scoring_job_cancel, scoring_job_start
from scoring.models import Analysis, ModelVersion, Prediction, ScoringJob
from scoring.numerics import mos
from scoring.workspace import dashboard
from studyweb.errors import ServiceError
from studyweb.jobs import BrokerUnavailable


def _study_for(request: HttpRequest, slug: str) -> Study:
    study = get_object_or_404(Study, slug=slug)
    if not can_view_study(request.user, study):
        raise PermissionDenied("this study is not yours")
    return study


@login_required
def study_list(request: HttpRequest) -> HttpResponse:
    studies = visible_studies(request.user).select_related("owner").order_by("-created_at")
    return render(request, "workspace/study_list.html", {"studies": studies})


@login_required
def study_detail(request: HttpRequest, slug: str) -> HttpResponse:
    study = _study_for(request, slug)
    analysis = dashboard.latest_analysis(study)
    context = {
        "study": study,
        "progress": dashboard.study_progress(study),
        "links": dashboard.crowd_links(study, request.build_absolute_uri("/")),
        "raters": Rater.objects.filter(study=study)
        .exclude(status=Rater.Status.COMPLETED, flags={})
        .order_by("status", "id")[:200],
        "analysis": analysis,
        "figures": dashboard.analysis_figures(analysis) if analysis else None,
        "recent": study.analyses.order_by("-created_at")[:5],
        "methods": list(mos.REGISTRY.values()),
        "formats": FORMATS.values(),
    }
    return render(request, "workspace/study_detail.html", context)


@login_required
@require_POST
def analysis_start(request: HttpRequest, slug: str) -> HttpResponse:
    study = _study_for(request, slug)
    method = request.POST.get("method", "bt500")
    reject_on = request.POST.get("reject_on", "overall")
    try:
        analysis = analysis_create(
            study=study, method=method, reject_on=reject_on, user=request.user
        )
    except BrokerUnavailable as exc:
        messages.warning(request, str(exc))
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Analysis {analysis.pk} ({method}) is {analysis.status}.")
    return redirect("scoring:study-detail", slug=study.slug)


@login_required
def export_download(request: HttpRequest, slug: str, fmt: str) -> HttpResponse:
    """Stream an export (memory stays flat however large the study)."""
    study = _study_for(request, slug)
    try:
        analysis = analysis_from_param(study, request.GET.get("analysis"))
    except LookupError as exc:
        raise Http404(str(exc)) from None
    try:
        exporter, chunks = export_stream(study, fmt, analysis=analysis)
    except ServiceError as exc:
        messages.error(request, str(exc))
        return redirect("scoring:study-detail", slug=study.slug)
    return streaming_download(study, exporter, chunks, analysis)


# --- Model-vs-human agreement --------------------------------------------------------


@login_required
def agreement_dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    """Model versions x dimensions with intervals, scatter, per-generator table, jobs."""
    study = _study_for(request, slug)
    versions = list(ModelVersion.objects.order_by("name"))
    chosen = [v for v in versions if v.name in request.GET.getlist("v")][:2]
    if not chosen:
        scored = ModelVersion.objects.filter(predictions__stimulus__study=study).distinct()
        chosen = list(scored.order_by("name")[:1])
    panels, problem = [], None
    try:
        analysis = agreement_report.reference_analysis(study, _int_or_none(request.GET.get("a")))
    except agreement_report.AgreementUnavailable as exc:
        analysis, problem = None, str(exc)
    for version in chosen:
        panel = {"version": version}
        if analysis is not None:
            try:
                report = agreement_report.agreement_report(study, version, analysis)
                panel.update(report=report, scatter=agreement_report.scatter_svg_data(report))
            except agreement_report.AgreementUnavailable as exc:
                panel["problem"] = str(exc)
        panels.append(panel)
    context = {
        "study": study,
        "versions": versions,
        "chosen": [v.name for v in chosen],
        "panels": panels,
        "analysis": analysis,
        "analyses": study.analyses.filter(status=Analysis.Status.DONE)[:20],
        "problem": problem,
        "jobs": ScoringJob.objects.filter(study=study).select_related("model_version")[:20],
    }
    return render(request, "workspace/agreement.html", context)


def _int_or_none(value):
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        raise Http404("not a number") from None


@login_required
@require_POST
def scoring_job_create(request: HttpRequest, slug: str) -> HttpResponse:
    study = _study_for(request, slug)
    version = ModelVersion.objects.filter(name=request.POST.get("model_version", "")).first()
    if version is None:
        messages.error(request, "choose a registered model version")
    else:
        try:
            job, created = scoring_job_start(
                model_version=version,
                study=study,
                force=request.POST.get("force") == "1",
                user=request.user,
            )
        except BrokerUnavailable as exc:
            messages.warning(request, str(exc))
        except ServiceError as exc:
            messages.error(request, str(exc))
        else:
            verb = "started" if created else f"is already {job.get_status_display().lower()}"
            messages.success(request, f"Scoring job {job.pk} with {version.name} {verb}.")
    query = urlencode({"v": request.POST.get("model_version", "")})
    return redirect(f"{reverse('scoring:agreement', args=[study.slug])}?{query}")


@login_required
@require_POST
def scoring_job_stop(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    study = _study_for(request, slug)
    job = get_object_or_404(ScoringJob, pk=job_id, study=study)
    try:
        scoring_job_cancel(job=job)
        messages.success(request, f"Job {job.pk} cancelled.")
    except ServiceError as exc:
        messages.error(request, str(exc))
    return redirect("scoring:agreement", slug=study.slug)


@login_required
def jobs_json(request: HttpRequest, slug: str) -> JsonResponse:
    """Live progress for the dashboard's job list (polled by static/js/jobs.js)."""
    study = _study_for(request, slug)
    jobs = ScoringJob.objects.filter(study=study).select_related("model_version")[:20]
    return JsonResponse(
        {
            "jobs": [
                {
                    "id": j.pk,
                    "model_version": j.model_version.name,
                    "status": j.status,
                    "done": j.done,
                    "total": j.total,
                    "waiting_for_broker": j.waiting_for_broker,
                    "error": j.error[:300],
                }
                for j in jobs
            ]
        }
    )


@login_required
def predictions_csv(request: HttpRequest, slug: str, version: str) -> HttpResponse:
    study = _study_for(request, slug)
    model_version = get_object_or_404(ModelVersion, name=version)
    rows = (
        Prediction.objects.filter(model_version=model_version, stimulus__study=study)
        .order_by("stimulus_id")
        .values_list(
            "stimulus__original_name",
            "technical",
            "rationality",
            "naturalness",
            "artifact_map",
            "stimulus__generator",
            "stimulus__task",
        )
        .iterator(chunk_size=2000)
    )
    header = [
        "image",
        "technical",
        "rationality",
        "naturalness",
        "artifact_map",
        "generator",
        "task",
    ]
    response = StreamingHttpResponse(
        csv_lines(header, (list(r) for r in rows)), content_type="text/csv"
    )
    response["Content-Disposition"] = (
        f'attachment; filename="{study.slug}-{model_version.name}-predictions.csv"'
    )
    return response
