"""Admin for analyses: adding one runs it (on a worker, or in-process when eager)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from scoring.exports import FORMATS
from scoring.models import Analysis, RaterResult, StimulusResult
from scoring.services import AnalysisError, analysis_create


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
        except AnalysisError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        obj.pk = created.pk
        obj.refresh_from_db()

    @admin.action(description="Run again with the same settings")
    def rerun(self, request, queryset):
        for analysis in queryset:
            analysis_create(
                study=analysis.study,
                method=analysis.method,
                reject_on=analysis.reject_on,
                options=analysis.options,
                user=request.user,
            )
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
