"""REST API of the scoring side: analyses and their results, exports."""

from __future__ import annotations

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from annotation.api import FiniteFloatField
from annotation.models import Study
from annotation.permissions import can_view_study, visible_studies
from scoring import mos
from scoring.exports import (
    FORMATS,
    ExportError,
    analysis_from_param,
    export_job_start,
    export_jobs_requeue_waiting,
    export_stream,
    streaming_download,
)
from scoring.jobs import (
    BrokerUnavailable,
    ScoringError,
    jobs_requeue_waiting,
    model_version_register,
    scoring_job_cancel,
    scoring_job_start,
)
from scoring.models import (
    Analysis,
    ExportJob,
    ModelVersion,
    Prediction,
    RaterResult,
    ScoringJob,
    StimulusResult,
)
from scoring.services import AnalysisError, analysis_create


def broker_unavailable(exc: Exception, job_data: dict | None) -> Response:
    """503 with Retry-After: the job is saved and will be sent when the broker is back."""
    body = {"error": "broker_unavailable", "detail": str(exc), "fields": {}, "job": job_data}
    return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "30"})


class AnalysisSerializer(serializers.ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="slug", queryset=Study.objects.all())
    method = serializers.ChoiceField(choices=list(mos.METHODS))
    reject_on = serializers.ChoiceField(choices=["overall", "per_dimension"], default="overall")
    options = serializers.DictField(required=False, default=dict)

    class Meta:
        model = Analysis
        fields = [
            "id",
            "study",
            "method",
            "reject_on",
            "options",
            "status",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "n_ratings",
            "n_raters",
            "n_stimuli",
            "reliability",
        ]
        read_only_fields = [
            "status",
            "error",
            "created_at",
            "started_at",
            "finished_at",
            "n_ratings",
            "n_raters",
            "n_stimuli",
            "reliability",
        ]


class StimulusResultSerializer(serializers.ModelSerializer):
    filename = serializers.CharField(source="stimulus.original_name")

    class Meta:
        model = StimulusResult
        fields = [
            "stimulus",
            "filename",
            "dimension",
            "mos",
            "std",
            "ci_low",
            "ci_high",
            "n",
            "note",
        ]


class RaterResultSerializer(serializers.ModelSerializer):
    rater = serializers.CharField(source="rater.pseudonym")

    class Meta:
        model = RaterResult
        fields = [
            "rater",
            "n",
            "bias",
            "inconsistency",
            "p",
            "q",
            "corr",
            "rejected",
            "decided_by",
            "reason",
            "per_dimension",
        ]


class AnalysisViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    """Run an analysis (queued on the `default` queue) and read its results."""

    serializer_class = AnalysisSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        qs = Analysis.objects.filter(study__in=visible_studies(self.request.user))
        if slug := self.request.query_params.get("study"):
            qs = qs.filter(study__slug=slug)
        return qs.select_related("study").order_by("-created_at")

    def perform_create(self, serializer):
        study = serializer.validated_data["study"]
        if not can_view_study(self.request.user, study):
            raise PermissionDenied("this study is not yours")
        try:
            serializer.instance = analysis_create(
                study=study,
                method=serializer.validated_data["method"],
                reject_on=serializer.validated_data["reject_on"],
                options=serializer.validated_data.get("options") or {},
                user=self.request.user,
            )
        except AnalysisError as exc:
            raise ValidationError({"options": [str(exc)]}) from None

    @extend_schema(responses=StimulusResultSerializer(many=True))
    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        """MOS per stimulus and dimension (paginated; filter with ?dimension=)."""
        analysis = self.get_object()
        qs = analysis.stimulus_results.select_related("stimulus").order_by(
            "stimulus_id", "dimension"
        )
        if dim := request.query_params.get("dimension"):
            qs = qs.filter(dimension=dim)
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(StimulusResultSerializer(page, many=True).data)

    @extend_schema(responses=RaterResultSerializer(many=True))
    @action(detail=True, methods=["get"])
    def raters(self, request, pk=None):
        """Per-rater verdicts: P, Q, bias, inconsistency, rejected and why."""
        analysis = self.get_object()
        qs = analysis.rater_results.select_related("rater").order_by("rater_id")
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(RaterResultSerializer(page, many=True).data)


@extend_schema(
    responses={
        200: OpenApiResponse(description="the file, streamed"),
        400: OpenApiResponse(description="unknown format or no finished analysis"),
    },
)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def export_download(request, slug: str, fmt: str):
    """Download a study's dataset in one of the registry's formats (streamed)."""
    study = get_object_or_404(Study, slug=slug)
    if not can_view_study(request.user, study):
        raise PermissionDenied("this study is not yours")
    try:
        analysis = analysis_from_param(study, request.query_params.get("analysis"))
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    try:
        exporter, chunks = export_stream(study, fmt, analysis=analysis)
    except ExportError as exc:
        return Response(
            {"error": "export", "detail": str(exc), "fields": {"format": str(exc)}},
            status=status.HTTP_400_BAD_REQUEST,
        )
    return streaming_download(study, exporter, chunks, analysis)


class ExportFormatSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    extension = serializers.CharField()
    needs_analysis = serializers.BooleanField()


@extend_schema(responses=ExportFormatSerializer(many=True))
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def export_formats(request):
    """The export registry: names, labels, and whether an analysis is needed."""
    return Response(
        [
            {
                "name": f.name,
                "label": f.label,
                "extension": f.extension,
                "needs_analysis": f.needs_analysis,
            }
            for f in FORMATS.values()
        ]
    )


# --- Model versions, scoring jobs, predictions, agreement ---------------------------


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
        try:
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
        except ScoringError as exc:
            field = "baseline" if "baseline" in str(exc) else "checkpoint_path"
            if "kind" in str(exc):
                field = "kind"
            if "exists already" in str(exc):
                field = "name"
            raise ValidationError({field: [str(exc)]}) from None


class ScoringJobSerializer(serializers.ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="slug", queryset=Study.objects.all())
    model_version = serializers.SlugRelatedField(
        slug_field="name", queryset=ModelVersion.objects.all()
    )
    batch_size = serializers.IntegerField(min_value=1, max_value=1024, default=16)

    class Meta:
        model = ScoringJob
        fields = [
            "id",
            "model_version",
            "study",
            "status",
            "total",
            "done",
            "batch_size",
            "force",
            "error",
            "waiting_for_broker",
            "worker_host",
            "created_at",
            "started_at",
            "finished_at",
        ]
        # A live job for the same pair is joined by scoring_job_start, not refused.
        validators = []
        read_only_fields = [
            "status",
            "total",
            "done",
            "error",
            "waiting_for_broker",
            "worker_host",
            "created_at",
            "started_at",
            "finished_at",
        ]


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
        jobs_requeue_waiting()  # the broker may be back: send what could not be sent
        qs = ScoringJob.objects.filter(study__in=visible_studies(self.request.user))
        if slug := self.request.query_params.get("study"):
            qs = qs.filter(study__slug=slug)
        return qs.select_related("study", "model_version").order_by("-created_at")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if not can_view_study(request.user, data["study"]):
            raise PermissionDenied("this study is not yours")
        try:
            job, created = scoring_job_start(
                model_version=data["model_version"],
                study=data["study"],
                force=data.get("force", False),
                batch_size=data["batch_size"],
                user=request.user,
            )
        except ScoringError as exc:
            raise ValidationError({"study": [str(exc)]}) from None
        except BrokerUnavailable as exc:
            job = ScoringJob.objects.filter(
                study=data["study"], model_version=data["model_version"]
            ).first()
            return broker_unavailable(exc, self.get_serializer(job).data if job else None)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(self.get_serializer(job).data, status=code)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = self.get_object()
        try:
            scoring_job_cancel(job=job)
        except ScoringError as exc:
            return Response(
                {"error": "not_active", "detail": str(exc), "fields": {"status": str(exc)}},
                status=status.HTTP_409_CONFLICT,
            )
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


@extend_schema(
    parameters=[
        OpenApiParameter("model_version", str, required=True),
        OpenApiParameter("analysis", int, required=False),
        OpenApiParameter("n_boot", int, required=False),
    ],
    responses={200: OpenApiResponse(description="metrics per pair, per generator and task")},
)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def agreement_view(request, slug: str):
    """Model-vs-human agreement (SRCC, KRCC, PLCC/RMSE after the logistic fit, 95% CIs)."""
    from scoring import agreement_report

    study = get_object_or_404(Study, slug=slug)
    if not can_view_study(request.user, study):
        raise PermissionDenied("this study is not yours")
    name = request.query_params.get("model_version")
    if not name:
        raise ValidationError({"model_version": ["required"]})
    version = ModelVersion.objects.filter(name=name).first()
    if version is None:
        raise ValidationError({"model_version": [f"no model version named {name!r}"]})
    try:
        n_boot = int(request.query_params.get("n_boot", 1000))
        analysis_id = request.query_params.get("analysis")
        analysis_id = int(analysis_id) if analysis_id else None
    except ValueError:
        raise ValidationError({"n_boot": ["must be an integer"]}) from None
    if not 0 <= n_boot <= 10000:
        raise ValidationError({"n_boot": ["must be between 0 and 10000"]})
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


class ExportJobSerializer(serializers.ModelSerializer):
    study = serializers.SlugRelatedField(slug_field="slug", queryset=Study.objects.all())
    format = serializers.ChoiceField(choices=list(FORMATS))
    analysis = serializers.PrimaryKeyRelatedField(
        queryset=Analysis.objects.all(), required=False, allow_null=True
    )
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = ExportJob
        fields = [
            "id",
            "study",
            "format",
            "analysis",
            "status",
            "waiting_for_broker",
            "size",
            "error",
            "created_at",
            "finished_at",
            "download_url",
        ]
        read_only_fields = [
            "status",
            "waiting_for_broker",
            "size",
            "error",
            "created_at",
            "finished_at",
            "download_url",
        ]

    def get_download_url(self, obj) -> str | None:
        if obj.status != ExportJob.Status.DONE:
            return None
        request = self.context.get("request")
        path = f"/api/v1/exports/{obj.pk}/download/"
        return request.build_absolute_uri(path) if request else path


class ExportJobViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Start an export (written by a worker), follow its status, download the file."""

    serializer_class = ExportJobSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ExportJob.objects.none()
        export_jobs_requeue_waiting()
        return (
            ExportJob.objects.filter(study__in=visible_studies(self.request.user))
            .select_related("study")
            .order_by("-created_at")
        )

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if not can_view_study(request.user, data["study"]):
            raise PermissionDenied("this study is not yours")
        try:
            job = export_job_start(
                study=data["study"],
                fmt=data["format"],
                analysis=data.get("analysis"),
                user=request.user,
            )
        except ExportError as exc:
            raise ValidationError(
                {"analysis" if "analysis" in str(exc) else "format": [str(exc)]}
            ) from None
        except BrokerUnavailable as exc:
            job = ExportJob.objects.filter(study=data["study"]).order_by("-pk").first()
            return broker_unavailable(exc, self.get_serializer(job).data if job else None)
        job.refresh_from_db()
        return Response(self.get_serializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses={
            200: OpenApiResponse(description="the exported file"),
            409: OpenApiResponse(description="not finished yet"),
        }
    )
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        job = self.get_object()
        if job.status != ExportJob.Status.DONE or not job.file:
            return Response(
                {"error": "not_ready", "detail": f"export {job.pk} is {job.status}", "fields": {}},
                status=status.HTTP_409_CONFLICT,
            )
        exporter = FORMATS[job.format]
        return FileResponse(
            job.file.open("rb"),
            as_attachment=True,
            filename=job.file.name.rsplit("/", 1)[-1],
            content_type=exporter.content_type,
        )
