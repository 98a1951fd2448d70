"""Exports: AGIN columns, long ratings, JSON, Parquet, formula escaping, streaming."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from annotation.models import Rating
from scoring.analyses.services import analysis_create, analysis_run
from scoring.exports.formats import (
    FORMATS,
    ExportError,
    dataset_columns,
    escape_cell,
    export_stream,
)
from tests.factories import RaterFactory, SessionFactory, StimulusFactory, StudyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    study = StudyFactory(slug="exp", protocol="agin")
    stimuli = [
        StimulusFactory(
            study=study,
            original_name="a.png",
            generator="SDXL",
            task="t2i",
            prompt='=HYPERLINK("http://evil")',
        ),
        StimulusFactory(study=study, original_name="b.png", generator="@gen", task="edit"),
        StimulusFactory(study=study, original_name="c.png", generator="MJ", task="t2i"),
    ]
    for r in range(4):
        rater = RaterFactory(study=study)
        session = SessionFactory(rater=rater)
        for j, stimulus in enumerate(stimuli):
            scores = {d: float(min(100, 20 + 25 * j + 3 * r)) for d in _dims()}
            Rating.objects.create(
                stimulus=stimulus,
                rater=rater,
                session=session,
                protocol="agin",
                scale="continuous",
                viewing_seconds=4.5,
                client_id=uuid.uuid4(),
                **scores,
            )
    return study


def _dims():
    from annotation.protocol import PRESETS

    return PRESETS["agin"]


def _analysis(study, method="mean"):
    return analysis_run(analysis_id=analysis_create(study=study, method=method, enqueue=False).pk)


def _bytes(study, fmt, **kw) -> bytes:
    _, chunks = export_stream(study, fmt, **kw)
    return b"".join(chunks)


def test_agin_csv_columns_and_values(study):
    _analysis(study)
    rows = list(csv.DictReader(io.StringIO(_bytes(study, "agin-csv").decode())))
    columns = dataset_columns(study)
    assert columns[:4] == ["filename", "MOS_nat", "MOS_tech", "MOS_rat"]
    assert columns[4:14] == [
        f"MOS_{d}"
        for d in (
            "luminance",
            "contrast",
            "detail",
            "blur",
            "artifacts",
            "existence",
            "color",
            "layout",
            "context",
            "sensory_clarity",
        )
    ]
    assert columns[-3:] == ["generator", "task", "prompt"]
    assert list(rows[0].keys()) == columns
    a = next(r for r in rows if r["filename"] == "a.png")
    assert float(a["MOS_nat"]) == pytest.approx(24.5)  # mean of 20, 23, 26, 29
    assert a["n_nat"] == "4" and float(a["ci_high_nat"]) > float(a["ci_low_nat"])
    assert a["prompt"].startswith("'=HYPERLINK")  # formula escaped
    assert next(r for r in rows if r["filename"] == "b.png")["generator"] == "'@gen"


def test_ratings_csv_is_long(study):
    text = _bytes(study, "ratings-csv").decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 4 * 3 * 13
    assert {r["dimension"] for r in rows} == set(_dims())
    assert all(r["rater"].startswith("R") for r in rows)  # pseudonyms, not platform ids


def test_raw_ratings_carry_the_raters_status(study, tmp_path):
    """A researcher's exclusion is in the raw files too, so a reanalysis can leave the
    rater out as the MOS dataset does."""
    excluded = Rating.objects.order_by("id").first().rater
    excluded.status = "excluded"
    excluded.save(update_fields=["status"])
    rows = list(csv.DictReader(io.StringIO(_bytes(study, "ratings-csv").decode())))
    by_status = {r["rater"]: r["rater_status"] for r in rows}
    assert by_status[excluded.pseudonym] == "excluded"
    assert sorted(by_status.values()) == ["active", "active", "active", "excluded"]
    (tmp_path / "r.parquet").write_bytes(_bytes(study, "ratings-parquet"))
    table = pq.read_table(tmp_path / "r.parquet").to_pydict()
    assert table["rater_status"].count("excluded") == 3 * 13


def test_json_and_parquet(study, tmp_path):
    analysis = _analysis(study, "p910")
    doc = json.loads(_bytes(study, "json"))
    assert doc["analysis"]["id"] == analysis.pk and len(doc["stimuli"]) == 3
    assert doc["stimuli"][0]["filename"] == "a.png"
    (tmp_path / "d.parquet").write_bytes(_bytes(study, "parquet"))
    table = pq.read_table(tmp_path / "d.parquet")
    assert table.num_rows == 3 and table.column_names == dataset_columns(study)
    (tmp_path / "r.parquet").write_bytes(_bytes(study, "ratings-parquet"))
    assert pq.read_table(tmp_path / "r.parquet").num_rows == 4 * 3 * 13


def test_export_command_and_errors(study, tmp_path):
    out = tmp_path / "ratings.csv"
    call_command(
        "export_dataset", "exp", "--format", "ratings-csv", "--out", str(out), stdout=io.StringIO()
    )
    assert out.read_text().startswith("rating_id,rater,")
    with pytest.raises(CommandError, match="no finished analysis"):
        call_command(
            "export_dataset",
            "exp",
            "--format",
            "agin-csv",
            "--out",
            str(tmp_path / "x.csv"),
            stdout=io.StringIO(),
        )
    assert not (tmp_path / "x.csv").exists() and not list(tmp_path.glob(".x.csv*"))
    with pytest.raises(CommandError, match="does not exist"):
        call_command(
            "export_dataset",
            "exp",
            "--format",
            "ratings-csv",
            "--out",
            str(tmp_path / "no" / "dir.csv"),
            stdout=io.StringIO(),
        )
    with pytest.raises(ExportError, match="unknown format"):
        export_stream(study, "xlsx")
    assert set(FORMATS) == {"agin-csv", "json", "parquet", "ratings-csv", "ratings-parquet"}


@pytest.mark.parametrize(
    "value, expected",
    [
        ("=1+1", "'=1+1"),
        ("+x", "'+x"),
        ("-cmd", "'-cmd"),
        ("@SUM", "'@SUM"),
        ("ok", "ok"),
        (-1.5, -1.5),
        ("\tx", "'\tx"),
    ],
)
def test_escape_cell(value, expected):
    assert escape_cell(value) == expected


def test_download_view_streams_for_the_owner_only(client, study, researcher_b):
    from django.urls import reverse

    analysis = _analysis(study)
    url = reverse("scoring:export", args=["exp", "agin-csv"]) + f"?analysis={analysis.pk}"
    client.force_login(researcher_b)
    assert client.get(url).status_code == 404  # as a missing study: no existence oracle
    client.force_login(study.owner)
    response = client.get(url)
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"].endswith(f'exp-agin-csv-analysis{analysis.pk}.csv"')
    body = b"".join(response.streaming_content).decode()
    assert body.startswith("filename,MOS_nat,MOS_tech,MOS_rat,")
    assert client.get(reverse("scoring:export", args=["exp", "xlsx"])).status_code == 302
    assert client.get(url.replace(str(analysis.pk), "999999")).status_code == 404
