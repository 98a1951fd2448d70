from django.urls import path

from scoring.workspace import pilot, raters, sharing, stimuli, views

app_name = "scoring"

urlpatterns = [
    path("studies/", views.study_list, name="study-list"),
    # Before the study page: "new" is not a study's slug (the form refuses it).
    path("studies/new/", views.study_create_page, name="study-create"),
    path("studies/<slug:slug>/", views.study_detail, name="study-detail"),
    path("studies/<slug:slug>/edit/", views.study_edit, name="study-edit"),
    path("studies/<slug:slug>/clone/", views.study_clone, name="study-clone"),
    path("studies/<slug:slug>/status/", views.study_status, name="study-status"),
    path("studies/<slug:slug>/delete/", views.study_delete_page, name="study-delete"),
    path("studies/<slug:slug>/pilot/", pilot.study_pilot, name="study-pilot"),
    path("studies/<slug:slug>/sharing/", sharing.study_sharing, name="study-sharing"),
    path(
        "studies/<slug:slug>/sharing/<int:share_id>/remove/",
        sharing.study_unshare_page,
        name="study-unshare",
    ),
    path("studies/<slug:slug>/stimuli/", stimuli.stimuli_gallery, name="stimuli"),
    path("studies/<slug:slug>/stimuli/upload/", stimuli.stimuli_upload, name="stimuli-upload"),
    path(
        "studies/<slug:slug>/stimuli/<int:stimulus_id>/role/",
        stimuli.stimulus_role,
        name="stimulus-role",
    ),
    path(
        "studies/<slug:slug>/stimuli/<int:stimulus_id>/remove/",
        stimuli.stimulus_remove_page,
        name="stimulus-remove",
    ),
    path("studies/<slug:slug>/imports/<int:job_id>/", stimuli.import_job_page, name="import-job"),
    path(
        "studies/<slug:slug>/imports/<int:job_id>.json",
        stimuli.import_status,
        name="import-status",
    ),
    path("studies/<slug:slug>/raters/", raters.rater_list, name="raters"),
    path(
        "studies/<slug:slug>/raters/approve-completed/",
        raters.raters_approve_all,
        name="raters-approve-completed",
    ),
    path("studies/<slug:slug>/raters/<int:rater_id>/", raters.rater_detail, name="rater-detail"),
    path(
        "studies/<slug:slug>/raters/<int:rater_id>/decide/",
        raters.rater_decide,
        name="rater-decide",
    ),
    path("studies/<slug:slug>/payments/", raters.payment_export_page, name="payment-export"),
    path(
        "studies/<slug:slug>/payments/<int:export_id>/download/",
        raters.payment_export_download,
        name="payment-download",
    ),
    path("studies/<slug:slug>/analyses/", views.analysis_start, name="analysis-start"),
    path("studies/<slug:slug>/export/<str:fmt>/", views.export_download, name="export"),
    path("studies/<slug:slug>/agreement/", views.agreement_dashboard, name="agreement"),
    path(
        "studies/<slug:slug>/agreement/<slug:version>.csv",
        views.agreement_csv,
        name="agreement-csv",
    ),
    path("studies/<slug:slug>/jobs/", views.scoring_job_create, name="job-create"),
    path(
        "studies/<slug:slug>/jobs/<int:job_id>/cancel/", views.scoring_job_stop, name="job-cancel"
    ),
    path("studies/<slug:slug>/jobs.json", views.jobs_json, name="jobs-json"),
    path(
        "studies/<slug:slug>/predictions/<slug:version>.csv",
        views.predictions_csv,
        name="predictions-csv",
    ),
]
