"""REST API of the annotation side: studies and their stimuli (researchers)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db import models, transaction
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from annotation import protocol as proto
from annotation import rater_decisions as rater_decision_services
from annotation import rater_review
from annotation.importing import ImportAborted, Limits, stimuli_import
from annotation.models import (
    PLATFORM_CHOICES,
    STUDY_BOUNDS,
    WHEN_COMPLETE_CHOICES,
    Rater,
    Stimulus,
    Study,
    StudyOutcome,
    StudyShare,
)
from annotation.permissions import (
    OWNER_ONLY_DELETE,
    OWNER_ONLY_SHARES,
    can_edit_study,
    can_share_study,
    can_view_study,
    share_level,
    visible_studies,
    visible_study_or_404,
)
from annotation.selectors import study_progress
from annotation.studies import (
    study_create,
    study_delete,
    study_set_status,
    study_share,
    study_unshare,
    study_update,
)
from studyweb.boundary import BoundedFormParser, BoundedMultiPartParser


class FiniteFloatField(serializers.FloatField):
    """A float that refuses NaN and infinities ("NaN" parses as a float in Python)."""

    default_error_messages = {"not_finite": "must be a finite number"}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("not_finite")
        return value


class VisibleStudyField(serializers.SlugRelatedField):
    """A study named by slug, among those the caller may see: another researcher's
    study answers exactly as a missing one (no existence oracle)."""

    default_error_messages = {
        "does_not_exist": "no such study",
        "invalid": "no such study",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("slug_field", "slug")
        kwargs.setdefault("queryset", Study.objects.all())
        super().__init__(**kwargs)

    def get_queryset(self):
        request = self.context.get("request")
        if request is None or not getattr(request, "user", None):
            return Study.objects.none()
        return visible_studies(request.user)


class IsResearcher(BasePermission):
    """A signed-in account (session or API token); raters have no account."""

    message = "sign in as a researcher (session or API token)"

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated)


class StudyAccess(BasePermission):
    """By share level: reads for everyone the study is visible to; settings and
    status for editors (owner, admin, or shared for editing); deleting for the owner
    (or an admin) only. The queryset already hides studies not shared with the user."""

    message = "this study is shared with you view-only: only its owner or an editor can change it"

    def has_object_permission(self, request, view, obj):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return can_view_study(request.user, obj)
        if request.method == "DELETE":
            self.message = OWNER_ONLY_DELETE
            return can_share_study(request.user, obj)
        return can_edit_study(request.user, obj)


@extend_schema_field(
    {"type": "string", "maxLength": 200, "anyOf": [{"format": "uri"}, {"maxLength": 0}]}
)
class OptionalURLField(serializers.CharField):
    """A URL or "" (none set): the schema says both, since "" is not a "uri". The URL
    is checked here rather than by a field validator, which drf-spectacular would
    document as "format": "uri" whatever the annotation says."""

    check_url = URLValidator(message=serializers.URLField.default_error_messages["invalid"])

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value:
            try:
                self.check_url(value)
            except DjangoValidationError as exc:
                raise ValidationError(exc.messages) from exc
        return value


class StudyOutcomeSerializer(serializers.Serializer):
    """One outcome row; checked in full by the service (annotation.studies.outcomes_clean)."""

    kind = serializers.ChoiceField(choices=StudyOutcome.Kind.values)
    platform = serializers.ChoiceField(
        choices=[("", "Any platform"), *PLATFORM_CHOICES], required=False, default=""
    )
    code = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    redirect_url = OptionalURLField(max_length=200, required=False, allow_blank=True, default="")


def _bounds(name: str) -> dict:
    low, high = STUDY_BOUNDS[name]
    return {"min_value": low, "max_value": high}


class StudySerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.URLField: OptionalURLField,
    }
    owner = serializers.CharField(source="owner.username", read_only=True)
    protocol = serializers.ChoiceField(choices=list(proto.PRESETS), default="agin")
    scale = serializers.ChoiceField(choices=list(proto.SCALES), default="continuous")
    # Ranges from the model's one table (STUDY_BOUNDS), which the database checks too.
    ratings_per_stimulus = serializers.IntegerField(**_bounds("ratings_per_stimulus"), default=15)
    session_size = serializers.IntegerField(**_bounds("session_size"), default=50)
    max_items_per_rater = serializers.IntegerField(
        **_bounds("max_items_per_rater"), required=False, allow_null=True
    )
    gold_rate = FiniteFloatField(**_bounds("gold_rate"), default=0.1)
    gold_fail_limit = serializers.IntegerField(**_bounds("gold_fail_limit"), default=2)
    min_view_seconds = FiniteFloatField(**_bounds("min_view_seconds"), default=3.0)
    break_every = serializers.IntegerField(**_bounds("break_every"), default=40)
    claim_ttl_seconds = serializers.IntegerField(**_bounds("claim_ttl_seconds"), default=600)
    platforms = serializers.ListField(
        child=serializers.ChoiceField(choices=PLATFORM_CHOICES),
        allow_empty=False,
        required=False,
        help_text="Links the study accepts (default: all of prolific, mturk, anonymous).",
    )
    min_session_items = serializers.IntegerField(
        **_bounds("min_session_items"),
        required=False,
        allow_null=True,
        help_text="Fewest items a rater is admitted for near the end; null: full sessions only.",
    )
    min_viewport_width = serializers.IntegerField(
        **_bounds("min_viewport_width"),
        required=False,
        allow_null=True,
        help_text="Narrowest browser window raters may rate in (CSS px); null: any.",
    )
    min_viewport_height = serializers.IntegerField(
        **_bounds("min_viewport_height"),
        required=False,
        allow_null=True,
        help_text="Lowest browser window raters may rate in (CSS px); null: any.",
    )
    when_complete = serializers.ChoiceField(
        choices=[k for k, _ in WHEN_COMPLETE_CHOICES],
        required=False,
        help_text="What the study does by itself once every test image has its K ratings.",
    )
    outcomes = StudyOutcomeSerializer(
        many=True,
        required=False,
        help_text=(
            "Codes and redirects per outcome (completed, screened_out, no_work) and crowd "
            "platform (empty: every platform). Sent rows are set by (kind, platform), "
            "others kept; a row with neither code nor URL removes it. Without a completed "
            "row, completion_code and completion_url apply."
        ),
    )
    rater_url = serializers.SerializerMethodField()
    access = serializers.SerializerMethodField(
        help_text="What you may do with the study: owner, edit or view."
    )

    class Meta:
        model = Study
        fields = [
            "slug",
            "title",
            "owner",
            "status",
            "instructions",
            "consent_text",
            "protocol",
            "scale",
            "ratings_per_stimulus",
            "session_size",
            "max_items_per_rater",
            "gold_rate",
            "gold_fail_limit",
            "repeat_check",
            "min_view_seconds",
            "break_every",
            "claim_ttl_seconds",
            "completion_code",
            "completion_url",
            "platforms",
            "min_session_items",
            "when_complete",
            "language",
            "texts",
            "min_viewport_width",
            "min_viewport_height",
            "refuse_touch",
            "native_pixels",
            "outcomes",
            "status_note",
            "created_at",
            "rater_url",
            "access",
        ]
        read_only_fields = [
            "owner",
            "status",
            "status_note",
            "created_at",
            "rater_url",
            "access",
        ]

    def validate_platforms(self, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise serializers.ValidationError("each platform once")
        return value

    def get_access(self, obj) -> str | None:
        request = self.context.get("request")
        return share_level(request.user, obj) if request else None

    def get_rater_url(self, obj) -> str:
        request = self.context.get("request")
        path = obj.get_absolute_url()
        return request.build_absolute_uri(path) if request else path

    def create(self, validated_data):
        return study_create(**validated_data)

    def update(self, instance, validated_data):
        # Defaults apply to new studies only: a PUT that omits a field keeps its value.
        sent = set(getattr(self, "initial_data", {}) or {})
        changes = {k: v for k, v in validated_data.items() if k in sent}
        return study_update(study=instance, changes=changes)


class StimulusSerializer(serializers.ModelSerializer):
    ratings = serializers.IntegerField(source="n_ratings", read_only=True)
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = Stimulus
        fields = [
            "id",
            "original_name",
            "sha256",
            "width",
            "height",
            "role",
            "generator",
            "task",
            "prompt",
            "metadata",
            "expected_low",
            "expected_high",
            "ratings",
            "image_url",
            "created_at",
        ]

    def get_image_url(self, obj) -> str:
        return obj.image.url if obj.image else ""


class RaterRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    pseudonym = serializers.CharField()
    source = serializers.CharField()
    external_id = serializers.CharField(help_text="Prolific participant ID or MTurk worker ID")
    status = serializers.CharField(help_text="MOS use: active, completed or excluded")
    status_reason = serializers.CharField()
    pay_decision = serializers.CharField(help_text="empty (not decided), approve or reject")
    gold_failures = serializers.IntegerField()
    flags = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField()),
        help_text="each flag in words ({key, name, text}) with the values of now",
    )


class RaterDecisionSerializer(serializers.Serializer):
    rater = serializers.IntegerField(min_value=1, help_text="the rater's id in this study")
    action = serializers.ChoiceField(choices=["exclude", "include", "approve", "reject"])
    reason = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=2000, help_text="why"
    )


class RaterDecisionOutSerializer(serializers.Serializer):
    decision = inline_serializer(
        "RaterDecisionRecord",
        {
            "kind": serializers.CharField(),
            "reason": serializers.CharField(),
            "decided_by": serializers.CharField(),
            "decided_at": serializers.DateTimeField(),
        },
    )
    rater = RaterRowSerializer()


def _rater_row(rater: Rater, now) -> dict:
    return {
        "id": rater.pk,
        "pseudonym": rater.pseudonym,
        "source": rater.source,
        "external_id": rater.external_id,
        "status": rater.status,
        "status_reason": rater.status_reason,
        "pay_decision": rater.pay_decision,
        "gold_failures": rater.gold_failures,
        "flags": rater_review.flags_in_words(rater, now),
    }


class StudyShareSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = StudyShare
        fields = ["id", "username", "level", "created_at"]


class StudyShareInSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    level = serializers.ChoiceField(choices=StudyShare.Level.values)


class StudyViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.ListModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Studies you own or that are shared with you (admins: all)."""

    serializer_class = StudySerializer
    permission_classes = [IsResearcher, StudyAccess]
    lookup_field = "slug"

    def get_queryset(self):
        return visible_studies(self.request.user).select_related("owner").order_by("-created_at")

    def perform_create(self, serializer):
        serializer.save(owner=self.request.user)

    def perform_destroy(self, instance):
        study_delete(study=instance)

    def _set_status(self, request, status_value):
        study = study_set_status(study=self.get_object(), status=status_value)
        return Response(self.get_serializer(study).data)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def open(self, request, slug=None):
        return self._set_status(request, Study.Status.OPEN)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def pause(self, request, slug=None):
        return self._set_status(request, Study.Status.PAUSED)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def close(self, request, slug=None):
        return self._set_status(request, Study.Status.CLOSED)

    @extend_schema(
        methods=["GET"],
        responses=StudyShareSerializer(many=True),
        description="Who the study is shared with (everyone who may see the study).",
    )
    @extend_schema(
        methods=["POST"],
        request=StudyShareInSerializer,
        responses={200: StudyShareSerializer},
        description="Share with a researcher by user name, view-only or edit; sharing "
        "again changes the level. The owner only.",
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def shares(self, request, slug=None):
        study = self.get_object()
        if request.method == "GET":
            rows = study.shares.select_related("user").order_by("user__username")
            return Response(StudyShareSerializer(rows, many=True).data)
        if not can_share_study(request.user, study):
            raise PermissionDenied(OWNER_ONLY_SHARES)
        body = StudyShareInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        share = study_share(study=study, **body.validated_data)
        return Response(StudyShareSerializer(share).data)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"shares/(?P<share_id>[0-9]+)")
    def unshare(self, request, slug=None, share_id=None):
        """Take a share back (the owner only: DELETE is the owner's, StudyAccess)."""
        study_unshare(study=self.get_object(), share_id=int(share_id))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        responses=inline_serializer(
            "Progress",
            {
                "complete": serializers.IntegerField(),
                "in_progress": serializers.IntegerField(),
                "untouched": serializers.IntegerField(),
                "total": serializers.IntegerField(),
                "k": serializers.IntegerField(),
                "stimuli_by_ratings": serializers.ListField(child=serializers.DictField()),
                "raters_active": serializers.IntegerField(),
                "raters_completed": serializers.IntegerField(),
                "raters_excluded": serializers.IntegerField(),
                "median_seconds": serializers.FloatField(allow_null=True),
                "n_ratings": serializers.IntegerField(),
            },
        )
    )
    @action(detail=True, methods=["get"])
    def progress(self, request, slug=None):
        return Response(study_progress(self.get_object()))

    @extend_schema(responses=RaterRowSerializer(many=True))
    @action(detail=True, methods=["get"])
    def raters(self, request, slug=None):
        """The study's raters (no previews): platform ids, MOS use, pay, flags in words."""
        study = self.get_object()
        qs = (
            Rater.objects.filter(study=study)
            .exclude(source=Rater.Source.PILOT)
            .select_related("study")
            .order_by("id")
        )
        # Paged like every list here (the schema says so): a crowd study has thousands.
        raters = self.paginate_queryset(qs)
        stats = rater_review.overall_stats(r.pk for r in raters)
        return self.get_paginated_response([_rater_row(r, stats.get(r.pk)) for r in raters])

    @extend_schema(request=RaterDecisionSerializer, responses={201: RaterDecisionOutSerializer})
    @action(detail=True, methods=["post"], url_path="rater-decisions")
    def rater_decisions(self, request, slug=None):
        """Exclude / re-include (MOS use) or approve / reject (pay) one rater, with the
        reason; owners and editors only (annotation.rater_decisions)."""
        study = self.get_object()
        body = RaterDecisionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        rater = rater_decision_services.rater_in_study(study, body.validated_data["rater"])
        action_name, reason = body.validated_data["action"], body.validated_data["reason"]
        if action_name == "exclude":
            decision = rater_decision_services.rater_exclude(
                rater=rater, reason=reason, user=request.user
            )
        elif action_name == "include":
            decision = rater_decision_services.rater_include(
                rater=rater, reason=reason, user=request.user
            )
        else:
            decision = rater_decision_services.rater_set_pay(
                rater=rater, decision=action_name, reason=reason, user=request.user
            )
        stats = rater_review.overall_stats([rater.pk]).get(rater.pk)
        return Response(
            {
                "decision": {
                    "kind": decision.kind,
                    "reason": decision.reason,
                    "decided_by": decision.decided_by_name,
                    "decided_at": decision.decided_at,
                },
                "rater": _rater_row(rater, stats),
            },
            status=status.HTTP_201_CREATED,
        )


# Query filters of the list endpoints: documented, and a value outside a fixed set is
# refused (400 on the parameter) rather than answered with an empty list.
STUDY_FILTER = OpenApiParameter("study", str, description="only this study's rows (its slug)")


def int_param(request, name: str, default: int | None) -> int | None:
    """A whole-number query parameter, refused on its own name when it is not one."""
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValidationError({name: ["must be an integer"]}) from None


def choice_param(request, name: str, choices) -> str | None:
    """The query parameter ``name`` if given: one of ``choices``, or a 400 naming it."""
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if value not in choices:
        raise ValidationError({name: [f"one of {', '.join(choices)}"]})
    return value


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="one image (PNG/JPEG/WebP) or a .zip of images")
    metadata = serializers.FileField(required=False, help_text="metadata CSV keyed by filename")
    role = serializers.ChoiceField(choices=[r.value for r in Stimulus.Role], default="test")


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("role", str, enum=Stimulus.Role.values, description="only this role")
        ]
    )
)
class StimulusViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A study's stimuli with their rating counts; upload one image or a zip."""

    serializer_class = StimulusSerializer
    permission_classes = [IsResearcher]
    parser_classes = [BoundedMultiPartParser, BoundedFormParser]

    def _study(self) -> Study:
        return visible_study_or_404(self.request.user, self.kwargs["study_slug"])

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no study
            return Stimulus.objects.none()
        qs = Stimulus.objects.filter(study=self._study()).annotate(
            n_ratings=Count("ratings", filter=Q(ratings__repetition=1, ratings__is_pilot=False))
        )
        if role := choice_param(self.request, "role", Stimulus.Role.values):
            qs = qs.filter(role=role)
        return qs.order_by("id")

    @extend_schema(
        request=UploadSerializer,
        parameters=[
            OpenApiParameter(
                "background",
                bool,
                description="1: import in a background job (202 with the job; follow it "
                "at imports/<id>/) instead of answering when the import is done (201)",
            )
        ],
        responses={
            201: inline_serializer(
                "ImportReport",
                {
                    "imported": serializers.IntegerField(),
                    "skipped": serializers.IntegerField(),
                    "rejected": serializers.IntegerField(),
                    "files": serializers.ListField(),
                },
            ),
            202: inline_serializer(
                "ImportJobAccepted",
                {
                    "id": serializers.IntegerField(),
                    "status": serializers.CharField(),
                    "total": serializers.IntegerField(),
                    "url": serializers.URLField(),
                },
            ),
        },
    )
    def create(self, request, *args, **kwargs):
        study = self._study()
        if not can_edit_study(request.user, study):
            raise PermissionDenied("this study is shared with you view-only: no uploads")
        upload = UploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        if request.query_params.get("background") in ("1", "true"):
            return self._create_job(study, upload.validated_data)
        file = upload.validated_data["file"]
        limit = (
            settings.MAX_ARCHIVE_BYTES
            if file.name.lower().endswith(".zip")
            else (settings.MAX_IMAGE_BYTES)
        )
        if file.size > limit:
            raise ValidationError({"file": f"too large ({file.size:,} bytes > {limit:,})"})
        with tempfile.TemporaryDirectory() as tmp:
            name = Path(file.name).name or "upload"
            if name.lower().endswith(".zip"):
                source = Path(tmp) / name
            else:
                (Path(tmp) / "files").mkdir()
                source = Path(tmp) / "files"
            target = source if source.suffix == ".zip" else source / name
            with open(target, "wb") as handle:
                for chunk in file.chunks():
                    handle.write(chunk)
            metadata = None
            if meta := upload.validated_data.get("metadata"):
                metadata = Path(tmp) / "metadata.csv"
                with open(metadata, "wb") as handle:
                    for chunk in meta.chunks():
                        handle.write(chunk)
            try:
                with transaction.atomic():
                    report = stimuli_import(
                        study=study,
                        source=source,
                        metadata_csv=metadata,
                        role=upload.validated_data["role"],
                        limits=Limits.for_request(),  # decoding here holds a web worker
                    )
            except ImportAborted as exc:
                field = "metadata" if "metadata" in str(exc) else "file"
                raise ValidationError({field: str(exc)}) from None
        body = {
            "imported": report.imported,
            "skipped": report.skipped,
            "rejected": report.rejected,
            "files": [o.__dict__ for o in report.outcomes],
            "warnings": report.warnings,
        }
        if report.imported == 0 and report.rejected:
            reasons = "; ".join(
                f"{o.name}: {o.reason}" for o in report.outcomes if o.status == "rejected"
            )
            body = {
                "error": "rejected",
                "detail": f"nothing imported: {reasons}",
                "fields": {"file": reasons},
                **body,
            }
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        return Response(body, status=status.HTTP_201_CREATED)

    def _create_job(self, study: Study, data: dict) -> Response:
        """``?background=1``: the upload becomes an import job (202), followed at
        ``imports/<id>/``; refused, like the synchronous upload, on its field."""
        from annotation.stimuli import StimulusError, import_job_create, import_job_public

        try:
            job = import_job_create(
                study=study,
                user=self.request.user,
                files=[data["file"]],
                metadata=data.get("metadata"),
                default_role=data["role"],
            )
        except StimulusError as exc:
            # The service names the page's fields; this endpoint calls them file and role.
            field = {"files": "file", "default_role": "role"}.get(exc.field or "", exc.field)
            raise StimulusError(
                exc.message, code=exc.code, field=field, status=exc.status
            ) from None
        body = import_job_public(job, with_report=False)
        body["url"] = self.reverse_action(
            "import-job", kwargs={"study_slug": study.slug, "job_id": job.pk}
        )
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses=inline_serializer(
            "ImportJob",
            {
                "id": serializers.IntegerField(),
                "status": serializers.CharField(),
                "done": serializers.IntegerField(),
                "total": serializers.IntegerField(),
                "imported": serializers.IntegerField(),
                "skipped": serializers.IntegerField(),
                "rejected": serializers.IntegerField(),
                "error": serializers.CharField(),
                "error_field": serializers.CharField(),
                "finished": serializers.BooleanField(),
                "report": serializers.ListField(child=serializers.DictField()),
            },
        )
    )
    @action(
        detail=False,
        methods=["get"],
        url_path=r"imports/(?P<job_id>[0-9]+)",
        url_name="import-job",
    )
    def import_job(self, request, study_slug=None, job_id=None):
        """A background import (``POST ...?background=1``): progress, then the report."""
        from annotation.models import ImportJob
        from annotation.stimuli import import_job_public

        job = get_object_or_404(ImportJob, pk=job_id, study=self._study())
        return Response(import_job_public(job))
