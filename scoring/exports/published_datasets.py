"""Import published MOS datasets so models can be evaluated against them.

A dataset becomes a closed Study holding its images (checked like any import)
and one Analysis of method ``imported`` holding the published MOS per image
and dimension. Everything that reads analyses (exports, agreement) then works
on it unchanged.

Formats:
- ``agin-csv``: the AGIN authors' convention, ``filename, MOS_nat, MOS_tech,
  MOS_rat`` (only filename and MOS_nat required), optional ``MOS_<sub-dimension>``,
  ``std_*``, ``n_*`` and ``generator, task, prompt`` columns, as our own export
  writes it.
- ``agiqa-3k``: AGIQA-3K's ``data.csv``: ``name, prompt, adj1, adj2, style,
  mos_quality, std_quality, mos_align, std_align``; quality is stored as
  dimension ``overall``, alignment as ``alignment``; the generator is the file
  name's prefix (``midjourney_normal_001.jpg`` -> ``midjourney``).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from annotation import protocol
from annotation.importing import (
    ImportAborted,
    Limits,
    MetadataError,
    MetadataRow,
    Rejected,
    stimulus_import_bytes,
)
from annotation.models import Study
from scoring.exports.formats import AGIN_NAMES
from scoring.models import Analysis, StimulusResult

AGIN_TAGS = {v: k for k, v in AGIN_NAMES.items()}  # nat -> overall, ...
AGIQA_COLUMNS = (
    "name",
    "prompt",
    "adj1",
    "adj2",
    "style",
    "mos_quality",
    "std_quality",
    "mos_align",
    "std_align",
)
FORMATS = ("agin-csv", "agiqa-3k")


@dataclass
class DatasetRow:
    line: int
    filename: str
    generator: str = ""
    task: str = ""
    prompt: str = ""
    extra: dict = field(default_factory=dict)
    # dimension -> {"mos", "std", "n"}
    values: dict[str, dict] = field(default_factory=dict)


@dataclass
class DatasetReport:
    study: Study | None = None
    analysis: Analysis | None = None
    imported: int = 0
    problems: list[str] = field(default_factory=list)


def _number(text: str, line: int, column: str, *, required: bool) -> float | None:
    if text is None or text.strip() == "":
        if required:
            raise MetadataError(line, column, "missing value")
        return None
    try:
        value = float(text)
    except ValueError:
        raise MetadataError(line, column, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise MetadataError(line, column, f"{text!r} is not a finite number")
    return value


def _read(data: bytes) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MetadataError(data[: exc.start].count(b"\n") + 1, "-", "not valid UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
        if not any(header):
            raise MetadataError(1, "-", "the file is empty")
        rows = []
        for record in reader:
            if not record or all(not c.strip() for c in record):
                continue
            if len(record) != len(header):
                raise MetadataError(
                    reader.line_num,
                    "-",
                    f"expected {len(header)} fields like the header, found {len(record)}",
                )
            rows.append((reader.line_num, record))
    except csv.Error as exc:
        raise MetadataError(reader.line_num, "-", f"unreadable CSV ({exc})") from None
    if not rows:
        raise MetadataError(2, "-", "no data rows")
    return header, rows


def parse_agin_csv(data: bytes) -> tuple[list[str], list[DatasetRow]]:
    header, rows = _read(data)
    if "filename" not in header:
        raise MetadataError(1, "filename", "missing column")
    if "MOS_nat" not in header:
        raise MetadataError(1, "MOS_nat", "missing column")
    dims: dict[str, str] = {}  # column tag -> dimension key
    for col in header:
        if col.startswith("MOS_"):
            tag = col[4:]
            key = AGIN_TAGS.get(tag, tag)
            if key not in protocol.BY_KEY:
                raise MetadataError(1, col, f"unknown dimension {tag!r}")
            dims[tag] = key
    out, seen = [], {}
    for line, record in rows:
        cells = dict(zip(header, record, strict=True))
        name = cells["filename"].strip()
        if not name:
            raise MetadataError(line, "filename", "empty file name")
        if name in seen:
            raise MetadataError(line, "filename", f"{name!r} already on line {seen[name]}")
        seen[name] = line
        row = DatasetRow(
            line, name, cells.get("generator", ""), cells.get("task", ""), cells.get("prompt", "")
        )
        for tag, key in dims.items():
            mos = _number(cells[f"MOS_{tag}"], line, f"MOS_{tag}", required=tag == "nat")
            if mos is None:
                continue
            std = _number(cells.get(f"std_{tag}", ""), line, f"std_{tag}", required=False)
            n = _number(cells.get(f"n_{tag}", ""), line, f"n_{tag}", required=False)
            row.values[key] = {"mos": mos, "std": std, "n": int(n) if n is not None else 0}
        out.append(row)
    ordered = [d.key for d in protocol.DIMENSIONS if d.key in dims.values()]
    return ordered, out


def parse_agiqa_3k(data: bytes) -> tuple[list[str], list[DatasetRow]]:
    header, rows = _read(data)
    for col in AGIQA_COLUMNS:
        if col not in header:
            raise MetadataError(1, col, "missing column (AGIQA-3K data.csv)")
    out, seen = [], {}
    for line, record in rows:
        cells = dict(zip(header, record, strict=True))
        name = cells["name"].strip()
        if not name:
            raise MetadataError(line, "name", "empty file name")
        if name in seen:
            raise MetadataError(line, "name", f"{name!r} already on line {seen[name]}")
        seen[name] = line
        row = DatasetRow(
            line,
            name,
            generator=name.split("_", 1)[0] if "_" in name else "",
            task="text-to-image",
            prompt=cells["prompt"],
            extra={k: cells[k] for k in ("adj1", "adj2", "style") if cells[k].strip()},
        )
        row.values["overall"] = {
            "mos": _number(cells["mos_quality"], line, "mos_quality", required=True),
            "std": _number(cells["std_quality"], line, "std_quality", required=False),
            "n": 0,
        }
        row.values["alignment"] = {
            "mos": _number(cells["mos_align"], line, "mos_align", required=True),
            "std": _number(cells["std_align"], line, "std_align", required=False),
            "n": 0,
        }
        out.append(row)
    return ["overall", "alignment"], out


def dataset_import(
    *,
    slug: str,
    fmt: str,
    csv_path: Path,
    images: Path,
    owner,
    title: str = "",
    limits: Limits | None = None,
) -> DatasetReport:
    """Create a closed study from a published dataset; a malformed CSV imports nothing."""
    if fmt not in FORMATS:
        raise ImportAborted(f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}")
    if Study.objects.filter(slug=slug).exists():
        raise ImportAborted(f"a study with slug {slug!r} already exists")
    try:
        data = Path(csv_path).read_bytes()
    except OSError as exc:
        raise ImportAborted(f"cannot read {csv_path}: {exc}") from None
    images = Path(images)
    if not images.is_dir():
        raise ImportAborted(f"{images}: not a folder of images")
    dims, rows = (parse_agin_csv if fmt == "agin-csv" else parse_agiqa_3k)(data)
    preset = "overall"
    if set(protocol.PRESETS["agin"]) <= set(dims):
        preset = "agin"
    elif {"technical", "rationality"} <= set(dims):
        preset = "perspectives"
    limits = limits or Limits.from_settings()
    report = DatasetReport()
    with transaction.atomic():
        study = Study.objects.create(
            slug=slug,
            title=title or f"Imported dataset {slug}",
            owner=owner,
            protocol=preset,
            status=Study.Status.CLOSED,
            instructions=f"Imported from a published dataset ({fmt}); not a live study.",
        )
        analysis = Analysis.objects.create(
            study=study,
            method="imported",
            status=Analysis.Status.DONE,
            created_by=owner,
            options={"format": fmt, "source": Path(csv_path).name},
            started_at=timezone.now(),
        )
        results = []
        for row in rows:
            path = images / row.filename
            try:
                if not path.is_file():
                    raise Rejected("image file not found")
                if path.stat().st_size > limits.max_bytes:
                    raise Rejected(f"file too large ({path.stat().st_size:,} bytes)")
                meta = MetadataRow(
                    line=row.line,
                    generator=row.generator,
                    task=row.task,
                    prompt=row.prompt,
                    extra=row.extra,
                )
                outcome = stimulus_import_bytes(
                    study, row.filename, path.read_bytes(), meta, "test", limits
                )
            except Rejected as exc:
                report.problems.append(f"line {row.line}: {row.filename}: {exc}")
                continue
            if outcome.status != "imported":
                report.problems.append(f"line {row.line}: {row.filename}: {outcome.reason}")
                continue
            report.imported += 1
            for dim, v in row.values.items():
                results.append(
                    StimulusResult(
                        analysis=analysis,
                        stimulus_id=outcome.stimulus_id,
                        dimension=dim,
                        mos=v["mos"],
                        std=v["std"],
                        n=v["n"],
                    )
                )
        StimulusResult.objects.bulk_create(results, batch_size=5000)
        analysis.n_stimuli = report.imported
        analysis.finished_at = timezone.now()
        analysis.info = {"dimensions": dims, "problems": report.problems[:1000]}
        analysis.save()
    report.study, report.analysis = study, analysis
    return report
