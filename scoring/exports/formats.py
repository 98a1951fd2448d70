"""Dataset exports, one registry of formats (after doccano): each format is a small
class that streams bytes, so a large study never sits in memory.

- ``agin-csv``: the MOS dataset in the AGIN column convention: ``filename,
  MOS_nat, MOS_tech, MOS_rat``, one ``MOS_<dim>`` per sub-dimension, then std,
  interval and n columns, then metadata (generator, task, prompt).
- ``json``: the same dataset as a JSON document.
- ``parquet``: the same dataset as Parquet.
- ``ratings-csv`` / ``ratings-parquet``: the raw ratings, one row per rating and
  dimension, with the rater's pseudonym (never the crowd-platform id), then the
  viewing conditions: the size the image was shown at and the session's window,
  screen, device-pixel ratio, zoom, browser and touch (empty where not reported).

Text cells starting with ``=``, ``+``, ``-``, ``@`` (or a tab / carriage return)
are prefixed with ``'`` in CSV against formula injection in spreadsheets.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from annotation import protocol
from annotation.models import Rating, Stimulus, Study
from scoring.models import Analysis, StimulusResult
from studyweb.errors import ServiceError

CHUNK_ROWS = 2000
# Rows per Parquet row group: the writer holds each group's metadata until the
# footer, so fewer, larger groups keep its memory flat (and suit readers better).
ROW_GROUP_ROWS = 50_000
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# The AGIN authors' names for the three headline columns.
AGIN_NAMES = {"overall": "nat", "technical": "tech", "rationality": "rat"}


class ExportError(ServiceError):
    """An export that cannot be made (unknown format, no finished analysis)."""


def escape_cell(value):
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_lines(header: list[str], rows: Iterator[list]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow([escape_cell(v) for v in row])
        count += 1
        if count % 500 == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _num(value):
    return (
        None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value
    )


# --- The MOS dataset -----------------------------------------------------------


def dataset_columns(study: Study) -> list[str]:
    dims = list(protocol.PRESETS[study.protocol])
    heads = [f"MOS_{AGIN_NAMES[d]}" for d in ("overall", "technical", "rationality")]
    subs = [f"MOS_{d}" for d in dims if d not in AGIN_NAMES]
    spread = []
    for d in dims:
        tag = AGIN_NAMES.get(d, d)
        spread += [f"std_{tag}", f"ci_low_{tag}", f"ci_high_{tag}", f"n_{tag}"]
    return ["filename", *heads, *subs, *spread, "generator", "task", "prompt"]


def latest_done_analysis(study: Study) -> Analysis:
    analysis = study.analyses.filter(status=Analysis.Status.DONE).order_by("-finished_at").first()
    if analysis is None:
        raise ExportError(
            f"study {study.slug!r} has no finished analysis: run one first "
            "(manage.py run_analysis, the study page or the admin)",
            code="no_analysis",
            field="analysis",
        )
    return analysis


def dataset_rows(analysis: Analysis) -> Iterator[dict]:
    """One dict per stimulus, keys as :func:`dataset_columns`; streamed from the database."""
    study = analysis.study
    dims = list(protocol.PRESETS[study.protocol])
    results = (
        StimulusResult.objects.filter(analysis=analysis)
        .order_by("stimulus_id", "dimension")
        .values_list("stimulus_id", "dimension", "mos", "std", "ci_low", "ci_high", "n")
        .iterator(chunk_size=CHUNK_ROWS * len(dims))
    )
    meta_cache: dict[int, tuple] = {}

    def metadata(ids: list[int]) -> None:
        meta_cache.clear()
        for row in Stimulus.objects.filter(pk__in=ids).values_list(
            "pk", "original_name", "generator", "task", "prompt"
        ):
            meta_cache[row[0]] = row[1:]

    current, values, pending = None, {}, []

    def finish(stimulus_id, values) -> dict:
        name, generator, task, prompt = meta_cache[stimulus_id]
        row = {"filename": name}
        for d in ("overall", "technical", "rationality"):
            row[f"MOS_{AGIN_NAMES[d]}"] = values.get(d, {}).get("mos")
        for d in dims:
            if d not in AGIN_NAMES:
                row[f"MOS_{d}"] = values.get(d, {}).get("mos")
        for d in dims:
            tag, v = AGIN_NAMES.get(d, d), values.get(d, {})
            row.update(
                {
                    f"std_{tag}": v.get("std"),
                    f"ci_low_{tag}": v.get("ci_low"),
                    f"ci_high_{tag}": v.get("ci_high"),
                    f"n_{tag}": v.get("n"),
                }
            )
        row.update({"generator": generator, "task": task, "prompt": prompt})
        return row

    for sid, dim, mos, std, lo, hi, n in results:
        if sid != current:
            if current is not None:
                pending.append((current, values))
            current, values = sid, {}
            if len(pending) >= CHUNK_ROWS:
                metadata([p[0] for p in pending])
                yield from (finish(*p) for p in pending)
                pending = []
        values[dim] = {
            "mos": _num(mos),
            "std": _num(std),
            "ci_low": _num(lo),
            "ci_high": _num(hi),
            "n": n,
        }
    if current is not None:
        pending.append((current, values))
    if pending:
        metadata([p[0] for p in pending])
        yield from (finish(*p) for p in pending)


# --- Raw ratings ----------------------------------------------------------------

RATING_COLUMNS = [
    "rating_id",
    "rater",
    "session",
    "stimulus_id",
    "filename",
    "role",
    "dimension",
    "score",
    "repetition",
    "is_gold",
    "viewing_seconds",
    "created_at",
    "session_started_at",
]
# Appended after the columns above (readers of older files find theirs in place): the
# size the image was shown at (the rating's), then the viewing conditions the rater's
# page reported for the session (annotation.viewing); empty where none were reported.
SHOWN_COLUMNS = ["shown_css_width", "shown_css_height", "shown_device_width", "shown_device_height"]
SESSION_VIEWING_COLUMNS = [
    "viewport_width",
    "viewport_height",
    "screen_width",
    "screen_height",
    "device_pixel_ratio",
    "zoom",
    "browser",
    "touch",
]
VIEWING_COLUMNS = [*SHOWN_COLUMNS, *SESSION_VIEWING_COLUMNS]
RATING_COLUMNS += VIEWING_COLUMNS
# Then the rater's status now (active, completed or excluded: a researcher's or the
# quality checks' exclusion), so a reanalysis of the raw file can leave out whom the
# researcher left out; the MOS dataset already does.
RATER_COLUMNS = ["rater_status"]
RATING_COLUMNS += RATER_COLUMNS


def rating_rows(study: Study) -> Iterator[list]:
    """One list per rating and dimension (long format), streamed with a server-side cursor."""
    dims = list(protocol.PRESETS[study.protocol])
    qs = (
        Rating.objects.filter(stimulus__study=study, is_pilot=False)  # previews are not data
        .order_by("id")
        .values_list(
            "id",
            "rater__pseudonym",
            "session_id",
            "stimulus_id",
            "stimulus__original_name",
            "stimulus__role",
            "repetition",
            "is_gold",
            "viewing_seconds",
            "created_at",
            "session__started_at",
            *dims,
            *SHOWN_COLUMNS,
            *(f"session__{c}" for c in SESSION_VIEWING_COLUMNS),
            "rater__status",
        )
    )
    n = len(dims)
    for row in qs.iterator(chunk_size=CHUNK_ROWS):
        rid, rater, session, sid, name, role, rep, gold, secs, created, started = row[:11]
        # browser "": not reported
        viewing = [v if v != "" else None for v in row[11 + n : -1]]
        status = row[-1]
        for dim, score in zip(dims, row[11 : 11 + n], strict=True):
            if score is None:
                continue
            yield [
                rid,
                rater,
                session,
                sid,
                name,
                role,
                dim,
                score,
                rep,
                gold,
                secs,
                created.isoformat(),
                started.isoformat(),
                *viewing,
                status,
            ]


# --- Formats ----------------------------------------------------------------------


class ExportFormat:
    name: str
    label: str
    extension: str
    content_type: str
    needs_analysis: bool = True

    def stream(self, study: Study, analysis: Analysis | None) -> Iterator[bytes]:
        raise NotImplementedError


class AginCsv(ExportFormat):
    name, label, extension, content_type = "agin-csv", "MOS dataset (AGIN CSV)", "csv", "text/csv"

    def stream(self, study, analysis):
        columns = dataset_columns(study)
        rows = ([row.get(c) for c in columns] for row in dataset_rows(analysis))
        return csv_lines(columns, rows)


class DatasetJson(ExportFormat):
    name, label, extension, content_type = "json", "MOS dataset (JSON)", "json", "application/json"

    def stream(self, study, analysis):
        head = {
            "study": study.slug,
            "title": study.title,
            "protocol": study.protocol,
            "scale": study.scale,
            "analysis": {
                "id": analysis.pk,
                "method": analysis.method,
                "reject_on": analysis.reject_on,
                "options": analysis.options,
                "finished_at": analysis.finished_at.isoformat(),
            },
            "columns": dataset_columns(study),
        }
        yield json.dumps(head)[:-1].encode() + b', "stimuli": ['
        first = True
        for row in dataset_rows(analysis):
            yield (b"" if first else b",\n") + json.dumps(row).encode()
            first = False
        yield b"]}\n"


class _DrainSink(io.RawIOBase):
    """A write-only file for pyarrow that hands back what was written since the last drain."""

    def __init__(self):
        super().__init__()
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        # pyarrow may reuse the buffer it passes in: keep a copy.
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _arrow_table(schema: pa.Schema, rows: list[list]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema.names]
    return pa.table(
        {
            n: pa.array(list(c), type=schema.field(n).type)
            for n, c in zip(schema.names, columns, strict=True)
        },
        schema=schema,
    )


def _parquet_stream(schema: pa.Schema, batches: Iterator[list[list]]) -> Iterator[bytes]:
    """Write row groups of about ROW_GROUP_ROWS rows and yield each one's bytes at once.

    A Parquet file is written front to back (row groups, then the footer), so it
    can be streamed; spooling the whole file first made memory grow with the
    number of rows (the AGIN-size ratings file is ~13 MiB, all of it under the
    spool's in-memory limit). The writer keeps every row group's metadata for
    the footer (~10 KiB each in memory), so row groups are made large: batches
    are converted to Arrow (compact) and buffered until a row group is full.
    """
    sink = _DrainSink()
    writer = pq.ParquetWriter(sink, schema)
    pending: list[pa.Table] = []
    pending_rows = 0
    for rows in batches:
        pending.append(_arrow_table(schema, rows))
        pending_rows += len(rows)
        if pending_rows >= ROW_GROUP_ROWS:
            writer.write_table(pa.concat_tables(pending))
            pending, pending_rows = [], 0
            if chunk := sink.drain():
                yield chunk
    if pending:
        writer.write_table(pa.concat_tables(pending))
    writer.close()
    yield sink.drain()


def _batched(rows, size=CHUNK_ROWS * 5):
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class DatasetParquet(ExportFormat):
    name, label, extension = "parquet", "MOS dataset (Parquet)", "parquet"
    content_type = "application/vnd.apache.parquet"

    def stream(self, study, analysis):
        columns = dataset_columns(study)
        types = {c: pa.float64() for c in columns}
        types.update({c: pa.int64() for c in columns if c.startswith("n_")})
        types.update({c: pa.string() for c in ("filename", "generator", "task", "prompt")})
        schema = pa.schema([(c, types[c]) for c in columns])
        rows = ([row.get(c) for c in columns] for row in dataset_rows(analysis))
        return _parquet_stream(schema, _batched(rows))


class RatingsCsv(ExportFormat):
    name, label, extension, content_type = "ratings-csv", "Raw ratings (CSV)", "csv", "text/csv"
    needs_analysis = False

    def stream(self, study, analysis):
        return csv_lines(RATING_COLUMNS, rating_rows(study))


class RatingsParquet(ExportFormat):
    name, label, extension = "ratings-parquet", "Raw ratings (Parquet)", "parquet"
    content_type = "application/vnd.apache.parquet"
    needs_analysis = False
    schema = pa.schema(
        [
            ("rating_id", pa.int64()),
            ("rater", pa.string()),
            ("session", pa.int64()),
            ("stimulus_id", pa.int64()),
            ("filename", pa.string()),
            ("role", pa.string()),
            ("dimension", pa.string()),
            ("score", pa.float64()),
            ("repetition", pa.int64()),
            ("is_gold", pa.bool_()),
            ("viewing_seconds", pa.float64()),
            ("created_at", pa.string()),
            ("session_started_at", pa.string()),
            *((c, pa.int64()) for c in SHOWN_COLUMNS),
            *((c, pa.int64()) for c in SESSION_VIEWING_COLUMNS[:4]),
            ("device_pixel_ratio", pa.float64()),
            ("zoom", pa.float64()),
            ("browser", pa.string()),
            ("touch", pa.bool_()),
            ("rater_status", pa.string()),
        ]
    )

    def stream(self, study, analysis):
        return _parquet_stream(self.schema, _batched(rating_rows(study)))


FORMATS: dict[str, ExportFormat] = {
    f.name: f for f in (AginCsv(), DatasetJson(), DatasetParquet(), RatingsCsv(), RatingsParquet())
}


def export_stream(
    study: Study, fmt: str, *, analysis: Analysis | None = None
) -> tuple[ExportFormat, Iterator[bytes]]:
    """The format and its byte stream; the analysis defaults to the latest finished one."""
    exporter, analysis = export_checked(study, fmt, analysis)
    return exporter, exporter.stream(study, analysis)


def export_checked(
    study: Study, fmt: str, analysis: Analysis | None
) -> tuple[ExportFormat, Analysis | None]:
    """The format, and the analysis it needs (the latest finished one unless given):
    refused with the field at fault when there is no such format or analysis."""
    exporter = FORMATS.get(fmt)
    if exporter is None:
        raise ExportError(
            f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}", field="format"
        )
    if analysis is not None and analysis.study_id != study.pk:
        raise ExportError("no such analysis of this study", field="analysis")
    if exporter.needs_analysis:
        if analysis is None:
            analysis = latest_done_analysis(study)
        elif analysis.status != Analysis.Status.DONE:
            raise ExportError(
                f"analysis {analysis.pk} is not a finished analysis of this study",
                field="analysis",
            )
    return exporter, analysis
