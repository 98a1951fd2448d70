"""annotation.stimuli: background imports (ImportJob), role changes and removal."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from annotation import importing
from annotation import stimuli as services
from annotation.models import ImportJob, Stimulus
from annotation.stimuli import (
    StimulusError,
    import_job_create,
    import_job_run,
    stimulus_remove,
    stimulus_set_role,
)
from annotation.tasks import run_import
from studyweb import jobs
from tests.factories import (
    ClaimFactory,
    RaterFactory,
    RatingFactory,
    StimulusFactory,
    StudyFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def noise_png(seed: int, size=(48, 40)) -> bytes:
    """A picture whose compressed data is long enough to cut in the middle."""
    rng = random.Random(seed)
    img = Image.new("RGB", size)
    img.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(size[0] * size[1])])
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def upload(name: str, data: bytes, content_type="application/octet-stream"):
    return SimpleUploadedFile(name, data, content_type=content_type)


GOOD_CSV = b"filename,generator,task,strength\na.png,painter-a,t2i,0.5\nb.png,painter-b,t2i,2\n"


def stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def study():
    return StudyFactory(slug="stim", scale="continuous")


@pytest.fixture
def owner(study):
    return study.owner


@pytest.fixture
def run_now(django_capture_on_commit_callbacks):
    """Create a job and let its on-commit send run it (in-process: no broker in tests)."""

    def create(**kwargs) -> ImportJob:
        with django_capture_on_commit_callbacks(execute=True):
            job = import_job_create(**kwargs)
        job.refresh_from_db()
        return job

    return create


# --- Import jobs --------------------------------------------------------------------


def test_a_zip_with_a_broken_file_imports_the_rest_and_reports_it(study, owner, run_now, settings):
    broken = noise_png(3)
    archive = zip_of(
        {
            "a.png": noise_png(1),
            "b.png": noise_png(2),
            "sub/broken.png": broken[: len(broken) // 2],
            "__MACOSX/._a.png": b"litter",
        }
    )
    job = run_now(
        study=study,
        user=owner,
        files=[upload("round1.zip", archive)],
        metadata=upload("meta.csv", GOOD_CSV),
    )
    assert job.status == ImportJob.Status.DONE
    assert (job.total, job.done) == (3, 3)  # the litter is neither counted nor reported
    assert (job.imported, job.skipped, job.rejected) == (2, 0, 1)
    by_name = {row["name"]: row for row in job.report}
    assert by_name["a.png"]["status"] == "imported"
    assert by_name["sub/broken.png"]["status"] == "rejected"
    assert "truncated or corrupt" in by_name["sub/broken.png"]["reason"]
    assert job.archive_name == "round1.zip" and job.created_by == owner
    a = Stimulus.objects.get(study=study, original_name="a.png")
    assert (a.generator, a.task, a.metadata) == ("painter-a", "t2i", {"strength": 0.5})
    assert study.stimuli.count() == 2
    # The upload is deleted once imported: only the two stimuli's images stay.
    assert not job.archive and not job.metadata
    assert all(name.startswith("stimuli/") for name in stored_files(Path(settings.MEDIA_ROOT)))


def test_a_file_already_in_the_study_is_skipped(study, owner, run_now):
    StimulusFactory(study=study, original_name="old.png", sha256=_sha(noise_png(1)))
    job = run_now(
        study=study, user=owner, files=[upload("x.zip", zip_of({"again.png": noise_png(1)}))]
    )
    assert (job.imported, job.skipped, job.rejected) == (0, 1, 0)
    assert job.report == [
        {"name": "again.png", "status": "skipped", "reason": "duplicate of old.png (same sha256)"}
    ]


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_a_metadata_line_without_a_file_is_reported_as_a_warning(study, owner, run_now):
    job = run_now(
        study=study,
        user=owner,
        files=[upload("a.png", noise_png(1))],
        metadata=upload("m.csv", GOOD_CSV),
    )
    assert job.imported == 1
    warnings = [row for row in job.report if row["status"] == "warning"]
    assert len(warnings) == 1 and "'b.png'" in warnings[0]["reason"]


@pytest.mark.parametrize(
    ("csv", "where"),
    [
        (b"filename,expected_low,expected_high\na.png,10,20\nb.png,abc,30\n", "line 3"),
        (b"name,generator\na.png,x,y\n", "line 2"),
        (b"generator\nx\n", "line 1, column 'filename'"),
        (b"\xff\xfe\x00bad", "line 1"),
    ],
)
def test_a_broken_csv_is_refused_on_its_field_before_anything_is_stored(
    study, owner, run_now, settings, csv, where
):
    with pytest.raises(StimulusError) as refused:
        run_now(
            study=study,
            user=owner,
            files=[upload("x.zip", zip_of({"a.png": noise_png(1)}))],
            metadata=upload("m.csv", csv),
        )
    assert refused.value.field == "metadata"
    assert where in refused.value.message
    assert not ImportJob.objects.exists()
    assert not study.stimuli.exists()
    assert stored_files(Path(settings.MEDIA_ROOT)) == []


@pytest.mark.parametrize(
    ("files", "role", "metadata", "field", "words"),
    [
        ([], "test", None, "files", "choose a zip archive"),
        ([("x.zip", b"PK\x03\x04 not really")], "test", None, "files", "broken or unreadable"),
        ([("x.zip", zip_of({}))], "test", None, "files", "holds no files"),
        ([("x.zip", zip_of({"a.png": b"1"})), ("b.png", b"2")], "test", None, "files", "not both"),
        ([("a.png", b"1")], "gold", None, "default_role", "expected_low"),
        ([("a.png", b"1")], "judge", None, "default_role", "not a role"),
        ([("big.png", b"x" * 3000)], "test", None, "files", "too large"),
        ([("a.png", b"1")], "test", ("m.csv", b"x" * 3000), "metadata", "too large"),
    ],
)
def test_bad_uploads_are_refused_on_their_field_and_store_nothing(
    study, owner, settings, files, role, metadata, field, words
):
    settings.MAX_IMAGE_BYTES = 2048
    with pytest.raises(StimulusError) as refused:
        import_job_create(
            study=study,
            user=owner,
            files=[upload(n, d) for n, d in files],
            metadata=upload(*metadata) if metadata else None,
            default_role=role,
        )
    assert refused.value.field == field
    assert words in refused.value.message
    assert not ImportJob.objects.exists()
    assert stored_files(Path(settings.MEDIA_ROOT)) == []


def test_an_archive_over_the_limits_is_refused(study, owner, settings):
    settings.MAX_ARCHIVE_MEMBERS = 2
    archive = zip_of({f"{i}.png": noise_png(i) for i in range(3)})
    with pytest.raises(StimulusError, match="3 entries") as refused:
        import_job_create(study=study, user=owner, files=[upload("x.zip", archive)])
    assert refused.value.field == "files"
    settings.MAX_ARCHIVE_MEMBERS = 100
    settings.MAX_ARCHIVE_BYTES = 2048
    with pytest.raises(StimulusError, match="too large|expands to"):
        import_job_create(study=study, user=owner, files=[upload("x.zip", archive)])
    assert not ImportJob.objects.exists()


def test_many_files_are_packed_into_one_zip(study, owner, settings):
    files = [
        upload("a.png", noise_png(1)),
        upload("b.png", noise_png(2)),
        upload("a.png", noise_png(3)),  # the same name from another folder
        upload("notes.txt", b"not an image"),
    ]
    job = import_job_create(study=study, user=owner, files=files, enqueue=False)
    assert job.status == ImportJob.Status.QUEUED and job.waiting_for_broker is False
    assert (job.total, job.archive_name) == (4, "4 files")
    with zipfile.ZipFile(job.archive.path) as archive:
        assert archive.namelist() == ["a.png", "b.png", "a~2.png", "notes.txt"]
        assert archive.read("b.png") == noise_png(2)
    job = import_job_run(job_id=job.pk)
    assert (job.imported, job.skipped, job.rejected) == (3, 0, 1)
    assert [r["status"] for r in job.report] == ["imported", "imported", "imported", "rejected"]
    assert "not an image" in job.report[3]["reason"]


def test_progress_is_written_while_the_files_are_imported(study, owner, monkeypatch):
    monkeypatch.setattr(services, "PROGRESS_EVERY", 0)
    job = import_job_create(
        study=study,
        user=owner,
        files=[upload("x.zip", zip_of({f"{i}.png": noise_png(i) for i in range(4)}))],
        enqueue=False,
    )
    seen = []
    real = importing.stimulus_import_bytes

    def spy(*args, **kwargs):
        row = ImportJob.objects.get(pk=job.pk)
        seen.append((row.status, row.done, row.imported))
        return real(*args, **kwargs)

    monkeypatch.setattr(importing, "stimulus_import_bytes", spy)
    job = import_job_run(job_id=job.pk)
    assert seen == [("running", i, i) for i in range(4)]
    assert (job.status, job.done, job.total, job.imported) == ("done", 4, 4, 4)
    # Run again (a redelivered task): a finished job is left as it is.
    assert import_job_run(job_id=job.pk).report == job.report
    assert study.stimuli.count() == 4


def test_a_cancelled_import_stops_and_keeps_what_it_imported(study, owner, monkeypatch):
    monkeypatch.setattr(services, "PROGRESS_EVERY", 0)
    job = import_job_create(
        study=study,
        user=owner,
        files=[upload("x.zip", zip_of({f"{i}.png": noise_png(i) for i in range(5)}))],
        enqueue=False,
    )
    real = importing.stimulus_import_bytes
    calls = []

    def cancel_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            jobs.job_cancel(ImportJob.objects.get(pk=job.pk))
        return real(*args, **kwargs)

    monkeypatch.setattr(importing, "stimulus_import_bytes", cancel_at_the_second)
    job = import_job_run(job_id=job.pk)
    assert job.status == ImportJob.Status.CANCELLED
    assert len(calls) == 2 and study.stimuli.count() == 2
    assert not job.archive


def test_a_csv_broken_after_the_upload_fails_the_job_on_its_field(study, owner):
    job = import_job_create(
        study=study,
        user=owner,
        files=[upload("a.png", noise_png(1))],
        metadata=upload("m.csv", GOOD_CSV),
        enqueue=False,
    )
    Path(job.metadata.path).write_bytes(b"generator\nx\n")
    assert run_import(job.pk) == "failed"
    job.refresh_from_db()
    assert (job.status, job.error_code, job.error_field) == ("failed", "metadata", "metadata")
    assert "filename" in job.error
    assert not study.stimuli.exists()


def test_the_task_runs_the_job(study, owner):
    job = import_job_create(
        study=study, user=owner, files=[upload("a.png", noise_png(1))], enqueue=False
    )
    assert run_import(job.pk) == "done"
    assert study.stimuli.get().original_name == "a.png"


# --- The API's background upload ----------------------------------------------------


def test_the_api_uploads_in_the_background_on_request(
    study, owner, django_capture_on_commit_callbacks
):
    client = APIClient()
    client.force_authenticate(owner)
    url = f"/api/v1/studies/{study.slug}/stimuli/?background=1"
    archive = upload("x.zip", zip_of({"a.png": noise_png(1), "bad.png": b"nope"}))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"file": archive, "role": "test"}, format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["total"] == 2 and body["url"].endswith(f"/stimuli/imports/{body['id']}/")
    followed = client.get(body["url"]).json()
    assert followed["status"] == "done" and followed["finished"] is True
    assert [(r["name"], r["status"]) for r in followed["report"]] == [
        ("a.png", "imported"),
        ("bad.png", "rejected"),
    ]
    refused = client.post(
        url,
        {"file": upload("a.png", noise_png(2)), "metadata": upload("m.csv", b"generator\n")},
        format="multipart",
    )
    assert refused.status_code == 400
    assert "line 1" in refused.json()["fields"]["metadata"]
    assert ImportJob.objects.count() == 1
    stranger = APIClient()
    stranger.force_authenticate(UserFactory(username="stranger"))
    assert stranger.get(body["url"]).status_code == 404


# --- Roles --------------------------------------------------------------------------


def test_role_changes_of_unrated_stimuli(study):
    plain = StimulusFactory(study=study)
    with_range = StimulusFactory(study=study, expected_low=20, expected_high=40)
    with pytest.raises(StimulusError, match="expected_low and expected_high") as refused:
        stimulus_set_role(stimulus=plain, role="gold")
    assert refused.value.field == "role" and refused.value.code == "gold_needs_range"
    plain.refresh_from_db()
    assert plain.role == "test"
    stimulus_set_role(stimulus=plain, role="training")
    stimulus_set_role(stimulus=with_range, role="gold")
    assert Stimulus.objects.get(pk=plain.pk).role == "training"
    assert Stimulus.objects.get(pk=with_range.pk).role == "gold"
    stimulus_set_role(stimulus=with_range, role="test")
    assert Stimulus.objects.get(pk=with_range.pk).role == "test"
    with pytest.raises(StimulusError, match="not a role"):
        stimulus_set_role(stimulus=plain, role="judge")


@pytest.mark.parametrize(("start", "target"), [("test", "gold"), ("gold", "test")])
def test_a_rated_stimulus_keeps_its_role(study, start, target):
    stimulus = StimulusFactory(study=study, role=start, expected_low=10, expected_high=60)
    RatingFactory(stimulus=stimulus)
    RatingFactory(stimulus=stimulus)
    with pytest.raises(StimulusError, match="2 rating") as refused:
        stimulus_set_role(stimulus=stimulus, role=target)
    assert refused.value.status == 409 and refused.value.code == "rated"
    assert Stimulus.objects.get(pk=stimulus.pk).role == start


def test_pilot_ratings_do_not_fix_the_role(study):
    stimulus = StimulusFactory(study=study, expected_low=10, expected_high=60)
    RatingFactory(stimulus=stimulus, is_pilot=True)
    stimulus_set_role(stimulus=stimulus, role="gold")
    assert Stimulus.objects.get(pk=stimulus.pk).role == "gold"


# --- Removal ------------------------------------------------------------------------


def test_an_unrated_stimulus_is_removed_with_its_image(study, django_capture_on_commit_callbacks):
    stimulus = StimulusFactory(study=study)
    path = Path(stimulus.image.path)
    assert path.exists()
    with django_capture_on_commit_callbacks(execute=True):
        stimulus_remove(stimulus=stimulus)
    assert not Stimulus.objects.filter(pk=stimulus.pk).exists()
    assert not path.exists()


def test_a_rated_stimulus_is_not_removed_pilot_ratings_included(study):
    rated = StimulusFactory(study=study)
    RatingFactory(stimulus=rated)
    RatingFactory(stimulus=rated, is_pilot=True)
    with pytest.raises(StimulusError, match=r"2 rating\(s\) \(1 of them pilot\)") as refused:
        stimulus_remove(stimulus=rated)
    assert refused.value.status == 409
    piloted = StimulusFactory(study=study)
    RatingFactory(stimulus=piloted, is_pilot=True)
    with pytest.raises(StimulusError, match="1 of them pilot"):
        stimulus_remove(stimulus=piloted)
    assert study.stimuli.count() == 2
    assert Path(rated.image.path).exists()


def test_a_stimulus_on_a_raters_screen_is_not_removed(study):
    stimulus = StimulusFactory(study=study)
    ClaimFactory(stimulus=stimulus, rater=RaterFactory(study=study))
    with pytest.raises(StimulusError, match="being rated right now") as refused:
        stimulus_remove(stimulus=stimulus)
    assert refused.value.code == "claimed"
    assert Stimulus.objects.filter(pk=stimulus.pk).exists()


def test_the_report_names_the_csv_and_what_it_applied_to_each_file(study, owner, run_now):
    csv = (
        b"filename,generator,task,role,expected_low,expected_high,seed\n"
        b"a.png,painter-a,t2i,gold,10,70,7\n"
    )
    job = run_now(
        study=study,
        user=owner,
        files=[upload("a.png", noise_png(1)), upload("b.png", noise_png(2))],
        metadata=upload("painters.csv", csv),
    )
    # The CSV's uploaded name is the report's first row (the stored CSV is deleted).
    assert job.report[0] == {
        "name": "painters.csv",
        "status": services.CSV_ROW,
        "reason": "metadata CSV, applied to 1 file(s)",
    }
    by_name = {row["name"]: row["reason"] for row in job.report}
    assert by_name["a.png"] == (
        "48×40 PNG, role gold, generator painter-a, task t2i, expected 10–70, 1 more field(s)"
    )
    assert by_name["b.png"] == "48×40 PNG, role test"
    # The counts are the files' only.
    assert (job.imported, job.skipped, job.rejected) == (2, 0, 0)


def test_gold_rows_with_empty_typed_columns_and_unknown_files_are_warned(study, owner, run_now):
    csv = (
        b"filename,generator,role,expected_low,expected_high,free\n"
        b"a.png,,gold,10,70,\n"
        b"b.png,painter-b,gold,,,anything goes\n"
        b"missing.png,painter-c,test,,,\n"
    )
    job = run_now(
        study=study,
        user=owner,
        files=[upload("a.png", noise_png(1)), upload("b.png", noise_png(2))],
        metadata=upload("m.csv", csv),
    )
    warnings = [row["reason"] for row in job.report if row["status"] == "warning"]
    assert warnings == [
        "metadata line 4: no file named 'missing.png' in the source",
        "metadata line 2: gold item 'a.png' has no generator",
        "metadata line 3: gold item 'b.png' has no expected_low, expected_high",
    ]
    by_name = {row["name"]: row for row in job.report}
    assert by_name["a.png"]["status"] == "imported"
    assert by_name["b.png"]["status"] == "rejected"  # a gold item needs its range
