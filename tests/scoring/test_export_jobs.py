"""Export jobs: start, status, download; permissions and errors."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scoring.models import ExportJob
from tests.scoring.test_exports import study  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_start_follow_download(study, django_capture_on_commit_callbacks):  # noqa: F811
    owner = client_for(study.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.post(
            "/api/v1/exports/", {"study": "exp", "format": "ratings-parquet"}, format="json"
        )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    detail = owner.get(f"/api/v1/exports/{job_id}/").json()
    assert detail["status"] == "done" and detail["size"] > 0
    download = owner.get(f"/api/v1/exports/{job_id}/download/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content)[:4] == b"PAR1"


def test_errors_and_permissions(study, researcher_b):  # noqa: F811
    owner = client_for(study.owner)
    response = owner.post("/api/v1/exports/", {"study": "exp", "format": "agin-csv"}, format="json")
    assert response.status_code == 400 and "no finished analysis" in response.json()["detail"]
    response = owner.post("/api/v1/exports/", {"study": "exp", "format": "xlsx"}, format="json")
    assert response.status_code == 400 and "format" in response.json()["fields"]
    assert ExportJob.objects.count() == 0
    other = client_for(researcher_b)
    assert (
        other.post(
            "/api/v1/exports/", {"study": "exp", "format": "ratings-csv"}, format="json"
        ).status_code
        == 400  # as for a study that does not exist
    )
    job = ExportJob.objects.create(study=study, format="ratings-csv")
    assert other.get(f"/api/v1/exports/{job.pk}/").status_code == 404
    not_ready = owner.get(f"/api/v1/exports/{job.pk}/download/")
    assert not_ready.status_code == 409
    assert owner.get("/api/v1/exports/formats/").status_code == 200


def test_another_researchers_analysis_answers_as_a_missing_one(study, researcher_b):  # noqa: F811
    from scoring.models import Analysis
    from tests.factories import StudyFactory

    theirs = Analysis.objects.create(study=study, method="mean", status="done")
    mine = StudyFactory(slug="b-own", owner=researcher_b)
    client = client_for(researcher_b)
    missing = Analysis.objects.order_by("-pk").first().pk + 1000
    answers = []
    for analysis_id in (theirs.pk, missing):
        response = client.post(
            "/api/v1/exports/",
            {"study": mine.slug, "format": "agin-csv", "analysis": analysis_id},
            format="json",
        )
        assert response.status_code == 400
        body = response.json()
        answers.append(body["detail"].replace(str(analysis_id), "N"))
        assert set(body["fields"]) == {"analysis"}
    assert answers[0] == answers[1], answers
    assert not ExportJob.objects.exists()
