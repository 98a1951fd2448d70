from django.urls import path

from annotation import views

app_name = "annotation"

urlpatterns = [
    path("s/<slug:slug>/", views.study_entry, name="study-entry"),
]
