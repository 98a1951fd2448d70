"""The study's stimuli pages: the gallery (filters, pages, role changes, removal), the
upload (a zip or many images plus a metadata CSV, imported by a background job) and
the import's progress and per-file report. The rules are annotation.stimuli's."""

from __future__ import annotations

from typing import cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.models import ImportJob, Stimulus, Study
from annotation.permissions import can_edit_study, can_view_study
from annotation.stimuli import (
    StimulusError,
    import_job_create,
    import_job_public,
    stimulus_remove,
    stimulus_set_role,
)
from studyweb.jobs import BrokerUnavailable

PAGE_SIZE = 48
THUMB = 160  # the thumbnail's box, CSS px: images are shown scaled into it
NO_GENERATOR = "(none)"


def _study_for(request: HttpRequest, slug: str) -> Study:
    study = get_object_or_404(Study, slug=slug)
    if not can_view_study(request.user, study):
        raise PermissionDenied("this study is not yours")
    return study


def _study_to_change(request: HttpRequest, slug: str) -> Study:
    study = _study_for(request, slug)
    if not can_edit_study(request.user, study):
        raise PermissionDenied(
            "this study is shared with you view-only: only its owner or an editor can "
            "change its stimuli"
        )
    return study


# --- Forms --------------------------------------------------------------------------


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Every file of a ``multiple`` file input (Django's recipe)."""

    widget = MultipleFileInput

    def clean(self, data, initial=None):
        single = super().clean  # bound here: a comprehension has no zero-argument super()
        if not data:
            return [single(None, initial)] if self.required else []
        items = data if isinstance(data, list | tuple) else [data]
        return [single(item, initial) for item in items]


class UploadForm(forms.Form):
    files = MultipleFileField(
        label="Images or a zip archive",
        error_messages={"required": "Choose a zip archive or one or more image files."},
        help_text="PNG, JPEG or WebP images (select many at once), or one .zip of them.",
        widget=MultipleFileInput(
            attrs={"accept": ".zip,.png,.jpg,.jpeg,.webp,application/zip,image/*"}
        ),
    )
    metadata = forms.FileField(
        label="Metadata CSV (optional)",
        required=False,
        help_text="Keyed by filename; may give generator, task, prompt, role, expected_low, "
        "expected_high and any other column.",
        widget=forms.FileInput(attrs={"accept": ".csv,text/csv"}),
    )
    default_role = forms.ChoiceField(
        label="Role",
        choices=Stimulus.Role.choices,
        initial=Stimulus.Role.TEST,
        help_text="For every file the CSV gives no role.",
    )


RATED_CHOICES = [
    ("", "Rated or not"),
    ("rated", "Rated"),
    ("unrated", "Not rated yet"),
    ("complete", "K ratings reached"),
]


class FilterForm(forms.Form):
    q = forms.CharField(label="Name", required=False, max_length=200)
    role = forms.ChoiceField(
        label="Role", required=False, choices=[("", "Any role"), *Stimulus.Role.choices]
    )
    generator = forms.ChoiceField(label="Generator", required=False)
    rated = forms.ChoiceField(label="Ratings", required=False, choices=RATED_CHOICES)

    def __init__(self, *args, generators: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", "Any generator")] + [(g, g) for g in generators if g]
        if "" in generators:
            choices.append((NO_GENERATOR, "No generator given"))
        self.fields["generator"].choices = choices

    def filtered(self, qs: QuerySet[Stimulus], k: int) -> QuerySet[Stimulus]:
        """The stimuli the valid filters keep (an invalid one is shown on its field
        and not applied)."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        if q := data.get("q", "").strip():
            qs = qs.filter(original_name__icontains=q)
        if role := data.get("role"):
            qs = qs.filter(role=role)
        generator = data.get("generator")
        if generator == NO_GENERATOR:
            qs = qs.filter(generator="")
        elif generator:
            qs = qs.filter(generator=generator)
        rated = data.get("rated")
        if rated == "rated":
            qs = qs.filter(tally__ratings__gt=0)
        elif rated == "unrated":
            qs = qs.filter(Q(tally__isnull=True) | Q(tally__ratings=0))
        elif rated == "complete":
            qs = qs.filter(tally__ratings__gte=k)
        return qs


# --- The gallery --------------------------------------------------------------------


def _thumb_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, THUMB / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _metadata_items(stimulus: Stimulus) -> list[tuple[str, str]]:
    items = []
    if stimulus.task:
        items.append(("task", stimulus.task))
    if stimulus.expected_low is not None:
        items.append(("expected", f"{stimulus.expected_low:g}–{stimulus.expected_high:g}"))
    if stimulus.prompt:
        items.append(("prompt", stimulus.prompt))
    for key, value in list((stimulus.metadata or {}).items())[:8]:
        text = value if isinstance(value, str) else repr(value)
        items.append((str(key), text if len(text) <= 120 else text[:119] + "…"))
    return items


def _render_gallery(
    request: HttpRequest,
    study: Study,
    *,
    upload_form: UploadForm | None = None,
    row_errors: dict[int, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    can_edit = can_edit_study(request.user, study)
    all_stimuli = Stimulus.objects.filter(study=study)
    generators = list(
        all_stimuli.order_by("generator").values_list("generator", flat=True).distinct()
    )
    filters = FilterForm(request.GET or None, generators=generators)
    k = study.ratings_per_stimulus
    qs = filters.filtered(
        all_stimuli.annotate(n_ratings=Coalesce("tally__ratings", 0)).order_by("id"), k
    )
    # Paginator counts once and slices: a study of 10,000 stimuli loads one page.
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    row_errors = row_errors or {}
    items = []
    for stimulus in page.object_list:
        width, height = _thumb_size(stimulus.width, stimulus.height)
        items.append(
            {
                "s": stimulus,
                "thumb_w": width,
                "thumb_h": height,
                "meta": _metadata_items(stimulus),
                "error": row_errors.get(stimulus.pk, ""),
            }
        )
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "study": study,
        "can_edit": can_edit,
        "here": "stimuli",
        "filters": filters,
        "page": page,
        "items": items,
        "k": k,
        "query": query.urlencode(),
        "total": all_stimuli.count(),
        "roles": Stimulus.Role.choices,
        "upload_form": (upload_form or UploadForm()) if can_edit else None,
        "max_files": _max_files(),
        "imports": ImportJob.objects.filter(study=study).order_by("-created_at")[:5],
    }
    return render(request, "workspace/stimuli.html", context, status=status)


def _max_files() -> int:
    # Django refuses a request with more files than this before any view runs (with a
    # bare 400): the page says so on the field first. The metadata CSV is one of them.
    limit = getattr(settings, "DATA_UPLOAD_MAX_NUMBER_FILES", 100)
    return (limit - 1) if limit else 0


@login_required
@require_GET
def stimuli_gallery(request: HttpRequest, slug: str) -> HttpResponse:
    return _render_gallery(request, _study_for(request, slug))


def _gallery_url(study: Study, query: str = "") -> str:
    url = reverse("scoring:stimuli", args=[study.slug])
    return f"{url}?{query}" if query else url


# --- Upload and import progress -----------------------------------------------------


def _wants_json(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "XMLHttpRequest" or (
        "application/json" in request.headers.get("Accept", "")
    )


def _job_urls(study: Study, job: ImportJob) -> dict[str, str]:
    return {
        "status_url": reverse("scoring:import-status", args=[study.slug, job.pk]),
        "job_url": reverse("scoring:import-job", args=[study.slug, job.pk]),
    }


@login_required
@require_http_methods(["GET", "POST"])
def stimuli_upload(request: HttpRequest, slug: str) -> HttpResponse:
    """POST: a zip or images plus an optional CSV become an import job. With JS
    (upload.js) the answer is JSON (202 with the job, or 400 with the fields); without,
    the job's page (or the gallery with the errors on the form)."""
    study = _study_to_change(request, slug)
    if request.method == "GET":
        return redirect(_gallery_url(study) + "#upload")
    form = UploadForm(request.POST, request.FILES)
    job: ImportJob | None = None
    warning = ""
    if form.is_valid():
        try:
            job = import_job_create(
                study=study,
                user=request.user,
                files=form.cleaned_data["files"],
                metadata=form.cleaned_data["metadata"],
                default_role=form.cleaned_data["default_role"],
            )
        except BrokerUnavailable as exc:
            job, warning = cast(ImportJob, exc.job), str(exc)  # sent once the broker is back
        except StimulusError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
    if job is None:
        if _wants_json(request):
            fields = {name: " ".join(errors) for name, errors in form.errors.items()}
            detail = next(iter(fields.values()), "the upload was refused")
            return JsonResponse(
                {"error": "invalid", "detail": detail, "fields": fields, "job": None}, status=400
            )
        return _render_gallery(request, study, upload_form=form, status=400)
    if _wants_json(request):
        job.refresh_from_db()
        body = {"job": import_job_public(job, with_report=False), "warning": warning}
        return JsonResponse({**body, **_job_urls(study, job)}, status=202)
    if warning:
        messages.warning(request, warning)
    return redirect("scoring:import-job", slug=study.slug, job_id=job.pk)


@login_required
@require_GET
def import_status(request: HttpRequest, slug: str, job_id: int) -> JsonResponse:
    """The import's progress for upload.js's bar; the report once it has finished."""
    study = _study_for(request, slug)
    job = get_object_or_404(ImportJob, pk=job_id, study=study)
    return JsonResponse({"job": import_job_public(job), **_job_urls(study, job)})


@login_required
@require_GET
def import_job_page(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    """An import's progress and per-file report (the page the upload leads to without JS)."""
    study = _study_for(request, slug)
    job = get_object_or_404(ImportJob, pk=job_id, study=study)
    context = {
        "study": study,
        "can_edit": can_edit_study(request.user, study),
        "here": "stimuli",
        "job": job,
        "finished": job.status in ImportJob.FINISHED,
        **_job_urls(study, job),
    }
    return render(request, "workspace/stimuli_import.html", context)


# --- Role changes and removal -------------------------------------------------------
# Their forms post to the gallery's query string, so an answer keeps the filters and
# a refusal shows the gallery as it was, with the message on that stimulus.


@login_required
@require_POST
def stimulus_role(request: HttpRequest, slug: str, stimulus_id: int) -> HttpResponse:
    study = _study_to_change(request, slug)
    stimulus = get_object_or_404(Stimulus, pk=stimulus_id, study=study)
    role = request.POST.get("role", "")
    try:
        stimulus_set_role(stimulus=stimulus, role=role)
    except StimulusError as exc:
        return _render_gallery(
            request, study, row_errors={stimulus.pk: exc.message}, status=exc.status
        )
    messages.success(request, f"{stimulus.original_name} is now a {role} item.")
    return redirect(_gallery_url(study, request.GET.urlencode()))


@login_required
@require_POST
def stimulus_remove_page(request: HttpRequest, slug: str, stimulus_id: int) -> HttpResponse:
    study = _study_to_change(request, slug)
    stimulus = get_object_or_404(Stimulus, pk=stimulus_id, study=study)
    try:
        stimulus_remove(stimulus=stimulus)
    except StimulusError as exc:
        return _render_gallery(
            request, study, row_errors={stimulus.pk: exc.message}, status=exc.status
        )
    messages.success(request, f"{stimulus.original_name} removed.")
    return redirect(_gallery_url(study, request.GET.urlencode()))
