"""Import of published MOS datasets (AGIN CSV convention, AGIQA-3K data.csv)."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Stimulus, Study
from scoring.analyses.services import analysis_create, analysis_run
from scoring.exports.formats import export_stream
from scoring.models import StimulusResult
from tests.factories import png_bytes, rated_study

pytestmark = pytest.mark.django_db

AGIQA = (
    "name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align\n"
    'midjourney_normal_001.png,"a cat, on a mat",red,,baroque,3.21,0.5,4.1,0.3\n'
    "sd1.5_lowstep_002.png,a dog,,,,1.75,0.8,2.2,0.6\n"
    "missing_003.png,a bird,,,,2.0,0.1,3.0,0.2\n"
)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "midjourney_normal_001.png").write_bytes(png_bytes((1, 2, 3)))
    (folder / "sd1.5_lowstep_002.png").write_bytes(png_bytes((4, 5, 6)))
    return folder


def run(*args):
    out = io.StringIO()
    call_command("import_dataset", *[str(a) for a in args], stdout=out)
    return out.getvalue()


def test_agiqa_3k(images, tmp_path, researcher_a):
    (tmp_path / "data.csv").write_text(AGIQA)
    out = run(
        "agiqa",
        "--format",
        "agiqa-3k",
        "--csv",
        tmp_path / "data.csv",
        "--images",
        images,
        "--owner",
        "researcher_a",
    )
    assert "2 images with published MOS" in out and "missing_003.png" in out
    study = Study.objects.get(slug="agiqa")
    assert study.status == "closed" and study.protocol == "overall"
    mj = Stimulus.objects.get(study=study, original_name="midjourney_normal_001.png")
    assert (mj.generator, mj.prompt, mj.metadata) == (
        "midjourney",
        "a cat, on a mat",
        {"adj1": "red", "style": "baroque"},
    )
    values = dict(StimulusResult.objects.filter(stimulus=mj).values_list("dimension", "mos"))
    assert values == {"overall": 3.21, "alignment": 4.1}


@pytest.mark.parametrize(
    "text, message",
    [
        (AGIQA.replace("mos_align", "mos_alignment"), "line 1, column 'mos_align'"),
        (AGIQA.replace("3.21", "high"), "line 2, column 'mos_quality'"),
        (AGIQA.replace(",4.1,", ",inf,"), "line 2, column 'mos_align'"),
        (AGIQA.replace("a dog,", "a dog"), "line 3"),
        ("", "line 1"),
    ],
)
def test_malformed_dataset_imports_nothing(images, tmp_path, researcher_a, text, message):
    (tmp_path / "data.csv").write_text(text)
    with pytest.raises(CommandError) as info:
        run(
            "agiqa",
            "--format",
            "agiqa-3k",
            "--csv",
            tmp_path / "data.csv",
            "--images",
            images,
            "--owner",
            "researcher_a",
        )
    assert message in str(info.value)
    assert not Study.objects.filter(slug="agiqa").exists()
    assert Stimulus.objects.count() == 0


def test_agin_csv_round_trip(tmp_path, researcher_a, settings):
    """Our own AGIN export, imported back, gives the same MOS per image."""
    rated = rated_study(n_raters=8)
    analysis = analysis_run(
        analysis_id=analysis_create(study=rated, method="mean", enqueue=False).pk
    )
    _, chunks = export_stream(rated, "agin-csv", analysis=analysis)
    (tmp_path / "agin.csv").write_bytes(b"".join(chunks))
    folder = tmp_path / "images"
    folder.mkdir()
    for s in rated.stimuli.filter(role="test"):
        (folder / s.original_name).write_bytes(s.image.read())
    run(
        "agin-copy",
        "--format",
        "agin-csv",
        "--csv",
        tmp_path / "agin.csv",
        "--images",
        folder,
        "--owner",
        "researcher_a",
    )
    copy = Study.objects.get(slug="agin-copy")
    assert copy.protocol == "agin"
    original = {
        (r.stimulus.original_name, r.dimension): r.mos
        for r in analysis.stimulus_results.select_related("stimulus")
    }
    imported = {
        (r.stimulus.original_name, r.dimension): r.mos
        for r in StimulusResult.objects.filter(analysis__study=copy).select_related("stimulus")
    }
    assert imported.keys() == original.keys()
    for key, mos in original.items():
        assert imported[key] == pytest.approx(mos, abs=1e-9)


def test_agin_csv_needs_mos_nat(images, tmp_path, researcher_a):
    (tmp_path / "a.csv").write_text("filename,MOS_tech\nmidjourney_normal_001.png,50\n")
    with pytest.raises(CommandError, match="column 'MOS_nat'"):
        run(
            "x",
            "--format",
            "agin-csv",
            "--csv",
            tmp_path / "a.csv",
            "--images",
            images,
            "--owner",
            "researcher_a",
        )
