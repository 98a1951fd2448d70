"""Admin for analyses: adding one runs it (on a worker, or in-process when eager)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from scoring.analyses.services import analysis_create
from scoring.exports.formats import FORMATS
from scoring.model_scoring.services import (
    ScoringError,
    model_version_check,
    model_version_create,
    scoring_job_cancel,
)
from scoring.models import (
    Analysis,
    ModelVersion,
    Prediction,
    RaterResult,
    ScoringJob,
    StimulusResult,
)
from studyweb.errors import ServiceError
from studyweb.jobs import BrokerUnavailable


class RejectedRaterInline(admin.TabularInline):
    model = RaterResult
    verbose_name_plural = "rejected raters"
    extra = 0
    can_delete = False
    fields = ("rater", "n", "bias", "inconsistency", "p", "q", "corr", "decided_by", "reason")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).filter(rejected=True).select_related("rater")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Analysis)
class AnalysisAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "study",
        "method",
        "reject_on",
        "status",
        "n_stimuli",
        "n_raters",
        "n_rejected",
        "created_by",
        "created_at",
    )
    list_filter = ("status", "method", "study")
    search_fields = ("study__slug", "study__title")
    inlines = (RejectedRaterInline,)
    actions = ("rerun",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(_rejected=Count("rater_results", filter=Q(rater_results__rejected=True)))
        )

    @admin.display(ordering="_rejected", description="rejected")
    def n_rejected(self, obj):
        return obj._rejected

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("study", "method", "reject_on", "options")
        return (
            "study",
            "method",
            "reject_on",
            "options",
            "status",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "n_ratings",
            "n_raters",
            "n_stimuli",
            "reliability",
            "info",
        )

    @admin.display(description="downloads")
    def downloads(self, obj):
        if obj.status != Analysis.Status.DONE:
            return "-"
        links = [
            (
                reverse("scoring:export", args=[obj.study.slug, f.name])
                + (f"?analysis={obj.pk}" if f.needs_analysis else ""),
                f.label,
            )
            for f in FORMATS.values()
        ]
        return format_html_join(" · ", '<a href="{}">{}</a>', links) or format_html("-")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return self.get_fields(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            return
        try:
            created = analysis_create(
                study=obj.study,
                method=obj.method,
                reject_on=obj.reject_on,
                options=obj.options or {},
                user=request.user,
            )
        except BrokerUnavailable as exc:
            self.message_user(request, str(exc), messages.WARNING)
            created = exc.job
        except ServiceError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        obj.pk = created.pk
        obj.refresh_from_db()

    @admin.action(description="Run again with the same settings")
    def rerun(self, request, queryset):
        for analysis in queryset:
            try:
                analysis_create(
                    study=analysis.study,
                    method=analysis.method,
                    reject_on=analysis.reject_on,
                    options=analysis.options,
                    user=request.user,
                )
            except BrokerUnavailable as exc:
                self.message_user(request, str(exc), messages.WARNING)
        self.message_user(request, f"{queryset.count()} analysis run(s) queued")


@admin.register(StimulusResult)
class StimulusResultAdmin(admin.ModelAdmin):
    list_display = ("analysis", "stimulus", "dimension", "mos", "std", "ci_low", "ci_high", "n")
    list_filter = ("dimension", "analysis__study", "analysis")
    search_fields = ("stimulus__original_name",)
    list_select_related = ("analysis", "stimulus")


@admin.register(RaterResult)
class RaterResultAdmin(admin.ModelAdmin):
    list_display = (
        "analysis",
        "rater",
        "n",
        "bias",
        "inconsistency",
        "p",
        "q",
        "corr",
        "rejected",
        "reason",
    )
    list_filter = ("rejected", "analysis__study", "analysis")
    search_fields = ("rater__pseudonym", "reason")
    list_select_related = ("analysis", "rater")


class ModelVersionAdminForm(forms.ModelForm):
    """On add, every registration check runs in the form (the checkpoint is loaded on
    the CPU), so a file that is not a model is an error on its field, not a failure
    on a GPU worker later."""

    class Meta:
        model = ModelVersion
        fields = (
            "name",
            "kind",
            "description",
            "checkpoint_path",
            "baseline",
            "fusion_w_t",
            "fusion_w_r",
            "options",
        )

    checked: dict | None = None

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is not None or self.errors:
            return cleaned
        try:
            self.checked = model_version_check(
                name=cleaned.get("name") or "",
                kind=cleaned.get("kind") or "",
                checkpoint_path=cleaned.get("checkpoint_path") or "",
                baseline=cleaned.get("baseline") or "",
                fusion_w_t=cleaned.get("fusion_w_t"),
                fusion_w_r=cleaned.get("fusion_w_r"),
                options=cleaned.get("options") or {},
            )
        except ScoringError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return cleaned


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    form = ModelVersionAdminForm
    list_display = (
        "name",
        "kind",
        "baseline",
        "short_sha",
        "fusion_w_t",
        "fusion_w_r",
        "n_predictions",
        "created_at",
    )
    list_filter = ("kind",)
    search_fields = ("name", "description", "checkpoint_path")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_n=Count("predictions"))

    @admin.display(ordering="_n", description="predictions")
    def n_predictions(self, obj):
        return obj._n

    @admin.display(description="sha256")
    def short_sha(self, obj):
        return obj.checkpoint_sha256[:12]

    def get_readonly_fields(self, request, obj=None):
        # The digest is taken at registration; a changed file is a new version.
        return ("checkpoint_sha256", "created_by", "created_at") + (
            ("name", "kind", "checkpoint_path", "baseline") if obj else ()
        )

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        # The form checked everything (ModelVersionAdminForm.clean): record it as checked.
        created = model_version_create(form.checked, description=obj.description, user=request.user)
        obj.pk = created.pk
        obj.refresh_from_db()


@admin.register(ScoringJob)
class ScoringJobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "model_version",
        "study",
        "status",
        "progress",
        "worker_host",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "model_version", "study")
    search_fields = ("study__slug", "model_version__name", "error")
    actions = ("cancel_jobs",)
    readonly_fields = (
        "model_version",
        "study",
        "status",
        "total",
        "done",
        "force",
        "error",
        "error_code",
        "waiting_for_broker",
        "worker_host",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    )

    def has_add_permission(self, request):
        return False  # jobs start from the dashboard, the API or `manage.py score_study`

    @admin.display(description="progress")
    def progress(self, obj):
        return format_html(
            '<progress max="{}" value="{}"></progress> {}/{}',
            obj.total or 1,
            obj.done,
            obj.done,
            obj.total,
        )

    @admin.action(description="Cancel the selected jobs")
    def cancel_jobs(self, request, queryset):
        n = 0
        for job in queryset.filter(status__in=ScoringJob.ACTIVE):
            scoring_job_cancel(job=job)
            n += 1
        self.message_user(request, f"{n} job(s) cancelled")


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = (
        "model_version",
        "stimulus",
        "technical",
        "rationality",
        "naturalness",
        "artifact_map",
        "created_at",
    )
    list_filter = ("model_version", "stimulus__study")
    search_fields = ("stimulus__original_name",)
    list_select_related = ("model_version", "stimulus")
