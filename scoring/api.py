"""REST API of the scoring side: analyses and their results, exports."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from annotation.models import Study
from annotation.permissions import can_view_study, visible_studies
from scoring import mos
from scoring.exports import FORMATS, ExportError, export_stream
from scoring.models import Analysis, RaterResult, StimulusResult
from scoring.services import AnalysisError, analysis_create


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
    analysis = None
    if request.query_params.get("analysis"):
        try:
            analysis = Analysis.objects.get(pk=int(request.query_params["analysis"]), study=study)
        except (ValueError, Analysis.DoesNotExist):
            raise NotFound("no such analysis of this study") from None
    try:
        exporter, chunks = export_stream(study, fmt, analysis=analysis)
    except ExportError as exc:
        return Response(
            {"error": "export", "detail": str(exc), "fields": {"format": str(exc)}},
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = StreamingHttpResponse(chunks, content_type=exporter.content_type)
    response["Content-Disposition"] = (
        f'attachment; filename="{study.slug}-{exporter.name}.{exporter.extension}"'
    )
    return response


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
