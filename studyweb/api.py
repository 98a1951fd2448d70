"""The REST API under /api/v1/ and its OpenAPI schema."""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.utils import extend_schema, extend_schema_view
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)
from rest_framework.routers import DefaultRouter

from annotation import api as annotation_api
from scoring.analyses import api as analyses_api
from scoring.exports import api as exports_api
from scoring.model_scoring import api as model_scoring_api

router = DefaultRouter()
router.register("studies", annotation_api.StudyViewSet, basename="study")
router.register(
    r"studies/(?P<study_slug>[-\w]+)/stimuli", annotation_api.StimulusViewSet, basename="stimulus"
)
router.register("analyses", analyses_api.AnalysisViewSet, basename="analysis")
router.register("model-versions", model_scoring_api.ModelVersionViewSet, basename="model-version")
router.register("scoring-jobs", model_scoring_api.ScoringJobViewSet, basename="scoring-job")
router.register("predictions", model_scoring_api.PredictionViewSet, basename="prediction")
router.register("exports", exports_api.ExportJobViewSet, basename="export")


@extend_schema_view(get=extend_schema(exclude=True))
class SchemaView(SpectacularAPIView):
    """The schema itself, left out of the schema: it is an OpenAPI document
    (application/vnd.oai.openapi), not one of the API's JSON resources."""


urlpatterns = [
    # Before the router: "formats" is not an export job id.
    path("v1/exports/formats/", exports_api.export_formats, name="export-formats"),
    path("v1/", include(router.urls)),
    path(
        "v1/studies/<slug:slug>/agreement/", model_scoring_api.agreement_view, name="api-agreement"
    ),
    path(
        "v1/studies/<slug:slug>/export/<str:fmt>/", exports_api.export_download, name="api-export"
    ),
    path(
        "v1/studies/<slug:slug>/payment-files/",
        exports_api.payment_files,
        name="api-payment-files",
    ),
    path(
        "v1/studies/<slug:slug>/payment-files/<int:export_id>/download/",
        exports_api.payment_file_download,
        name="api-payment-file-download",
    ),
    path("schema/", SchemaView.as_view(), name="schema"),
    path("schema/swagger/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger"),
    path("schema/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
]
