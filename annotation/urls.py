from django.urls import path

from annotation import rater_api, views
from studyweb.ratelimit import rate_limited

app_name = "annotation"

urlpatterns = [
    path("s/<slug:slug>/", views.study_entry, name="study-entry"),
    path("s/<slug:slug>/consent", views.consent, name="consent"),
    path("s/<slug:slug>/instructions", views.instructions, name="instructions"),
    path(
        "s/<slug:slug>/training",
        rate_limited("training")(rater_api.training_submit),
        name="rater-training",
    ),
    path("s/<slug:slug>/submit", rate_limited("submit")(rater_api.submit), name="rater-submit"),
    path("s/<slug:slug>/next", rate_limited("next")(rater_api.next_item), name="rater-next"),
    # The same endpoints for scripted clients (token in the X-Rater-Token header).
    path(
        "api/v1/rater/<slug:slug>/start",
        rate_limited("start")(rater_api.start),
        name="api-rater-start",
    ),
    path(
        "api/v1/rater/<slug:slug>/next",
        rate_limited("next")(rater_api.next_item),
        name="api-rater-next",
    ),
    path(
        "api/v1/rater/<slug:slug>/submit",
        rate_limited("submit")(rater_api.submit),
        name="api-rater-submit",
    ),
    path(
        "api/v1/rater/<slug:slug>/training",
        rate_limited("training")(rater_api.training_submit),
        name="api-rater-training",
    ),
    path(
        "api/v1/rater/<slug:slug>/finish",
        rate_limited("finish")(rater_api.finish),
        name="api-rater-finish",
    ),
]
