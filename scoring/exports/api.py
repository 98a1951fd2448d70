"""REST API of exports: the format registry, direct streamed downloads, export jobs."""

from __future__ import annotations

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
from annotation.permissions import can_view_study, visible_studies, visible_study_or_404
from scoring.exports.formats import FORMATS, export_stream
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
