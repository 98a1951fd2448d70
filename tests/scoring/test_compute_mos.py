"""The ratings CSV reader (pure) and the ``compute_mos`` management command.

No test here is marked ``django_db``: pytest-django then refuses any database
access, so these tests also prove that the command never touches the database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from scoring.numerics.mos import compute
from scoring.numerics.ratings_csv import RatingsFileError, read_ratings_csv

DATA = Path(__file__).resolve().parent.parent / "data" / "sureal_nflx"
ROOT = Path(__file__).resolve().parents[2]
NFLX = DATA / "ratings.csv"


def _write(tmp_path: Path, text: str, name: str = "ratings.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- reader


def test_reader_reads_the_reference_file() -> None:
    frame = read_ratings_csv(NFLX)
    assert list(frame.columns) == ["rater", "stimulus", "score"]
    assert len(frame) == 2054 and frame["score"].dtype == float
    pd.testing.assert_frame_equal(
        frame, pd.read_csv(NFLX).astype({"score": float}), check_dtype=False
    )


def test_reader_optional_columns_blank_lines_bom_and_spaces(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "\ufeffrater, stimulus ,score,dimension,repetition,comment\n"
        "a, x ,4,overall,1,fine\n"
        "\n"
        "a,x,5,overall,2,\n"
        "b,x,3.5,technical,1,\n",
    )
    frame = read_ratings_csv(path)
    assert list(frame.columns) == ["rater", "stimulus", "score", "dimension", "repetition"]
    assert frame["stimulus"].tolist() == ["x", "x", "x"]
    assert frame["score"].tolist() == [4.0, 5.0, 3.5]
    assert frame["repetition"].tolist() == [1, 2, 1]


@pytest.mark.parametrize(
    ("text", "line", "column", "fragment"),
    [
        ("rater,stimulus\na,x\n", 1, "score", "missing column(s) 'score'"),
        ("rater,stimulus,score\na,x,4\nb,x,good\n", 3, "score", "'good' is not a number"),
        ("rater,stimulus,score\na,x,4\n\nb,x,nan\n", 4, "score", "'nan' is not a finite number"),
        ("rater,stimulus,score\na,x,inf\n", 2, "score", "not a finite number"),
        ("rater,stimulus,score\na,x,4\n,x,3\n", 3, "rater", "empty value"),
        ("rater,stimulus,score\na,x,4\nb,y\n", 3, "score", "empty value"),
        ("rater,stimulus,score\na,x,4\nb,x,3,7\n", 3, None, "4 fields, but the header has 3"),
        (
            "rater,stimulus,score,repetition\na,x,4,1\nb,x,3,one\n",
            3,
            "repetition",
            "'one' is not an integer",
        ),
        (
            "rater,stimulus,score,repetition\na,x,4,1\nb,x,3,1\na,x,5,1\n",
            4,
            None,
            "duplicate rating: same rater, stimulus, repetition as line 2",
        ),
        ("rater,stimulus,score\n", 1, None, "has a header but no ratings"),
        ("", 1, None, "is empty"),
    ],
)
def test_reader_errors_name_line_and_column(
    tmp_path: Path, text: str, line: int, column: str | None, fragment: str
) -> None:
    with pytest.raises(RatingsFileError) as info:
        read_ratings_csv(_write(tmp_path, text))
    err = info.value
    assert (err.line, err.column) == (line, column)
    message = str(err)
    assert message.startswith(f"line {line}" + (f", column {column!r}" if column else ""))
    assert fragment in message


def test_reader_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(RatingsFileError, match="cannot read .*missing.csv"):
        read_ratings_csv(tmp_path / "missing.csv")
    with pytest.raises(RatingsFileError, match="cannot read"):
        read_ratings_csv(tmp_path)  # a directory
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"rater,stimulus,score\n\xff\xfe\x00,x,1\n")
    with pytest.raises(RatingsFileError, match="not UTF-8"):
        read_ratings_csv(binary)


# --------------------------------------------------------------------------- command


def test_command_writes_mos_and_raters(tmp_path: Path) -> None:
    out, raters = tmp_path / "mos.csv", tmp_path / "raters.csv"
    call_command(
        "compute_mos",
        ratings=str(NFLX),
        method="p913",
        out=str(out),
        raters_out=str(raters),
        stdout=StringIO(),
    )
    got = pd.read_csv(out)
    assert list(got.columns) == ["stimulus", "mos", "std", "ci_low", "ci_high", "n"]
    expected = compute(pd.read_csv(NFLX), "p913")
    np.testing.assert_allclose(got["mos"], expected.stimuli["mos"], rtol=0, atol=1e-12)
    r = pd.read_csv(raters)
    assert r.loc[r["rejected"], "rater"].tolist() == ["s03", "s04", "s09", "s12"]
    assert {"P", "Q", "pq_rate", "pq_balance", "reason"} <= set(r.columns)


def test_command_t_interval_and_argument_parsing(tmp_path: Path) -> None:
    out = tmp_path / "mos.csv"
    call_command(
        "compute_mos",
        "--ratings",
        str(NFLX),
        "--method",
        "mean",
        "--out",
        str(out),
        "--ci",
        "t",
        stdout=StringIO(),
    )
    got = pd.read_csv(out)
    expected = compute(pd.read_csv(NFLX), "mean", ci="t").stimuli
    np.testing.assert_allclose(got["ci_high"], expected["ci_high"], atol=1e-12)
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("compute_mos", "--ratings", str(NFLX), "--method", "median", "--out", str(out))


def test_command_with_dimensions(tmp_path: Path) -> None:
    base = pd.read_csv(NFLX)
    tech = base.assign(score=np.clip(base["score"] + (base["rater"] == "s05"), 1, 5))
    frame = pd.concat([base.assign(dimension="overall"), tech.assign(dimension="technical")])
    src = tmp_path / "dims.csv"
    frame.to_csv(src, index=False)
    out = tmp_path / "mos.csv"
    call_command("compute_mos", ratings=str(src), method="bt500", out=str(out), stdout=StringIO())
    got = pd.read_csv(out)
    assert list(got.columns) == ["dimension", "stimulus", "mos", "std", "ci_low", "ci_high", "n"]
    assert sorted(got["dimension"].unique()) == ["overall", "technical"]
    # s02 is rejected on overall, so technical has 25 raters everywhere
    assert (got.loc[got["dimension"] == "technical", "n"] == 25).all()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("rater,stimulus\na,x\n", "line 1, column 'score': missing column(s) 'score'"),
        ("rater,stimulus,score\na,x,4\nb,x,four\n", "line 3, column 'score': 'four' is not"),
        ("", "line 1: "),
    ],
)
def test_command_bad_input_is_a_command_error(tmp_path: Path, text: str, fragment: str) -> None:
    src = _write(tmp_path, text)
    with pytest.raises(CommandError) as info:
        call_command("compute_mos", ratings=str(src), method="mean", out=str(tmp_path / "o.csv"))
    assert fragment in str(info.value)
    assert not (tmp_path / "o.csv").exists()


def test_command_unreadable_and_unwritable(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read"):
        call_command(
            "compute_mos",
            ratings=str(tmp_path / "nope.csv"),
            method="mean",
            out=str(tmp_path / "o.csv"),
        )
    with pytest.raises(CommandError, match="cannot write"):
        call_command(
            "compute_mos",
            ratings=str(NFLX),
            method="mean",
            out=str(tmp_path / "no" / "such" / "dir.csv"),
        )
    dims = _write(tmp_path, "rater,stimulus,score,dimension\na,x,1,technical\nb,x,2,technical\n")
    with pytest.raises(CommandError, match="needs a dimension named 'overall'"):
        call_command("compute_mos", ratings=str(dims), method="bt500", out=str(tmp_path / "o.csv"))


def test_manage_py_runs_without_a_database(tmp_path: Path) -> None:
    # DATABASE_URL points at a port where nothing listens: any connection fails.
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "studyweb.test_settings",
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
    }
    out = tmp_path / "mos.csv"
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "compute_mos",
            "--ratings",
            str(NFLX),
            "--method",
            "bt500",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "1 rater(s) rejected" in done.stdout
    assert len(pd.read_csv(out)) == 79
    bad = _write(tmp_path, "rater,stimulus,score\na,x,\n", "bad.csv")
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "compute_mos",
            "--ratings",
            str(bad),
            "--method",
            "mean",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "line 2, column 'score': empty value" in done.stderr
