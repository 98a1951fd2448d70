"""Researcher pages: the study page (progress, crowd links, latest analysis), and the
study settings pages (create, edit, clone; open, pause, close)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from annotation import rater_review
from annotation.assignment import holding_sessions
from annotation.models import Study
from annotation.permissions import (
    can_edit_study,
    can_share_study,
    visible_studies,
)
from annotation.studies import (
    TRANSITIONS,
    StudyRuleError,
    study_create,
    study_delete,
    study_has_ratings,
    study_set_status,
    study_stimuli_copy,
    study_update,
)
from scoring.analyses.services import analysis_create
from scoring.exports.formats import FORMATS, csv_lines, export_stream
from scoring.exports.services import analysis_from_param, streaming_download
from scoring.model_scoring import agreement_report
from scoring.model_scoring.services import scoring_job_cancel, scoring_job_start
from scoring.models import Analysis, ModelVersion, Prediction, ScoringJob
from scoring.numerics import agreement, mos
from scoring.workspace import dashboard
from scoring.workspace.access import study_for, study_to_change, study_to_delete
from scoring.workspace.study_forms import StudyForm, clone_initial
from scoring.workspace.viewing import viewing_summary
from studyweb.boundary import has_control_characters
from studyweb.errors import ServiceError
from studyweb.jobs import BrokerUnavailable

#: The status buttons of the study page, in this order: (target, label per current status).
STATUS_BUTTONS: list[tuple[str, dict[str, str]]] = [
    (Study.Status.OPEN, {"draft": "Open", "paused": "Resume", "closed": "Reopen"}),
    (Study.Status.PAUSED, {}),
    (Study.Status.CLOSED, {}),
]
STATUS_VERBS: dict[str, str] = {
    Study.Status.OPEN: "Open",
    Study.Status.PAUSED: "Pause",
    Study.Status.CLOSED: "Close",
}
STATUS_DONE: dict[str, str] = {
    Study.Status.OPEN: "opened",
    Study.Status.PAUSED: "paused",
    Study.Status.CLOSED: "closed",
}


#: What pausing or closing does, asked before it is done (static/js/confirm.js).
STATUS_CONFIRM: dict[str, str] = {
    Study.Status.PAUSED: "Pause the study? It stops taking raters until you resume it.",
    Study.Status.CLOSED: "Close the study? It stops taking raters until you reopen it.",
}


def status_actions(study: Study) -> list[dict[str, str]]:
    """The status changes allowed from the study's current status, as buttons; pausing
    or closing says how many raters it stops in the middle of a session, and what
    they get (annotation.views: a close hands them the no-work code)."""
    allowed = TRANSITIONS[study.status]
    midway = 0
    if study.status in (Study.Status.OPEN, Study.Status.PAUSED):
        midway = holding_sessions(study, timezone.now()).count()
    return [
        {
            "status": target,
            "label": labels.get(study.status, STATUS_VERBS[target]),
            "confirm": (
                STATUS_CONFIRM[target] + _midway_note(study, target, midway)
                if target in STATUS_CONFIRM
                else ""
            ),
        }
        for target, labels in STATUS_BUTTONS
        if target in allowed
    ]


def _midway_note(study: Study, target: str, midway: int) -> str:
    if not midway:
        return ""
    raters = f"{midway} rater{'s are' if midway != 1 else ' is'} in the middle of a session"
    if target == Study.Status.PAUSED:
        return f" {raters}: they cannot go on until you resume it."
    if study.outcomes.filter(kind="no_work").exclude(code="").exists():
        return f" {raters}: they stop, and get the study's no-work code."
    return (
        f" {raters}: they stop, and are told to return to their platform (no no-work "
        "code is set, so they get no code)."
    )


@login_required
def study_list(request: HttpRequest) -> HttpResponse:
    studies = visible_studies(request.user).select_related("owner").order_by("-created_at")
    return render(request, "workspace/study_list.html", {"studies": studies})


@login_required
def study_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """Progress, links, raters, downloads (raw ratings at any time), analyses with
    their live status, and the results of the chosen analysis (``?analysis=``, the
    latest finished one by default) on the chosen dimension (``?dimension=``)."""
    study = study_for(request, slug)
    analysis = dashboard.chosen_analysis(study, _int_or_none(request.GET.get("analysis")))
    results = (
        dashboard.analysis_results(
            analysis,
            request.GET.get("dimension"),
            sort=request.GET.get("sort"),
            show_all=request.GET.get("all") == "1",
        )
        if analysis
        else None
    )
    formats = list(FORMATS.values())
    context = {
        "study": study,
        "here": "overview",
        "progress": dashboard.study_progress(study),
        "protocol": dashboard.protocol_summary(study),
        "links": dashboard.crowd_links(study, request.build_absolute_uri("/")),
        # Excluded, flagged or with failed gold questions, each with its reasons in words.
        "raters": rater_review.attention_raters(study),
        "viewing": viewing_summary(study),
        "analysis": analysis,
        "results": results,
        "recent": dashboard.recent_analyses(study),
        "finished": study.analyses.filter(status=Analysis.Status.DONE).order_by("-finished_at")[
            :20
        ],
        "methods": list(mos.REGISTRY.values()),
        "ci_methods": dashboard.CI_METHODS,
        "raw_formats": [f for f in formats if not f.needs_analysis],
        "dataset_formats": [f for f in formats if f.needs_analysis],
        "can_edit": can_edit_study(request.user, study),
        "status_actions": status_actions(study),
    }
    return render(request, "workspace/study_detail.html", context)


# --- Study settings: create, edit, clone; open, pause, close -------------------------


def _add_service_error(form: StudyForm, exc: StudyRuleError) -> None:
    field = exc.field if exc.field in form.fields else None
    form.add_error(field, exc.message)


def _create_from(request: HttpRequest, form: StudyForm) -> Study | None:
    """study_create with the form's settings; None (errors on the form) on refusal."""
    try:
        with transaction.atomic():
            return study_create(owner=request.user, **form.settings())
    except StudyRuleError as exc:
        _add_service_error(form, exc)
    except ValidationError as exc:
        form.add_error(None, exc)
    return None


@login_required
@require_http_methods(["GET", "POST"])
def study_create_page(request: HttpRequest) -> HttpResponse:
    form = StudyForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        study = _create_from(request, form)
        if study is not None:
            messages.success(request, f"Study “{study.title}” created as a draft.")
            return redirect("scoring:study-detail", slug=study.slug)
    return render(request, "workspace/study_form.html", {"form": form, "mode": "create"})


@login_required
@require_http_methods(["GET", "POST"])
def study_edit(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_to_change(request, slug)
    # The form validates a copy: the study itself changes only through study_update.
    form = StudyForm(
        request.POST if request.method == "POST" else None,
        instance=Study.objects.get(pk=study.pk),
    )
    if form.is_bound:
        for name, reason in form.locks.items():
            sent = request.POST.get(name)
            if sent is not None and sent != str(form[name].initial):
                messages.warning(request, f"{form[name].label} was not changed: {reason}.")
    if form.is_bound and form.is_valid():
        changes = form.changes()
        if not changes:
            messages.info(request, "Nothing to change.")
            return redirect("scoring:study-detail", slug=study.slug)
        try:
            study_update(study=study, changes=changes)
        except StudyRuleError as exc:
            _add_service_error(form, exc)
        else:
            names = ", ".join(
                str(form[name].label).lower() if name in form.fields else "texts in other languages"
                for name in changes
            )
            messages.success(request, f"Saved: {names}.")
            ranged = "scale" in changes and study.stimuli.filter(expected_low__isnull=False).count()
            if ranged:
                scale = study.scale_def
                messages.info(
                    request,
                    f"The expected ranges of {ranged} gold or training image(s) were "
                    f"rescaled to the new scale ({scale.minimum:g}-{scale.maximum:g}).",
                )
            return redirect("scoring:study-detail", slug=study.slug)
    # The study header and its nav, with Settings as the current page.
    context = {
        "form": form,
        "mode": "edit",
        "study": study,
        "here": "settings",
        "can_edit": True,
        "can_delete": can_share_study(request.user, study),
        "has_ratings": study_has_ratings(study),
        "delete_mistyped": request.GET.get("delete") == "mistyped",
    }
    return render(request, "workspace/study_form.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def study_clone(request: HttpRequest, slug: str) -> HttpResponse:
    source = study_to_change(request, slug)
    copy_stimuli = request.method == "GET" or request.POST.get("copy_stimuli") == "1"
    if request.method == "POST":
        form = StudyForm(request.POST)
        if form.is_valid():
            with transaction.atomic():
                study = _create_from(request, form)
                copied = (
                    study_stimuli_copy(source=source, target=study)
                    if study is not None and copy_stimuli
                    else 0
                )
            if study is not None:
                then = (
                    f", with its {copied} stimuli (the same image files)."
                    if copied
                    else ": import its stimuli before opening it."
                )
                messages.success(
                    request, f"Study “{study.title}” created as a draft from “{source.title}”{then}"
                )
                return redirect("scoring:study-detail", slug=study.slug)
    else:
        form = StudyForm(initial=clone_initial(source))
    context = {
        "form": form,
        "mode": "clone",
        "source": source,
        "copy_stimuli": copy_stimuli,
        "source_stimuli": source.stimuli.count(),
    }
    return render(request, "workspace/study_form.html", context)


@login_required
@require_POST
def study_delete_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Delete a study nobody has rated (annotation.studies.study_delete, as the API's
    DELETE), once its slug is typed again: it cannot be undone, so the form needs no
    script to ask first."""
    study = study_to_delete(request, slug)
    back = reverse("scoring:study-edit", args=[study.slug])
    if request.POST.get("confirm_slug", "").strip() != study.slug:
        # Said in the delete card itself (the page opens on it), not at the page's top.
        return redirect(f"{back}?delete=mistyped#delete")
    title = study.title
    try:
        study_delete(study=study)
    except StudyRuleError:
        return redirect(f"{back}?delete=rated#delete")  # rated meanwhile
    messages.success(request, f"Study “{title}” ({slug}) deleted, with its images and files.")
    return redirect("scoring:study-list")


@login_required
@require_POST
def study_status(request: HttpRequest, slug: str) -> HttpResponse:
    study = study_to_change(request, slug)
    target = request.POST.get("status", "")
    before = study.status
    try:
        study_set_status(study=study, status=target)
    except StudyRuleError as exc:
        messages.error(request, f"The study was not changed: {exc.message}.")
    else:
        if before == target:  # a second click, or a page left open: say nothing happened
            messages.info(request, f"The study was already {study.get_status_display().lower()}.")
        else:
            messages.success(request, f"Study {STATUS_DONE.get(target, target)}.")
    return redirect("scoring:study-detail", slug=study.slug)


@login_required
@require_POST
def analysis_start(request: HttpRequest, slug: str) -> HttpResponse:
    # An analysis becomes the study's shown results and downloads: an owner's or an
    # editor's call, as the sharing page says (view: read the results).
    study = study_to_change(request, slug, ANALYSES_VIEW_ONLY)
    method = request.POST.get("method", "bt500")
    reject_on = request.POST.get("reject_on", "overall")
    options = {"ci": request.POST.get("ci", dashboard.DEFAULT_CI)}
    try:
        analysis = analysis_create(
            study=study, method=method, reject_on=reject_on, options=options, user=request.user
        )
    except BrokerUnavailable as exc:
        messages.warning(request, str(exc))
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        # Say the state it is in now: with eager tasks (make run) it has already run.
        analysis.refresh_from_db()
        name = f"Analysis {analysis.pk} ({method})"
        if analysis.status == Analysis.Status.DONE:
            messages.success(request, f"{name} is done: its results are below.")
            return redirect(
                f"{reverse('scoring:study-detail', args=[study.slug])}?analysis={analysis.pk}"
            )
        if analysis.status == Analysis.Status.FAILED:
            messages.error(request, f"{name} failed: {analysis.error[:300]}")
        else:
            state = analysis.get_status_display().lower()
            messages.success(request, f"{name} is {state}: its status below updates by itself.")
    return redirect("scoring:study-detail", slug=study.slug)


@login_required
def export_download(request: HttpRequest, slug: str, fmt: str) -> HttpResponse:
    """Stream an export (memory stays flat however large the study)."""
    study = study_for(request, slug)
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
    study = study_for(request, slug)
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
    for number, version in enumerate(chosen, start=1):
        panel = {"version": version, "number": number, "figures_id": f"spec-scatter-{number}"}
        if analysis is not None:
            try:
                report = agreement_report.agreement_report(study, version, analysis)
            except agreement_report.AgreementUnavailable as exc:
                panel["problem"] = str(exc)
            else:
                panel.update(
                    report=report,
                    pairs=dashboard.agreement_rows(report["pairs"]),
                    by_generator=dashboard.agreement_rows(report["by_generator"]),
                    by_task=dashboard.agreement_rows(report["by_task"]),
                    figures=dashboard.agreement_figures(report),
                )
                # Said once above the tables, not under every row.
                panel["no_mos"] = report["n"] - report.get("n_both", report["n"])
                panel["resample_notes"] = [
                    (r["label"], note) for r in panel["pairs"] for note in r["resample_notes"]
                ]
        panels.append(panel)
    context = {
        "study": study,
        "here": "agreement",
        "can_edit": can_edit_study(request.user, study),
        "metrics": dashboard.METRICS,
        "versions": versions,
        "chosen": [v.name for v in chosen],
        "panels": panels,
        "analysis": analysis,
        "analyses": study.analyses.filter(status=Analysis.Status.DONE)[:20],
        "problem": problem,
        "jobs": ScoringJob.objects.filter(study=study).select_related("model_version")[:20],
    }
    return render(request, "workspace/agreement.html", context)


@login_required
def agreement_csv(request: HttpRequest, slug: str, version: str) -> HttpResponse:
    """The agreement tables of one model version at full precision (the page rounds):
    overall, per generator and per task, with intervals and logistic parameters."""
    study = study_for(request, slug)
    model_version = get_object_or_404(ModelVersion, name=version)
    try:
        analysis = agreement_report.reference_analysis(study, _int_or_none(request.GET.get("a")))
        report = agreement_report.agreement_report(study, model_version, analysis)
    except agreement_report.AgreementUnavailable as exc:
        raise Http404(str(exc)) from None
    columns = [c for c in agreement.TABLE_COLUMNS if c not in ("prediction", "mos")]
    header = ["scope", "group", "prediction", "mos", *columns]
    rows = [
        [scope, row.get(key, ""), row["prediction"], row["mos"], *(row.get(c) for c in columns)]
        for scope, key, table in (
            ("overall", "", report["pairs"]),
            ("generator", "generator", report["by_generator"]),
            ("task", "task", report["by_task"]),
        )
        for row in table
    ]
    response = StreamingHttpResponse(csv_lines(header, iter(rows)), content_type="text/csv")
    response["Content-Disposition"] = (
        f'attachment; filename="{study.slug}-{model_version.name}-a{analysis.pk}-agreement.csv"'
    )
    return response


ANALYSES_VIEW_ONLY = (
    "this study is shared with you view-only: only its owner or an editor can run analyses"
)


def _int_or_none(value):
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        raise Http404("not a number") from None


@login_required
@require_POST
def scoring_job_create(request: HttpRequest, slug: str) -> HttpResponse:
    # Scoring spends the GPU workers' time: an owner's or an editor's call.
    study = study_to_change(request, slug)
    name = request.POST.get("model_version", "")
    # A name with NUL would reach PostgreSQL as a DataError: it names no version anyway.
    version = (
        None if has_control_characters(name) else ModelVersion.objects.filter(name=name).first()
    )
    if version is None:
        messages.error(request, "choose a registered model version")
        return redirect("scoring:agreement", slug=study.slug)
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
    study = study_to_change(request, slug)
    job = get_object_or_404(ScoringJob, pk=job_id, study=study)
    try:
        scoring_job_cancel(job=job)
        messages.success(request, f"Job {job.pk} cancelled.")
    except ServiceError as exc:
        messages.error(request, str(exc))
    return redirect("scoring:agreement", slug=study.slug)


@login_required
def jobs_json(request: HttpRequest, slug: str) -> JsonResponse:
    """Live state of the study's jobs: the scoring jobs of the agreement page and the
    analyses of the study page (both polled by static/js/jobs.js)."""
    study = study_for(request, slug)
    jobs = ScoringJob.objects.filter(study=study).select_related("model_version")[:20]
    analyses = study.analyses.order_by("-created_at")[: dashboard.RECENT_ANALYSES]
    return JsonResponse(
        {
            "analyses": [dashboard.analysis_state(a) for a in analyses],
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
            ],
        }
    )


@login_required
def predictions_csv(request: HttpRequest, slug: str, version: str) -> HttpResponse:
    study = study_for(request, slug)
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
