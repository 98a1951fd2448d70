from django.urls import path

from annotation import rater_api, views
from studyweb.ratelimit import rate_limited

app_name = "annotation"

# The rater's JSON endpoints: (name, view). The browser page calls them under
# /s/<slug>/ (cookie); scripted clients under /api/v1/rater/<slug>/ (X-Rater-Token).
RATER_ENDPOINTS = [
    ("training", rater_api.training_submit),
    ("submit", rater_api.submit),
    ("next", rater_api.next_item),
]

urlpatterns = [
    path("s/<slug:slug>/", views.study_entry, name="study-entry"),
    path("s/<slug:slug>/consent", views.consent, name="consent"),
    path("s/<slug:slug>/instructions", views.instructions, name="instructions"),
    *[
        path(f"s/<slug:slug>/{name}", rate_limited(name)(view), name=f"rater-{name}")
        for name, view in RATER_ENDPOINTS
    ],
    *[
        path(f"api/v1/rater/<slug:slug>/{name}", rate_limited(name)(view), name=f"api-rater-{name}")
        for name, view in [
            ("start", rater_api.start),
            *RATER_ENDPOINTS,
            ("finish", rater_api.finish),
        ]
    ],
]
