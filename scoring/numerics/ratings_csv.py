"""Read and validate a ratings CSV (``rater,stimulus,score`` [, ``dimension``, ``repetition``]).

No Django here: the ``compute_mos`` management command turns
:class:`RatingsFileError` into a ``CommandError``, and tests call this directly.
Every error names the CSV line (the header is line 1) and, where it applies, the
column, because the person fixing the file needs to find the cell.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["OPTIONAL_COLUMNS", "REQUIRED_COLUMNS", "RatingsFileError", "read_ratings_csv"]

REQUIRED_COLUMNS = ("rater", "stimulus", "score")
OPTIONAL_COLUMNS = ("dimension", "repetition")


class RatingsFileError(ValueError):
    """A ratings file that cannot be used; ``line`` (1 = header) and ``column`` if known."""

    def __init__(self, message: str, *, line: int | None = None, column: str | None = None):
        where = ""
        if line is not None:
            where = f"line {line}"
            if column is not None:
                where += f", column {column!r}"
            where += ": "
        super().__init__(where + message)
        self.line = line
        self.column = column


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def read_ratings_csv(path: str | Path) -> pd.DataFrame:
    """Read a ratings CSV into a long frame ready for :mod:`scoring.numerics.mos`.

    Returns columns ``rater``, ``stimulus`` (str, stripped), ``score`` (float) and,
    when present, ``dimension`` (str) and ``repetition`` (int). Other columns are
    ignored. Blank lines are skipped. Raises :class:`RatingsFileError` for an
    unreadable or empty file, a missing column, an empty cell, a score that is
    not a finite number, a repetition that is not an integer, a row with too
    many fields, or a duplicated (rater, stimulus[, dimension], repetition).
    """
    path = Path(path)
    try:
        # Everything as text first: type errors are then reported with their line.
        raw = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
            quoting=csv.QUOTE_MINIMAL,
        )
    except pd.errors.EmptyDataError:
        raise RatingsFileError(
            f"{path} is empty: expected a header with columns "
            + ",".join(REQUIRED_COLUMNS)
            + " and one rating per line",
            line=1,
        ) from None
    except pd.errors.ParserError as exc:
        # pandas says "Expected 3 fields in line 5, saw 4": its line numbers are
        # the file's (header = 1), which is what we report too.
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if m:
            raise RatingsFileError(
                f"{m.group(3)} fields, but the header has {m.group(1)}", line=int(m.group(2))
            ) from None
        raise RatingsFileError(f"{path} is not a well-formed CSV file: {exc}") from None
    except UnicodeDecodeError as exc:
        raise RatingsFileError(f"cannot read {path}: not UTF-8 text ({exc.reason})") from None
    except (OSError, ValueError) as exc:
        raise RatingsFileError(f"cannot read {path}: {exc}") from None

    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise RatingsFileError(
            "missing column(s) "
            + ", ".join(repr(c) for c in missing)
            + "; the header must name "
            + ",".join(REQUIRED_COLUMNS)
            + " (optional: "
            + ",".join(OPTIONAL_COLUMNS)
            + "); found: "
            + ",".join(raw.columns),
            line=1,
            column=missing[0],
        )
    cols = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in raw.columns]
    data = raw[cols].apply(lambda c: c.str.strip())
    # Line of each row: header is line 1 and blank lines were kept as empty rows,
    # so row k sits on line k + 2.
    lines = np.arange(len(data)) + 2
    blank = (data == "").all(axis=1).to_numpy()
    data, lines = data[~blank], lines[~blank]
    if len(data) == 0:
        raise RatingsFileError(f"{path} has a header but no ratings", line=1)

    for col in cols:
        values = data[col]
        empty = (values == "").to_numpy()
        if empty.any():
            raise RatingsFileError("empty value", line=int(lines[_first(empty)]), column=col)
        broken = values.str.contains("\n", regex=False).to_numpy()
        if broken.any():
            raise RatingsFileError(
                "value contains a line break", line=int(lines[_first(broken)]), column=col
            )

    score = pd.to_numeric(data["score"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(score)
    if bad.any():
        i = _first(bad)
        value = data["score"].iloc[i]
        # pandas parses "nan"/"inf" as numbers; call those "not finite", the rest "not a number"
        spelled = value.lower().lstrip("+-") in ("nan", "inf", "infinity")
        what = "is not a finite number" if spelled or not np.isnan(score[i]) else "is not a number"
        raise RatingsFileError(f"{value!r} {what}", line=int(lines[i]), column="score")

    out = pd.DataFrame(
        {
            "rater": data["rater"].to_numpy(dtype=object),
            "stimulus": data["stimulus"].to_numpy(dtype=object),
            "score": score,
        }
    )
    if "dimension" in data:
        out["dimension"] = data["dimension"].to_numpy(dtype=object)
    if "repetition" in data:
        rep = pd.to_numeric(data["repetition"], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(rep) | (rep != np.round(rep))
        if bad.any():
            i = _first(bad)
            raise RatingsFileError(
                f"{data['repetition'].iloc[i]!r} is not an integer",
                line=int(lines[i]),
                column="repetition",
            )
        out["repetition"] = rep.astype(np.int64)
        keys = [c for c in ("rater", "stimulus", "dimension", "repetition") if c in out]
        dup = out.duplicated(subset=keys, keep="first").to_numpy()
        if dup.any():
            i = _first(dup)
            group = out.groupby(keys, sort=False).ngroup().to_numpy()
            j = _first(group == group[i])
            raise RatingsFileError(
                "duplicate rating: same " + ", ".join(keys) + f" as line {int(lines[j])}",
                line=int(lines[i]),
            )
    return out
