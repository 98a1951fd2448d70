from django.urls import path

from scoring import views

app_name = "scoring"

urlpatterns = [
    path("studies/", views.study_list, name="study-list"),
    path("studies/<slug:slug>/", views.study_detail, name="study-detail"),
    path("studies/<slug:slug>/analyses/", views.analysis_start, name="analysis-start"),
    path("studies/<slug:slug>/export/<str:fmt>/", views.export_download, name="export"),
]
