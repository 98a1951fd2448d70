"""Exports and rater images with MEDIA_STORAGE=s3 against a real S3 server
(SeaweedFS): the export is written to the store and its download redirects to a
presigned URL (the web process never holds the file); a store that is away fails
the export job saying so; the rater pages' CSP lets images come from exactly the
store's origin."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scoring.exports.services import export_job_run
from scoring.models import ExportJob
from tests.s3.seaweed import http_get
from tests.scoring.test_exports import study  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def s3_study(s3_media, study):  # noqa: F811
    return study


def test_export_download_redirects_to_a_presigned_url(
    s3_study, s3_media, django_capture_on_commit_callbacks
):
    owner = client_for(s3_study.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.post(
            "/api/v1/exports/", {"study": "exp", "format": "ratings-csv"}, format="json"
        )
    job = ExportJob.objects.get(pk=response.json()["id"])
    assert job.status == "done", job.error
    assert s3_media.keys("exports/") == [job.file.name]
    download = owner.get(f"/api/v1/exports/{job.pk}/download/")
    assert download.status_code == 302
    url = download["Location"]
    assert url.startswith(f"{s3_media.server.endpoint}/{s3_media.bucket}/{s3_media.prefix}/")
    assert "X-Amz-Signature=" in url and "response-content-disposition=attachment" in url
    status, body = http_get(url)
    assert status == 200
    assert body == job.file.storage.open(job.file.name).read()
    assert len(body) == job.size


def test_export_with_the_store_away_fails_the_job(s3_study, s3_media):
    job = ExportJob.objects.create(study=s3_study, format="ratings-csv")
    s3_media.server.stop()
    try:
        export_job_run(job_id=job.pk)
    finally:
        s3_media.server.start()
    job.refresh_from_db()
    assert job.status == "failed" and job.error_code == "storage_unavailable"
    assert "storing the export" in job.error and "AWS_S3_ENDPOINT_URL" in job.error
    assert not job.file and s3_media.keys("exports/") == []


def test_rater_pages_allow_images_from_exactly_the_store(client, s3_media, settings):
    policy = client.get("/s/no-such-study/")["Content-Security-Policy"]
    img_src = next(d for d in policy.split("; ") if d.startswith("img-src "))
    assert img_src.split()[1:] == ["'self'", "data:", "blob:", s3_media.server.endpoint]
    settings.MEDIA_STORAGE, settings.MEDIA_ORIGIN = "filesystem", None
    policy = client.get("/s/no-such-study/")["Content-Security-Policy"]
    assert "img-src 'self' data: blob:;" in policy
