"""Stimulus import with MEDIA_STORAGE=s3 against a real S3 server (SeaweedFS):
the upload, the images and their removal all go through the store; the store
taken away in the middle of an import fails that job with a message saying why,
and leaves no stimulus row without its object nor an object without its row."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from annotation import stimuli as services
from annotation.models import ImportJob, Stimulus
from annotation.stimuli import StimulusError, import_job_create, stimulus_remove
from tests.annotation.test_stimuli_services import noise_png, upload, zip_of
from tests.factories import StudyFactory
from tests.s3.seaweed import http_get

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    return StudyFactory(slug="s3study", scale="continuous")


@pytest.fixture
def run_now(django_capture_on_commit_callbacks):
    def create(**kwargs) -> ImportJob:
        with django_capture_on_commit_callbacks(execute=True):
            job = import_job_create(**kwargs)
        job.refresh_from_db()
        return job

    return create


def _stimulus_keys(media) -> list[str]:
    return media.keys("stimuli/")


def test_a_zip_lands_in_the_bucket(study, s3_media, running_seaweed, run_now):
    archive = zip_of({f"img{i}.png": noise_png(i) for i in range(3)})
    job = run_now(study=study, user=study.owner, files=[upload("round.zip", archive)])
    assert job.status == ImportJob.Status.DONE, job.error
    assert job.imported == 3
    rows = {s.image.name for s in Stimulus.objects.filter(study=study)}
    assert set(_stimulus_keys(s3_media)) == rows
    # The uploaded archive went through the store and is deleted once imported.
    assert not s3_media.keys("imports/")
    assert job.archive.name == ""
    # The image's URL is presigned, expiring, on the store's origin, and serves the bytes.
    stimulus = Stimulus.objects.filter(study=study).order_by("pk").first()
    url = stimulus.image.url
    assert url.startswith(
        f"{running_seaweed.endpoint}/{s3_media.bucket}/{s3_media.prefix}/stimuli/"
    )
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url
    status, body = http_get(url)
    assert status == 200 and body == noise_png(0)
    # Unsigned, the same object is refused: the bucket is not public.
    assert http_get(url.split("?")[0])[0] in (401, 403)


def test_removal_deletes_the_object(
    study, s3_media, running_seaweed, run_now, django_capture_on_commit_callbacks
):
    run_now(study=study, user=study.owner, files=[upload("a.png", noise_png(7))])
    stimulus = Stimulus.objects.get(study=study)
    assert len(_stimulus_keys(s3_media)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        stimulus_remove(stimulus=stimulus)
    assert _stimulus_keys(s3_media) == []


def test_the_cli_imports_into_the_bucket(study, s3_media, running_seaweed, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        (folder / f"f{i}.png").write_bytes(noise_png(20 + i))
    call_command("import_stimuli", study.slug, str(folder))
    assert len(_stimulus_keys(s3_media)) == 2
    rows = {s.image.name for s in Stimulus.objects.filter(study=study)}
    assert set(_stimulus_keys(s3_media)) == rows
    assert not (tmp_path / "media").exists()  # nothing was written to MEDIA_ROOT


def test_the_store_stopped_mid_import(study, s3_media, running_seaweed, run_now, monkeypatch):
    """Two files are imported, then the store goes away: the job fails saying so,
    the two are whole (row and object), the rest has neither, and the upload stays
    named by the job (its object cannot be deleted while the store is away)."""
    archive = zip_of({f"img{i}.png": noise_png(40 + i) for i in range(6)})
    real_progress = services._Progress.__call__

    def progress(self, outcome):
        real_progress(self, outcome)
        if self.done == 2:
            running_seaweed.stop()

    monkeypatch.setattr(services._Progress, "__call__", progress)
    try:
        job = run_now(study=study, user=study.owner, files=[upload("round.zip", archive)])
        assert job.status == ImportJob.Status.FAILED
        assert job.error_code == "storage_unavailable"
        assert "AWS_S3_ENDPOINT_URL" in job.error and "storing img2.png" in job.error
        assert job.done == 2
        assert Stimulus.objects.filter(study=study).count() == 2
        assert job.archive.name.startswith("imports/")
    finally:
        running_seaweed.start()
    rows = {s.image.name for s in Stimulus.objects.filter(study=study)}
    assert set(_stimulus_keys(s3_media)) == rows
    assert s3_media.keys() == sorted([*rows, job.archive.name])


def test_an_upload_refused_while_the_store_is_away(study, s3_media, running_seaweed):
    running_seaweed.stop()
    try:
        with pytest.raises(StimulusError) as caught:
            import_job_create(study=study, user=study.owner, files=[upload("a.png", noise_png(9))])
        assert caught.value.code == "storage_unavailable"
        assert "AWS_S3_ENDPOINT_URL" in str(caught.value)
        assert not ImportJob.objects.filter(study=study).exists()
    finally:
        running_seaweed.start()


def test_the_cli_says_the_store_is_away(study, s3_media, running_seaweed, tmp_path):
    (tmp_path / "x.png").write_bytes(noise_png(77))
    running_seaweed.stop()
    try:
        with pytest.raises(
            CommandError, match="import stopped: storing x.png.*AWS_S3_ENDPOINT_URL"
        ):
            call_command("import_stimuli", study.slug, str(tmp_path))
        assert not Stimulus.objects.filter(study=study).exists()
    finally:
        running_seaweed.start()


def test_the_apis_upload_answers_503_while_the_store_is_away(study, s3_media, running_seaweed):
    """The API's synchronous upload (no ?background=1): a JSON 503 that names no host,
    nothing written (the store's endpoint goes to the log)."""
    import io

    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=study.owner).key}")
    file = io.BytesIO(noise_png(31))
    file.name = "a.png"
    running_seaweed.stop()
    try:
        answer = client.post(
            f"/api/v1/studies/{study.slug}/stimuli/", {"file": file}, format="multipart"
        )
    finally:
        running_seaweed.start()
    assert answer.status_code == 503, answer.content[:500]
    body = answer.json()
    assert body["error"] == "storage_unavailable" and answer["Retry-After"] == "10"
    assert "127.0.0.1" not in answer.content.decode()
    assert not Stimulus.objects.filter(study=study).exists()
