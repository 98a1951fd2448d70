"""``train_joint --study`` with MEDIA_STORAGE=s3 (a real SeaweedFS): on a machine whose
MEDIA_ROOT is empty the study's images come from the store, sha256 verified, into
``--cache-dir``/stimuli (kept for the next run) or a temporary folder (removed); a
store that is away, or an object that is not the image imported, stops the command
with one line saying so."""

from __future__ import annotations

import hashlib
import io
import json

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from scoring.joint.training import training_log_path
from scoring.models import Analysis, StimulusResult
from tests.factories import StimulusFactory, StudyFactory, png_bytes

pytestmark = pytest.mark.django_db

DIMENSIONS = ("overall", "technical", "rationality")


@pytest.fixture
def study(s3_media, settings, tmp_path):
    """Six stimuli in the store with a finished analysis; then an empty MEDIA_ROOT, as
    on a training machine that has only the database and the store."""
    study = StudyFactory(slug="s3train")
    analysis = Analysis.objects.create(
        study=study, method="mean", status=Analysis.Status.DONE, finished_at=timezone.now()
    )
    for i in range(6):
        data = png_bytes((40 * i, 100, 150), size=(80, 60))
        stim = StimulusFactory(
            study=study,
            original_name=f"t{i}.png",
            sha256=hashlib.sha256(data).hexdigest(),
            image=ContentFile(data, name=f"t{i}.png"),
        )
        for j, dim in enumerate(DIMENSIONS):
            StimulusResult.objects.create(
                analysis=analysis, stimulus=stim, dimension=dim, mos=1 + i / 2 + j / 10, n=5
            )
    settings.MEDIA_ROOT = tmp_path / "empty-media-root"
    return study


def train(tmp_path, **extra) -> str:
    out = io.StringIO()
    call_command(
        "train_joint",
        study="s3train",
        out=str(tmp_path / "ft.pth"),
        epochs=1,
        batch_size=2,
        resize=72,
        crop=64,
        device="cpu",
        no_progress=True,
        stdout=out,
        stderr=io.StringIO(),
        **extra,
    )
    return out.getvalue()


def test_trains_on_a_study_whose_images_are_in_the_store(study, s3_media, tmp_path):
    cache = tmp_path / "cache"
    text = train(tmp_path, cache_dir=str(cache))
    assert "training on 6 images" in text and "best epoch" in text
    log = json.loads(training_log_path(tmp_path / "ft.pth").read_text())
    assert log["source"]["kind"] == "study"
    names = sorted(log["split"]["train"] + log["split"]["test"])
    assert names == [f"t{i}.png" for i in range(6)]
    # The copies are kept under their digest for the next run, each verified.
    kept = {p.name for p in (cache / "stimuli").iterdir()}
    assert kept == {f"{s.sha256}.png" for s in study.stimuli.all()}
    for path in (cache / "stimuli").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem
    assert not (tmp_path / "empty-media-root").exists()  # nothing assumed a local file


def test_without_a_cache_dir_the_copies_go_with_the_run(study, s3_media, tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert "best epoch" in train(tmp_path)
    assert list(scratch.iterdir()) == []


def test_an_object_that_is_not_the_imported_image_is_refused(study, s3_media, tmp_path):
    stim = study.stimuli.order_by("pk").first()
    # Someone overwrote the object in the bucket after the import.
    s3_media.server.client().put_object(
        Bucket=s3_media.bucket, Key=f"{s3_media.prefix}/{stim.image.name}", Body=b"not it"
    )
    with pytest.raises(CommandError) as err:
        train(tmp_path, cache_dir=str(tmp_path / "cache"))
    assert err.value.returncode == 2 and "\n" not in str(err.value)
    assert "cannot read the study's images" in str(err.value)
    assert "sha256" in str(err.value)
    assert not (tmp_path / "ft.pth").exists()


def test_the_store_away_stops_the_command_saying_so(study, s3_media, tmp_path):
    s3_media.server.stop()
    with pytest.raises(CommandError) as err:
        train(tmp_path)
    assert err.value.returncode == 2 and "\n" not in str(err.value)
    assert "cannot read the study's images" in str(err.value)
    assert not (tmp_path / "ft.pth").exists()
