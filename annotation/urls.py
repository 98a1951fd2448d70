from django.urls import path

from annotation import rater_api, views

app_name = "annotation"

urlpatterns = [
    path("s/<slug:slug>/", views.study_entry, name="study-entry"),
    path("s/<slug:slug>/consent", views.consent, name="consent"),
    path("s/<slug:slug>/instructions", views.instructions, name="instructions"),
    path("s/<slug:slug>/training", rater_api.training_submit, name="rater-training"),
    path("s/<slug:slug>/submit", rater_api.submit, name="rater-submit"),
    path("s/<slug:slug>/next", rater_api.next_item, name="rater-next"),
]
