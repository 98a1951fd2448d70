"""The ``agreement`` management command, CSV mode (METHODS.md section 8).

No test here is marked ``django_db``: pytest-django then refuses any database
access, so these tests also prove that the CSV mode never touches the database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from scoring.numerics.agreement import agreement

ROOT = Path(__file__).resolve().parents[2]
NFLX = ROOT / "tests" / "data" / "sureal_nflx" / "ratings.csv"


@pytest.fixture(scope="module")
def csvs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    """Predictions (MOS of NFLX raters 0-12) and MOS (raters 13-25) as two CSV files.

    Each file has one image the other lacks; the MOS file lists images in
    another order and with spaces around the names.
    """
    wide = pd.read_csv(NFLX).pivot_table(index="stimulus", columns="rater", values="score")
    raters = sorted(wide.columns)
    both = pd.DataFrame(
        {
            "pred": wide[raters[:13]].mean(axis=1),
            "mos": wide[raters[13:]].mean(axis=1),
        }
    ).reset_index()
    folder = tmp_path_factory.mktemp("agreement")
    pred = folder / "pred.csv"
    mos = folder / "mos.csv"
    pred_rows = [("image", "technical", "naturalness")]
    pred_rows += [(s, "0", repr(v)) for s, v in zip(both["stimulus"], both["pred"], strict=True)]
    pred_rows.append(("only_in_predictions.yuv", "0", "3.0"))
    pred.write_text("\n".join(",".join(r) for r in pred_rows) + "\n", encoding="utf-8")
    mos_rows = [("filename", "MOS_nat", "MOS_tech")]
    mos_rows += [
        (f" {s} ", repr(v), "")
        for s, v in zip(both["stimulus"][::-1], both["mos"][::-1], strict=True)
    ]
    mos_rows.append(("only_in_mos.yuv", "2.0", ""))
    mos.write_text("\n".join(",".join(r) for r in mos_rows) + "\n", encoding="utf-8")
    return pred, mos, both


def _run(*args: str, **options: object) -> str:
    out = StringIO()
    call_command("agreement", *args, stdout=out, **options)
    return out.getvalue()


def test_json_output_is_one_object_with_the_library_figures(csvs) -> None:
    pred, mos, both = csvs
    text = _run("--predictions", str(pred), "--mos", str(mos), "--n-boot", "200", "--json")
    assert text.count("\n") <= 1  # exactly one JSON document on one line
    payload = json.loads(text)
    expected = agreement(both["pred"].to_numpy(), both["mos"].to_numpy(), n_boot=200, seed=0)
    reference = expected.as_dict()
    for key in ("n", "srcc", "krcc", "plcc", "rmse", "logistic_params"):
        assert payload[key] == pytest.approx(reference[key], abs=1e-12), key
    for metric, interval in reference["ci95"].items():
        assert payload["ci95"][metric] == pytest.approx(interval, abs=1e-12), metric
    assert payload["fit"] == reference["fit"] and payload["notes"] == reference["notes"]
    assert payload["n"] == 79 and payload["fit"] == "ok" and payload["n_boot"] == 200
    assert payload["unmatched"] == {
        "predictions_only": 1,
        "mos_only": 1,
        "predictions_only_examples": ["only_in_predictions.yuv"],
        "mos_only_examples": ["only_in_mos.yuv"],
    }
    assert payload["columns"] == {"prediction": "naturalness", "mos": "MOS_nat"}
    # The seed is honoured.
    again = json.loads(_run(predictions=str(pred), mos=str(mos), n_boot=200, seed=3, json=True))
    assert again["srcc"] == payload["srcc"] and again["ci95"] != payload["ci95"]


def test_readable_table(csvs) -> None:
    pred, mos, _ = csvs
    text = _run(predictions=str(pred), mos=str(mos), n_boot=50)
    assert "naturalness" in text and "MOS_nat" in text and "n = 79" in text
    for label in ("SRCC", "KRCC", "PLCC", "RMSE", "logistic fit: ok", "50 resamples"):
        assert label in text
    assert "unmatched: 1 image(s) only in the predictions, 1 only in the MOS file" in text


def test_empty_mos_column_gives_explained_nulls(csvs) -> None:
    # MOS_tech is empty everywhere: every pair is dropped and the JSON says why.
    pred, mos, _ = csvs
    payload = json.loads(
        _run(predictions=str(pred), mos=str(mos), mos_column="MOS_tech", n_boot=10, json=True)
    )
    assert payload["n"] == 0 and payload["srcc"] is None and payload["plcc"] is None
    assert payload["fit"].startswith("failed: ")
    assert any("dropped 79 pair" in note for note in payload["notes"])
    text = _run(predictions=str(pred), mos=str(mos), mos_column="MOS_tech", n_boot=10)
    assert "n/a" in text and "note: dropped 79 pair" in text


def test_constant_predictions_report_a_failed_fit(csvs) -> None:
    pred, mos, _ = csvs
    payload = json.loads(
        _run(predictions=str(pred), mos=str(mos), pred_column="technical", n_boot=20, json=True)
    )
    assert payload["fit"] == "failed: constant prediction"
    assert payload["plcc"] is None and payload["rmse"] is not None
    assert payload["plcc_on"] == "raw" and payload["notes"]


def test_bad_csv_names_file_line_and_column(tmp_path: Path, csvs) -> None:
    pred, mos, _ = csvs
    bad = tmp_path / "bad.csv"
    bad.write_text("image,naturalness\na.png,1\nb.png,very good\n", encoding="utf-8")
    with pytest.raises(CommandError, match=r"bad\.csv, line 3, column 'naturalness'"):
        _run(predictions=str(bad), mos=str(mos))
    with pytest.raises(CommandError, match=r"mos\.csv, line 1, column 'MOS_x'"):
        _run(predictions=str(pred), mos=str(mos), mos_column="MOS_x")
    dup = tmp_path / "dup.csv"
    dup.write_text("image,naturalness\na.png,1\na.png,2\n", encoding="utf-8")
    with pytest.raises(CommandError, match=r"dup\.csv, line 3.*duplicate"):
        _run(predictions=str(dup), mos=str(mos))
    with pytest.raises(CommandError, match="missing.csv"):
        _run(predictions=str(tmp_path / "missing.csv"), mos=str(mos))


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (("study-a",), {"model_version": "joint-2024"}, "no study with slug 'study-a'"),
        (
            ("study-a",),
            {"model_version": "joint-2024", "analysis": 3, "json": True},
            "no study with slug 'study-a'",
        ),
        ((), {"model_version": "joint-2024"}, "needs a study slug"),
        ((), {}, "nothing to compare"),
        ((), {"predictions": "p.csv"}, "needs both --predictions and --mos"),
        (("study-a",), {"predictions": "p.csv", "mos": "m.csv"}, "not both"),
        ((), {"predictions": "p.csv", "mos": "m.csv", "n_boot": -1}, "--n-boot"),
    ],
)
@pytest.mark.django_db
def test_modes_and_arguments(args: tuple, options: dict, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        _run(*args, **options)


def test_manage_py_runs_without_a_database(csvs) -> None:
    # DATABASE_URL points at a port where nothing listens: any connection fails.
    pred, mos, _ = csvs
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "studyweb.test_settings",
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
    }
    command = [sys.executable, "manage.py", "agreement", "--predictions", str(pred)]
    done = subprocess.run(
        [*command, "--mos", str(mos), "--n-boot", "20", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["n"] == 79 and np.isfinite(payload["plcc"])
    done = subprocess.run(
        [*command, "--mos", str(mos), "--mos-column", "nope"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "line 1, column 'nope': missing column" in done.stderr
