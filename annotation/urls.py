from django.urls import path
from django.views.decorators.cache import cache_control
from django.views.i18n import JavaScriptCatalog

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

# The rate page's words in the rater's language (studyweb.languages picks it from the
# path's study, like the page's): rate.js reads them with gettext(). The page asks for
# it with its language in the query (?l=), so a cached copy is never another language's.
_catalog = cache_control(max_age=3600, private=True)(JavaScriptCatalog.as_view())

urlpatterns = [
    path("s/<slug:slug>/", views.study_entry, name="study-entry"),
    path("s/<slug:slug>/i18n.js", _catalog, name="rater-i18n"),
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
