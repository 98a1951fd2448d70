"""The study's stimuli pages: the gallery (filters, sorting, pages, the overall MOS of
the latest finished analysis, role changes and removal, one by one or for the selected
stimuli), the upload (a zip or many images plus a metadata CSV, imported by a
background job) and the import's progress and per-file report. The rules are
annotation.stimuli's."""

from __future__ import annotations

from typing import cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import (
    Case,
    CharField,
    F,
    FloatField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.models import ImportJob, Stimulus, Study
from annotation.permissions import can_edit_study
from annotation.stimuli import (
    CSV_ROW,
    StimulusError,
    import_job_create,
    import_job_public,
    stimulus_remove,
    stimulus_set_role,
)
from scoring.models import Analysis, StimulusResult
from scoring.workspace.access import study_for, study_to_change
from scoring.workspace.figures import readable
from studyweb.forms import PlainTextForm
from studyweb.jobs import BrokerUnavailable

PAGE_SIZE = 48
THUMB = 160  # the thumbnail's box, CSS px: images are shown scaled into it
NO_GENERATOR = "(none)"
#: The dimension whose MOS the cards show and sort by (every protocol preset has it).
MOS_DIMENSION = "overall"
#: Metadata fields shown per card (a CSV may have hundreds of columns).
META_FIELDS = 20
#: At most this many stimuli in one bulk change (a page holds PAGE_SIZE).
BULK_MAX = 500


def _study_to_change(request: HttpRequest, slug: str) -> Study:
    return study_to_change(
        request,
        slug,
        "this study is shared with you view-only: only its owner or an editor can "
        "change its stimuli",
    )


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


class UploadForm(PlainTextForm):
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


SORT_CHOICES = [
    ("", "Upload order"),
    ("name", "Name"),
    ("newest", "Newest first"),
    ("ratings", "Most ratings"),
    ("fewest", "Fewest ratings"),
    ("mos", "Highest MOS"),
    ("mos_low", "Lowest MOS"),
]
# Every order ends on the id, so pages never repeat or skip a stimulus; stimuli
# without a MOS (not analysed yet) come last either way.
SORT_ORDER = {
    "": (F("id").asc(),),
    "name": (F("original_name").asc(), F("id").asc()),
    "newest": (F("id").desc(),),
    "ratings": (F("n_ratings").desc(), F("id").asc()),
    "fewest": (F("n_ratings").asc(), F("id").asc()),
    "mos": (F("mos").desc(nulls_last=True), F("id").asc()),
    "mos_low": (F("mos").asc(nulls_last=True), F("id").asc()),
}


class FilterForm(forms.Form):
    q = forms.CharField(label="Name", required=False, max_length=200)
    role = forms.ChoiceField(
        label="Role", required=False, choices=[("", "Any role"), *Stimulus.Role.choices]
    )
    generator = forms.ChoiceField(label="Generator", required=False)
    rated = forms.ChoiceField(label="Ratings", required=False, choices=RATED_CHOICES)
    sort = forms.ChoiceField(label="Sort", required=False, choices=SORT_CHOICES)

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
        return qs.order_by(*SORT_ORDER[data.get("sort") or ""])


# --- The gallery --------------------------------------------------------------------


def _thumb_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, THUMB / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _number(value: int | float) -> str:
    # Whole numbers as they are (a scene id, a seed); others to 3 significant digits.
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    if 1e-3 <= abs(value) < 1000:
        return f"{value:.3g}"  # 0.5 stays "0.5", 33.333 becomes "33.3"
    return readable(value)


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _meta_value(value: object) -> str | list[tuple[str, str]]:
    """A metadata value for reading: a number rounded, a dict a key/value sub-list
    (one level; deeper values as compact text), a list its items."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "–"}[value]
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, dict):
        return [(str(k), _flat(v)) for k, v in list(value.items())[:META_FIELDS]]
    if isinstance(value, list | tuple):
        return _flat(value)
    return _short(str(value))


def _flat(value: object) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, int | float | str):
        shown = _meta_value(value)
        return shown if isinstance(shown, str) else ""
    if isinstance(value, dict):
        return _short(", ".join(f"{k}: {_flat(v)}" for k, v in value.items()))
    if isinstance(value, list | tuple):
        return _short(", ".join(_flat(v) for v in value))
    return _short(str(value))


def _metadata_items(stimulus: Stimulus) -> list[dict]:
    """The card's metadata: {key, text} each, or {key, sub} (key/value pairs) for a
    dict value such as per-dimension truths."""
    items: list[tuple[str, str | list[tuple[str, str]]]] = []
    if stimulus.task:
        items.append(("task", stimulus.task))
    if stimulus.expected_low is not None and stimulus.expected_high is not None:
        low, high = _number(stimulus.expected_low), _number(stimulus.expected_high)
        items.append(("expected", f"{low}–{high}"))
    if stimulus.prompt:
        items.append(("prompt", _short(stimulus.prompt)))
    extra = list((stimulus.metadata or {}).items())
    for key, value in extra[:META_FIELDS]:
        items.append((str(key), _meta_value(value)))
    if len(extra) > META_FIELDS:
        items.append(("…", f"{len(extra) - META_FIELDS} more fields (in the downloads)"))
    return [
        {"key": key, "sub": value} if isinstance(value, list) else {"key": key, "text": value}
        for key, value in items
    ]


def _latest_analysis(study: Study) -> Analysis | None:
    return study.analyses.filter(status=Analysis.Status.DONE).order_by("-finished_at").first()


def _with_mos(qs: QuerySet[Stimulus], analysis: Analysis | None) -> QuerySet[Stimulus]:
    """Each stimulus's overall MOS in ``analysis`` (None without one): one subquery on
    the (analysis, stimulus, dimension) unique index, so sorting 10,000 stimuli by MOS
    stays one query."""
    if analysis is None:
        return qs.annotate(mos=Value(None, output_field=FloatField()))
    results = StimulusResult.objects.filter(
        analysis=analysis, stimulus=OuterRef("pk"), dimension=MOS_DIMENSION
    ).values("mos")[:1]
    return qs.annotate(mos=Subquery(results))


def _recent_imports(study: Study):
    # The report may hold thousands of rows: only its first row's CSV name is read.
    return (
        ImportJob.objects.filter(study=study)
        .defer("report")
        .select_related("created_by")
        .annotate(
            csv_name=Case(
                When(report__0__status=CSV_ROW, then=KT("report__0__name")),
                default=Value(""),
                output_field=CharField(),
            )
        )
        .order_by("-created_at")[:5]
    )


def _shown_import(request: HttpRequest, study: Study) -> ImportJob | None:
    """The finished import named by ``?import=`` (upload.js reloads the gallery with
    it, so the new stimuli are counted and the report stays in view)."""
    try:
        job_id = int(request.GET.get("import", ""))
    except ValueError:
        return None
    return ImportJob.objects.filter(pk=job_id, study=study, status__in=ImportJob.FINISHED).first()


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
    analysis = _latest_analysis(study)
    qs = filters.filtered(
        _with_mos(all_stimuli.annotate(n_ratings=Coalesce("tally__ratings", 0)), analysis), k
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
                "mos": None if stimulus.mos is None else readable(stimulus.mos),
                "meta": _metadata_items(stimulus),
                "error": row_errors.get(stimulus.pk, ""),
            }
        )
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("import", None)
    # The forms on the page post back to this page of it, so a refusal is shown on
    # the page that holds its stimulus, and a change returns the researcher there.
    form_query = query.copy()
    if page.number > 1:
        form_query["page"] = str(page.number)
    context = {
        "study": study,
        "can_edit": can_edit,
        "here": "stimuli",
        "filters": filters,
        "page": page,
        "items": items,
        "k": k,
        "analysis": analysis,
        "query": query.urlencode(),
        "form_query": form_query.urlencode(),
        "total": all_stimuli.count(),
        "roles": Stimulus.Role.choices,
        "upload_form": (upload_form or UploadForm()) if can_edit else None,
        "max_files": _max_files(),
        "imports": _recent_imports(study),
        "shown_import": _shown_import(request, study),
        "bulk_max": BULK_MAX,
    }
    return render(request, "workspace/stimuli.html", context, status=status)


def _max_files() -> int:
    # Django refuses a request with more files than this before any view runs (with a
    # bare 400): the page says so on the field first. The metadata CSV is one of them.
    limit = getattr(settings, "DATA_UPLOAD_MAX_NUMBER_FILES", 100)
    return (limit - 1) if limit else 0


@login_required
@require_http_methods(["GET", "POST"])
def stimuli_gallery(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the gallery. POST: a bulk change of the selected stimuli (see _bulk)."""
    if request.method == "POST":
        return _bulk(request, _study_to_change(request, slug))
    return _render_gallery(request, study_for(request, slug))


def _bulk(request: HttpRequest, study: Study) -> HttpResponse:
    """Set the role of, or remove, the stimuli ticked on the page. Each one goes
    through stimulus_set_role / stimulus_remove on its own (its own transaction), so
    one refusal (a rated stimulus, a gold item without a range) leaves the others
    done; the answer names every refused stimulus with the reason, so nothing is
    half-done without saying so."""
    back = redirect(_gallery_url(study, request.GET.urlencode()))
    action = request.POST.get("action", "")
    role = request.POST.get("role", "")
    ids = []
    for raw in request.POST.getlist("ids"):
        try:
            ids.append(int(raw))
        except ValueError:
            continue
    if action not in ("role", "remove"):
        messages.error(request, "Choose what to do with the selected stimuli.")
        return back
    if not ids:
        messages.error(request, "Nothing was changed: no stimulus was selected.")
        return back
    if len(ids) > BULK_MAX:
        messages.error(request, f"Nothing was changed: select at most {BULK_MAX} stimuli at once.")
        return back
    if action == "role" and role not in dict(Stimulus.Role.choices):
        messages.error(request, "Nothing was changed: choose the new role.")
        return back
    # An id past 8 bytes is no stimulus (and SQLite's driver cannot even send it).
    real = [pk for pk in ids if 0 < pk < 2**63]
    found = {s.pk: s for s in Stimulus.objects.filter(study=study, pk__in=real)}
    done: list[str] = []
    refused: list[tuple[str, str]] = []
    for pk in dict.fromkeys(ids):  # in the page's order, each once
        stimulus = found.get(pk)
        if stimulus is None:
            refused.append((f"#{pk}", "not in this study (removed meanwhile?)"))
            continue
        try:
            if action == "role":
                stimulus_set_role(stimulus=stimulus, role=role)
            else:
                stimulus_remove(stimulus=stimulus)
        except StimulusError as exc:
            refused.append((stimulus.original_name, exc.message))
        else:
            done.append(stimulus.original_name)
    asked = len(done) + len(refused)
    verb = f"set to {role}" if action == "role" else "removed"
    if done:
        messages.success(request, f"{len(done)} of {asked} selected stimuli {verb}.")
    if refused:
        messages.error(
            request,
            f"{len(refused)} of {asked} selected stimuli not {verb}; each is named below.",
        )
        for name, reason in refused:
            messages.error(request, f"{name}: {reason}")
    return back


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
            # A message of several lines (every bad row of a metadata CSV): one each.
            for line in exc.message.split("\n"):
                form.add_error(exc.field if exc.field in form.fields else None, line)
    if job is None:
        if _wants_json(request):
            fields = {name: "\n".join(errors) for name, errors in form.errors.items()}
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
    study = study_for(request, slug)
    job = get_object_or_404(ImportJob, pk=job_id, study=study)
    return JsonResponse({"job": import_job_public(job), **_job_urls(study, job)})


@login_required
@require_GET
def import_job_page(request: HttpRequest, slug: str, job_id: int) -> HttpResponse:
    """An import's progress and per-file report (the page the upload leads to without JS)."""
    study = study_for(request, slug)
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
