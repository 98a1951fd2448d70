"""Admin for every annotation model: filters, search and rating counts."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, Q
from django.utils.html import format_html

from annotation import protocol
from annotation.models import (
    ApiToken,
    Claim,
    PaymentExport,
    PaymentExportLine,
    Rater,
    RaterDecision,
    Rating,
    Session,
    Stimulus,
    StimulusTally,
    Study,
    StudyShare,
)
from annotation.studies import StudyRuleError, locked_fields, study_set_status, study_update


class StudyShareInline(admin.TabularInline):
    model = StudyShare
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    inlines = (StudyShareInline,)
    list_display = (
        "slug",
        "title",
        "owner",
        "status",
        "protocol",
        "scale",
        "ratings_per_stimulus",
        "n_stimuli",
        "n_raters",
        "n_ratings",
        "created_at",
    )
    list_filter = ("status", "protocol", "scale", "created_at")
    search_fields = ("slug", "title", "owner__username")
    prepopulated_fields = {"slug": ("title",)}
    readonly_fields = ("created_at", "updated_at", "rater_link")
    actions = ("open_studies", "pause_studies", "close_studies")
    fieldsets = (
        (None, {"fields": ("slug", "title", "owner", "status", "rater_link")}),
        ("What is rated", {"fields": ("protocol", "scale", "instructions", "consent_text")}),
        (
            "Assignment",
            {
                "fields": (
                    "ratings_per_stimulus",
                    "session_size",
                    "max_items_per_rater",
                    "gold_rate",
                    "gold_fail_limit",
                    "repeat_check",
                    "claim_ttl_seconds",
                )
            },
        ),
        ("Rating page", {"fields": ("min_view_seconds", "break_every")}),
        (
            "Viewing conditions",
            {
                "fields": (
                    "min_viewport_width",
                    "min_viewport_height",
                    "refuse_touch",
                    "native_pixels",
                )
            },
        ),
        ("Raters' language", {"fields": ("language", "texts")}),
        ("Places", {"fields": ("min_session_items", "when_complete")}),
        ("Completion", {"fields": ("platforms", "completion_code", "completion_url")}),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _n_stimuli=Count("stimuli", distinct=True),
                _n_raters=Count("raters", distinct=True),
                _n_ratings=Count("stimuli__ratings", distinct=True),
            )
        )

    @admin.display(ordering="_n_stimuli", description="stimuli")
    def n_stimuli(self, obj):
        return obj._n_stimuli

    @admin.display(ordering="_n_raters", description="raters")
    def n_raters(self, obj):
        return obj._n_raters

    @admin.display(ordering="_n_ratings", description="ratings")
    def n_ratings(self, obj):
        return obj._n_ratings

    @admin.display(description="rater link")
    def rater_link(self, obj):
        if not obj.pk:
            return "-"
        return format_html('<a href="{0}">{0}</a>', obj.get_absolute_url())

    def get_readonly_fields(self, request, obj=None):
        # Status changes go through the actions (and their rules); settings fixed once the
        # study has opened are shown, not edited.
        fixed = ("status", *locked_fields(obj)) if obj is not None else ("status",)
        if obj is not None:
            fixed = (*fixed, "slug")
        return (*self.readonly_fields, *fixed)

    def get_prepopulated_fields(self, request, obj=None):
        return {} if obj is not None else self.prepopulated_fields

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            return
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        try:
            study_update(study=obj, changes=changes)
        except StudyRuleError as exc:
            self.message_user(request, f"not saved: {exc}", messages.ERROR)

    def _set_status(self, request, queryset, status):
        changed = 0
        for study in queryset:
            try:
                study_set_status(study=study, status=status)
                changed += 1
            except StudyRuleError as exc:
                self.message_user(request, f"{study.slug}: {exc}", messages.ERROR)
        self.message_user(request, f"{changed} stud{'y' if changed == 1 else 'ies'} now {status}.")

    @admin.action(description="Open the selected studies")
    def open_studies(self, request, queryset):
        self._set_status(request, queryset, Study.Status.OPEN)

    @admin.action(description="Pause the selected studies")
    def pause_studies(self, request, queryset):
        self._set_status(request, queryset, Study.Status.PAUSED)

    @admin.action(description="Close the selected studies")
    def close_studies(self, request, queryset):
        self._set_status(request, queryset, Study.Status.CLOSED)


@admin.register(Stimulus)
class StimulusAdmin(admin.ModelAdmin):
    list_display = (
        "thumbnail",
        "original_name",
        "study",
        "role",
        "generator",
        "task",
        "width",
        "height",
        "n_ratings",
        "n_live_claims",
    )
    list_display_links = ("thumbnail", "original_name")
    list_filter = ("role", "study", "generator", "task")
    search_fields = ("original_name", "sha256", "prompt", "generator")
    readonly_fields = ("sha256", "width", "height", "byte_size", "created_at", "preview")
    list_select_related = ("study",)

    def get_queryset(self, request):
        from django.utils import timezone

        return (
            super()
            .get_queryset(request)
            .annotate(
                _n_ratings=Count("ratings", distinct=True),
                _n_live=Count(
                    "claims", filter=Q(claims__expires_at__gt=timezone.now()), distinct=True
                ),
            )
        )

    @admin.display(ordering="_n_ratings", description="ratings")
    def n_ratings(self, obj):
        return obj._n_ratings

    @admin.display(ordering="_n_live", description="live claims")
    def n_live_claims(self, obj):
        return obj._n_live

    @admin.display(description="image")
    def thumbnail(self, obj):
        if not obj.image:
            return "-"
        return format_html(
            '<img src="{}" alt="" style="max-height:48px;max-width:64px">', obj.image.url
        )

    @admin.display(description="preview")
    def preview(self, obj):
        if not obj.image:
            return "-"
        return format_html('<img src="{}" alt="" style="max-width:384px">', obj.image.url)


class _RecordAdmin(admin.ModelAdmin):
    """A record kept for good: read in the admin, never written there."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class _RecordInline(admin.TabularInline):
    """Records listed under their parent, read-only: its ``fields``, no adding, no
    deleting."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None):
        return False


class RatingInline(_RecordInline):
    model = Rating
    fields = ("stimulus", "repetition", "overall", "viewing_seconds", "created_at")
    show_change_link = True


class RaterDecisionInline(_RecordInline):
    model = RaterDecision
    fields = ("decided_at", "kind", "reason", "previous", "decided_by_name")


@admin.register(RaterDecision)
class RaterDecisionAdmin(_RecordAdmin):
    list_display = ("decided_at", "rater", "kind", "reason", "decided_by_name")
    list_filter = ("kind", "rater__study")
    search_fields = ("rater__pseudonym", "rater__external_id", "reason", "decided_by_name")


class PaymentExportLineInline(_RecordInline):
    model = PaymentExportLine
    fields = ("rater", "external_id", "assignment_id", "hit_id", "amount", "reason")


@admin.register(PaymentExport)
class PaymentExportAdmin(_RecordAdmin):
    list_display = ("id", "study", "platform", "kind", "created_at", "created_by_name")
    list_filter = ("platform", "kind", "study")
    inlines = (PaymentExportLineInline,)


@admin.register(Rater)
class RaterAdmin(admin.ModelAdmin):
    list_display = (
        "pseudonym",
        "study",
        "source",
        "external_id",
        "status",
        "status_reason",
        "pay_decision",
        "gold_failures",
        "n_ratings",
        "created_at",
    )
    list_filter = ("status", "pay_decision", "source", "study")
    search_fields = ("pseudonym", "external_id", "status_reason")
    # MOS use and pay change only through annotation.rater_decisions (the researcher's
    # rater page), so every change is recorded with who, when and why.
    readonly_fields = (
        "token",
        "pseudonym",
        "created_at",
        "consented_at",
        "training_done_at",
        "status",
        "status_reason",
        "pay_decision",
    )
    inlines = (RaterDecisionInline, RatingInline)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_n_ratings=Count("ratings"))

    @admin.display(ordering="_n_ratings", description="ratings")
    def n_ratings(self, obj):
        return obj._n_ratings


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ("id", "rater", "stage", "planned_items", "started_at", "finished_at")
    list_filter = ("stage", "rater__study")
    search_fields = ("rater__pseudonym", "rater__external_id", "platform_session_id")
    list_select_related = ("rater",)


@admin.register(Claim)
class ClaimAdmin(admin.ModelAdmin):
    list_display = ("stimulus", "rater", "repetition", "created_at", "expires_at", "is_live")
    list_filter = ("stimulus__study",)
    search_fields = ("rater__pseudonym", "stimulus__original_name")
    list_select_related = ("stimulus", "rater")

    @admin.display(boolean=True, description="live")
    def is_live(self, obj):
        return obj.is_live


@admin.register(StimulusTally)
class StimulusTallyAdmin(_RecordAdmin):
    """Read-only: database triggers keep the tally (see StimulusTally)."""

    list_display = ("stimulus", "ratings")
    list_filter = ("stimulus__study",)
    search_fields = ("stimulus__original_name",)
    list_select_related = ("stimulus",)


@admin.register(Rating)
class RatingAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "stimulus",
        "rater",
        "repetition",
        "is_gold",
        *[d.key for d in protocol.DIMENSIONS[:3]],
        "viewing_seconds",
        "created_at",
    )
    list_filter = ("stimulus__study", "is_gold", "repetition", "scale", "protocol")
    search_fields = ("rater__pseudonym", "stimulus__original_name", "client_id")
    list_select_related = ("stimulus", "rater")
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        # Ratings are evidence: they are read, never edited by hand.
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Researchers' named API tokens: listed and revoked (deleted) here; created on
    the researcher's own tokens page, the only place that shows a key."""

    list_display = ("name", "user", "key_prefix", "created_at", "last_used_at")
    list_filter = ("created_at", "last_used_at")
    search_fields = ("name", "user__username", "key_prefix")
    list_select_related = ("user",)
    readonly_fields = ("user", "name", "key_prefix", "created_at", "last_used_at")
    exclude = ("key_hash",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
