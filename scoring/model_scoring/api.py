"""REST API of model scoring: model versions, scoring jobs, predictions, agreement."""

from __future__ import annotations

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from annotation.api import STUDY_FILTER, FiniteFloatField, VisibleStudyField, int_param
from annotation.permissions import (
    VIEW_ONLY,
    can_edit_study,
    can_view_study,
    visible_studies,
    visible_study_or_404,
)
from scoring.model_scoring import agreement_report
from scoring.model_scoring.models import BATCH_SIZE_MAX
from scoring.model_scoring.services import (
    model_version_register,
    scoring_job_cancel,
    scoring_job_start,
)
from scoring.models import ModelVersion, Prediction, ScoringJob
from studyweb.jobs import JOB_STATE_FIELDS


class IsAdminOrReadOnly(IsAuthenticated):
    """Model versions name files on the workers' disks: only admins register them."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        return request.method in ("GET", "HEAD", "OPTIONS") or request.user.is_superuser


class ModelVersionSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=[k.value for k in ModelVersion.Kind])
    fusion_w_t = FiniteFloatField(required=False)
    fusion_w_r = FiniteFloatField(required=False)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "kind",
            "description",
            "checkpoint_path",
            "checkpoint_sha256",
            "baseline",
            "fusion_w_t",
            "fusion_w_r",
            "options",
            "created_at",
        ]
        read_only_fields = ["checkpoint_sha256", "created_at"]


class ModelVersionViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = ModelVersionSerializer
    permission_classes = [IsAdminOrReadOnly]
    queryset = ModelVersion.objects.order_by("name")
    lookup_field = "name"

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = model_version_register(
            name=data["name"],
            kind=data["kind"],
            checkpoint_path=data.get("checkpoint_path", ""),
            baseline=data.get("baseline", ""),
            fusion_w_t=data.get("fusion_w_t"),
            fusion_w_r=data.get("fusion_w_r"),
            options=data.get("options") or {},
            description=data.get("description", ""),
            user=self.request.user,
        )


class ScoringJobSerializer(serializers.ModelSerializer):
    study = VisibleStudyField()
    model_version = serializers.SlugRelatedField(
        slug_field="name", queryset=ModelVersion.objects.all()
    )
    batch_size = serializers.IntegerField(min_value=1, max_value=BATCH_SIZE_MAX, default=16)

    class Meta:
        model = ScoringJob
        fields = [
            "id",
            "model_version",
            "study",
            "total",
            "done",
            "batch_size",
            "force",
            "worker_host",
            *JOB_STATE_FIELDS,
        ]
        # A live job for the same pair is joined by scoring_job_start, not refused.
        validators = []
        read_only_fields = [*JOB_STATE_FIELDS, "total", "done", "worker_host"]


@extend_schema_view(list=extend_schema(parameters=[STUDY_FILTER]))
class ScoringJobViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Score a study with a model version on the `gpu` queue; follow and cancel jobs."""

    serializer_class = ScoringJobSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ScoringJob.objects.none()
        qs = ScoringJob.objects.filter(study__in=visible_studies(self.request.user))
        if slug := self.request.query_params.get("study"):
            qs = qs.filter(study__slug=slug)
        return qs.select_related("study", "model_version").order_by("-created_at")

    @extend_schema(
        responses={
            201: OpenApiResponse(ScoringJobSerializer, description="a new job, queued"),
            200: OpenApiResponse(
                ScoringJobSerializer,
                description="the job already queued or running for this pair (no force)",
            ),
        }
    )
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if not can_view_study(request.user, data["study"]):
            raise PermissionDenied("this study is not yours")
        if not can_edit_study(request.user, data["study"]):
            # Scoring spends the GPU workers' time: an owner's or an editor's call.
            raise PermissionDenied(VIEW_ONLY)
        job, created = scoring_job_start(
            model_version=data["model_version"],
            study=data["study"],
            force=data.get("force", False),
            batch_size=data["batch_size"],
            user=request.user,
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(self.get_serializer(job).data, status=code)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = self.get_object()
        if not can_edit_study(request.user, job.study):
            raise PermissionDenied(VIEW_ONLY)
        job = scoring_job_cancel(job=job)
        return Response(self.get_serializer(job).data)


class PredictionSerializer(serializers.ModelSerializer):
    model_version = serializers.CharField(source="model_version.name")
    image = serializers.CharField(source="stimulus.original_name")

    class Meta:
        model = Prediction
        fields = [
            "model_version",
            "stimulus",
            "image",
            "technical",
            "rationality",
            "naturalness",
            "artifact_map",
            "created_at",
        ]


@extend_schema_view(
    list=extend_schema(
        parameters=[
            STUDY_FILTER,
            OpenApiParameter("model_version", str, description="only this model version's"),
        ]
    )
)
class PredictionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Predictions on your studies; filter with ?study=SLUG&model_version=NAME."""

    serializer_class = PredictionSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        qs = Prediction.objects.filter(stimulus__study__in=visible_studies(self.request.user))
        if slug := self.request.query_params.get("study"):
            qs = qs.filter(stimulus__study__slug=slug)
        if name := self.request.query_params.get("model_version"):
            qs = qs.filter(model_version__name=name)
        return qs.select_related("model_version", "stimulus").order_by("model_version", "stimulus")


# The report is computed in the request (then cached): 2,000 resamples give stable
# 95% percentile intervals, and 10,000 took 18 s on the 2-core development machine,
# too long to hold a request for.
MAX_N_BOOT = 2000


@extend_schema(
    parameters=[
        OpenApiParameter("model_version", str, required=True),
        OpenApiParameter("analysis", int, required=False),
        OpenApiParameter("n_boot", int, required=False, description=f"0-{MAX_N_BOOT}"),
    ],
    responses={
        200: OpenApiResponse(description="metrics per pair, per generator and task"),
        409: OpenApiResponse(
            description="no agreement yet: no finished analysis or no scores of this model"
        ),
    },
)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def agreement_view(request, slug: str):
    """Model-vs-human agreement (SRCC, KRCC, PLCC/RMSE after the logistic fit, 95% CIs)."""
    study = visible_study_or_404(request.user, slug)
    name = request.query_params.get("model_version")
    if not name:
        raise ValidationError({"model_version": ["required"]})
    version = ModelVersion.objects.filter(name=name).first()
    if version is None:
        raise ValidationError({"model_version": [f"no model version named {name!r}"]})
    n_boot = int_param(request, "n_boot", 1000)
    analysis_id = int_param(request, "analysis", None)
    if n_boot is None or not 0 <= n_boot <= MAX_N_BOOT:
        raise ValidationError({"n_boot": [f"must be between 0 and {MAX_N_BOOT}"]})
    try:
        analysis = agreement_report.reference_analysis(study, analysis_id)
        report = agreement_report.agreement_report(
            study, version, analysis, n_boot=n_boot, group_boot=min(n_boot, 200)
        )
    except agreement_report.AgreementUnavailable as exc:
        return Response(
            {"error": "unavailable", "detail": str(exc), "fields": {}},
            status=status.HTTP_409_CONFLICT,
        )
    return Response({k: v for k, v in report.items() if k != "points"})
