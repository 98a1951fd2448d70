"""Researcher pages: the study page (progress, crowd links, latest analysis)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.models import Rater, Study
from annotation.permissions import can_view_study, visible_studies
from scoring import dashboard, mos
from scoring.exports import FORMATS, ExportError, export_stream
from scoring.models import Analysis
from scoring.services import AnalysisError, analysis_create


def _study_for(request: HttpRequest, slug: str) -> Study:
    study = get_object_or_404(Study, slug=slug)
    if not can_view_study(request.user, study):
        raise PermissionDenied("this study is not yours")
    return study


@login_required
def study_list(request: HttpRequest) -> HttpResponse:
    studies = visible_studies(request.user).select_related("owner").order_by("-created_at")
    return render(request, "scoring/study_list.html", {"studies": studies})


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
        "methods": list(mos.METHODS),
        "formats": FORMATS.values(),
    }
    return render(request, "scoring/study_detail.html", context)


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
    except AnalysisError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Analysis {analysis.pk} ({method}) started.")
    return redirect("scoring:study-detail", slug=study.slug)


@login_required
def export_download(request: HttpRequest, slug: str, fmt: str) -> HttpResponse:
    """Stream an export (memory stays flat however large the study)."""
    study = _study_for(request, slug)
    analysis = None
    if request.GET.get("analysis"):
        try:
            analysis = Analysis.objects.get(pk=int(request.GET["analysis"]), study=study)
        except (ValueError, Analysis.DoesNotExist):
            raise Http404("no such analysis of this study") from None
    try:
        exporter, chunks = export_stream(study, fmt, analysis=analysis)
    except ExportError as exc:
        messages.error(request, str(exc))
        return redirect("scoring:study-detail", slug=study.slug)
    response = StreamingHttpResponse(chunks, content_type=exporter.content_type)
    suffix = f"-analysis{analysis.pk}" if analysis else ""
    filename = f"{study.slug}-{exporter.name}{suffix}.{exporter.extension}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
