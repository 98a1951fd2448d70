"""REST API of exports: the format registry, direct streamed downloads, export jobs,
payment files."""

from __future__ import annotations

from django.db.models import Count
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from annotation.api import STUDY_FILTER, VisibleStudyField
from annotation.models import PaymentExport
from annotation.payments import payment_export_verdicts, payment_file_response
from annotation.permissions import (
    VIEW_ONLY,
    can_edit_study,
    can_view_study,
    visible_studies,
    visible_study_or_404,
)
from scoring.exports.formats import FORMATS, export_stream
from scoring.exports.payments import bonus_export_create, bonus_rule_parse
from scoring.exports.services import (
    analysis_from_param,
    export_file_response,
    export_job_start,
    streaming_download,
)
from scoring.models import Analysis, ExportJob
from studyweb.jobs import JOB_STATE_FIELDS


@extend_schema(
    parameters=[
        OpenApiParameter(
            "fmt", str, OpenApiParameter.PATH, enum=sorted(FORMATS), description="/exports/formats/"
        )
    ],
    responses={
        200: OpenApiResponse(description="the file, streamed"),
        400: OpenApiResponse(description="unknown format or no finished analysis"),
    },
)
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def export_download(request, slug: str, fmt: str):
    """Download a study's dataset in one of the registry's formats (streamed)."""
    study = visible_study_or_404(request.user, slug)
    try:
        analysis = analysis_from_param(study, request.query_params.get("analysis"))
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    exporter, chunks = export_stream(study, fmt, analysis=analysis)
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


class ExportJobSerializer(serializers.ModelSerializer):
    study = VisibleStudyField()
    format = serializers.ChoiceField(choices=list(FORMATS))
    analysis = serializers.PrimaryKeyRelatedField(
        queryset=Analysis.objects.all(),
        required=False,
        allow_null=True,
        # DRF's "Invalid pk ... does not exist" echoes the id; one answer for every id.
        error_messages={"does_not_exist": "no such analysis", "incorrect_type": "no such analysis"},
    )
    download_url = serializers.SerializerMethodField()

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        if request is not None:
            # Only analyses of studies the caller may see: another researcher's analysis
            # id answers exactly as a missing one (no existence oracle).
            fields["analysis"].queryset = Analysis.objects.filter(
                study__in=visible_studies(request.user)
            )
        return fields

    class Meta:
        model = ExportJob
        fields = [
            "id",
            "study",
            "format",
            "analysis",
            *JOB_STATE_FIELDS,
            "size",
            "download_url",
        ]
        read_only_fields = [*JOB_STATE_FIELDS, "size", "download_url"]

    def get_download_url(self, obj) -> str | None:
        if obj.status != ExportJob.Status.DONE:
            return None
        request = self.context.get("request")
        path = f"/api/v1/exports/{obj.pk}/download/"
        return request.build_absolute_uri(path) if request else path


@extend_schema_view(list=extend_schema(parameters=[STUDY_FILTER]))
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
        qs = ExportJob.objects.filter(study__in=visible_studies(self.request.user))
        if slug := self.request.query_params.get("study"):
            qs = qs.filter(study__slug=slug)
        return qs.select_related("study").order_by("-created_at")

    @extend_schema(
        responses={202: OpenApiResponse(ExportJobSerializer, description="queued; follow it")}
    )
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if not can_view_study(request.user, data["study"]):
            raise PermissionDenied("this study is not yours")
        job = export_job_start(
            study=data["study"],
            fmt=data["format"],
            analysis=data.get("analysis"),
            user=request.user,
        )
        job.refresh_from_db()
        return Response(self.get_serializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses={
            200: OpenApiResponse(description="the exported file"),
            302: OpenApiResponse(description="the file's presigned URL in the object store"),
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
        return export_file_response(job, FORMATS[job.format])


# --- Payment files (the raters page's "payment files", for scripts) -------------------


class PaymentFileSerializer(serializers.ModelSerializer):
    lines = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = PaymentExport
        fields = [
            "id",
            "platform",
            "kind",
            "rule",
            "lines",
            "left_out",
            "created_by_name",
            "created_at",
            "download_url",
        ]

    def get_lines(self, obj) -> int:
        # The list annotates the count (one query); a single file counts its own.
        n = getattr(obj, "n_lines", None)
        return obj.lines.count() if n is None else n

    def get_download_url(self, obj) -> str:
        request = self.context.get("request")
        path = f"/api/v1/studies/{obj.study.slug}/payment-files/{obj.pk}/download/"
        return request.build_absolute_uri(path) if request else path


class PaymentFileInSerializer(serializers.Serializer):
    """Approvals or rejections need platform and kind only; a bonus also names its
    rule (the same fields as the raters page's form)."""

    platform = serializers.ChoiceField(choices=PaymentExport.platform.field.choices)
    kind = serializers.ChoiceField(choices=PaymentExport.Kind.values)
    analysis = serializers.IntegerField(required=False)
    min_corr = serializers.FloatField(required=False)
    top_percent = serializers.FloatField(required=False)
    amount = serializers.CharField(required=False, max_length=20)
    currency = serializers.CharField(required=False, max_length=3)
    reason = serializers.CharField(required=False, max_length=500)


@extend_schema(
    methods=["GET"],
    responses=PaymentFileSerializer(many=True),
    description="The study's payment files, newest first.",
)
@extend_schema(
    methods=["POST"],
    request=PaymentFileInSerializer,
    responses={201: PaymentFileSerializer},
    description="Make a payment file: the raters not yet sent to the platform as "
    "approved / rejected, or a bonus by its rule. Owners and editors.",
)
@api_view(["GET", "POST"])
@permission_classes([IsAuthenticated])
def payment_files(request, slug: str):
    study = visible_study_or_404(request.user, slug)
    if request.method == "GET":
        rows = (
            study.payment_exports.select_related("study")
            .annotate(n_lines=Count("lines"))
            .order_by("-created_at")
        )
        return Response(PaymentFileSerializer(rows, many=True, context={"request": request}).data)
    if not can_edit_study(request.user, study):
        raise PermissionDenied(VIEW_ONLY)
    body = PaymentFileInSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    data = body.validated_data
    if data["kind"] == PaymentExport.Kind.BONUS:
        rule = bonus_rule_parse(study, data)
        export = bonus_export_create(
            study=study, platform=data["platform"], rule=rule, user=request.user
        )
    else:
        export = payment_export_verdicts(
            study=study, platform=data["platform"], kind=data["kind"], user=request.user
        )
    return Response(
        PaymentFileSerializer(export, context={"request": request}).data,
        status=status.HTTP_201_CREATED,
    )


@extend_schema(responses={200: OpenApiResponse(description="the platform's CSV")})
@api_view(["GET"])
@permission_classes([IsAuthenticated])
def payment_file_download(request, slug: str, export_id: int):
    study = visible_study_or_404(request.user, slug)
    export = study.payment_exports.filter(pk=export_id).first()
    if export is None:
        raise NotFound("no such payment file")
    return payment_file_response(export)
