"""The analyses and exports API: personas, token auth, and bad input."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scoring.models import Analysis
from tests.scoring.test_exports import study  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def owner(study):  # noqa: F811
    return token_client(study.owner)


def test_owner_runs_an_analysis_and_reads_results(owner, study, django_capture_on_commit_callbacks):  # noqa: F811
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.post(
            "/api/v1/analyses/", {"study": "exp", "method": "bt500"}, format="json"
        )
    assert response.status_code == 201, response.content
    analysis_id = response.json()["id"]
    detail = owner.get(f"/api/v1/analyses/{analysis_id}/").json()
    assert detail["status"] == "done" and detail["n_stimuli"] == 3
    results = owner.get(f"/api/v1/analyses/{analysis_id}/results/?dimension=overall").json()
    assert results["count"] == 3
    assert {r["filename"] for r in results["results"]} == {"a.png", "b.png", "c.png"}
    raters = owner.get(f"/api/v1/analyses/{analysis_id}/raters/").json()
    assert raters["count"] == 4 and {"P", "p"} & set(raters["results"][0])
    export = owner.get(f"/api/v1/studies/exp/export/agin-csv/?analysis={analysis_id}")
    assert export.status_code == 200
    assert b"".join(export.streaming_content).startswith(b"filename,MOS_nat")


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"study": "exp", "method": "median"}, "method"),
        ({"study": "nope", "method": "mean"}, "study"),
        ({"study": "exp", "method": "mean", "reject_on": "sometimes"}, "reject_on"),
        ({"study": "exp", "method": "mean", "options": {"ci": "wide"}}, "options"),
        ({"study": "exp", "method": "mean", "options": "x"}, "options"),
        ({"method": "mean"}, "study"),
    ],
)
def test_bad_analysis_requests_change_nothing(owner, payload, field):
    before = Analysis.objects.count()
    response = owner.post("/api/v1/analyses/", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert Analysis.objects.count() == before


def test_other_researcher_and_anonymous(study, researcher_b):  # noqa: F811
    other = token_client(researcher_b)
    response = other.post("/api/v1/analyses/", {"study": "exp", "method": "mean"}, format="json")
    missing = other.post("/api/v1/analyses/", {"study": "nope", "method": "mean"}, format="json")
    # Not yours and does not exist: the same answer (no existence oracle).
    assert response.status_code == missing.status_code == 400
    assert response.json() == missing.json()
    assert Analysis.objects.count() == 0
    mine = Analysis.objects.create(study=study, method="mean")
    assert other.get(f"/api/v1/analyses/{mine.pk}/").status_code == 404
    assert other.get("/api/v1/analyses/").json()["count"] == 0
    assert other.get("/api/v1/studies/exp/export/ratings-csv/").status_code == 404
    anonymous = APIClient()
    assert anonymous.get("/api/v1/analyses/").status_code in (401, 403)
    assert anonymous.get("/api/v1/studies/exp/export/ratings-csv/").status_code in (401, 403)


def test_export_errors(owner):
    response = owner.get("/api/v1/studies/exp/export/xlsx/")
    assert response.status_code == 400 and "unknown format" in response.json()["detail"]
    response = owner.get("/api/v1/studies/exp/export/agin-csv/")
    assert response.status_code == 400 and "no finished analysis" in response.json()["detail"]
    assert owner.get("/api/v1/studies/exp/export/agin-csv/?analysis=abc").status_code == 404
    formats = owner.get("/api/v1/exports/formats/").json()
    assert {f["name"] for f in formats} >= {"agin-csv", "ratings-csv", "json", "parquet"}


def test_schema_and_docs_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/schema/swagger/")
    assert docs.status_code == 200 and b"cdn" not in docs.content.lower()
