"""REST API of analyses: run one (a job on the ``default`` queue), read its results."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import IsAuthenticated

from annotation import protocol
from annotation.api import STUDY_FILTER, VisibleStudyField, choice_param
from annotation.permissions import VIEW_ONLY, can_edit_study, can_view_study, visible_studies
from scoring.analyses.services import analysis_create
from scoring.models import Analysis, RaterResult, StimulusResult
from scoring.numerics import mos
from studyweb.jobs import JOB_STATE_FIELDS

# An analysis's results are per dimension of the protocol (?dimension= filters them).
DIMENSION_KEYS = [d.key for d in protocol.DIMENSIONS]


class AnalysisSerializer(serializers.ModelSerializer):
    study = VisibleStudyField()
    method = serializers.ChoiceField(choices=list(mos.REGISTRY))
    reject_on = serializers.ChoiceField(choices=["overall", "per_dimension"], default="overall")
    options = serializers.DictField(required=False, default=dict)

    class Meta:
        model = Analysis
        fields = [
            "id",
            "study",
            "method",
            "method_version",
            "reject_on",
            "options",
            *JOB_STATE_FIELDS,
            "n_ratings",
            "n_raters",
            "n_stimuli",
            "reliability",
        ]
        read_only_fields = [
            *JOB_STATE_FIELDS,
            "method_version",
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


@extend_schema_view(list=extend_schema(parameters=[STUDY_FILTER]))
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
        if not can_edit_study(self.request.user, study):
            # It becomes the study's shown results: an owner's or an editor's call.
            raise PermissionDenied(VIEW_ONLY)
        serializer.instance = analysis_create(
            study=study,
            method=serializer.validated_data["method"],
            reject_on=serializer.validated_data["reject_on"],
            options=serializer.validated_data.get("options") or {},
            user=self.request.user,
        )

    @extend_schema(
        responses=StimulusResultSerializer(many=True),
        parameters=[OpenApiParameter("dimension", str, enum=DIMENSION_KEYS)],
    )
    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        """MOS per stimulus and dimension (paginated; filter with ?dimension=)."""
        analysis = self.get_object()
        qs = analysis.stimulus_results.select_related("stimulus").order_by(
            "stimulus_id", "dimension"
        )
        if dim := choice_param(request, "dimension", DIMENSION_KEYS):
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
