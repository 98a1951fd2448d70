"""Stimuli from a folder or a zip archive, plus an optional metadata CSV.

Every file is checked before anything is stored: size, a format Pillow can
identify among PNG/JPEG/WebP, a pixel-count limit against decompression bombs
(read from the header, before decoding) and a full decode (truncated files
fail). Zip entries with absolute paths or ``..`` are refused (zip-slip).
Duplicates (same sha256 in the study) are skipped. A malformed metadata CSV
aborts the import before any file is stored, naming the line and column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from PIL import Image, UnidentifiedImageError

from annotation.models import MAX_PROMPT_CHARS, Stimulus, Study
from studyweb import storage
from studyweb.boundary import has_control_characters

logger = logging.getLogger("annotation.importing")

ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}
KNOWN_COLUMNS = ("filename", "generator", "task", "prompt", "role", "expected_low", "expected_high")
FILENAME_ALIASES = ("filename", "name", "image", "file")
ROLES = {r.value for r in Stimulus.Role}
# Stimulus.original_name; generator and task (metadata CSV) are shorter.
MAX_NAME_CHARS = 255
MAX_LABEL_CHARS = 128


class ImportAborted(Exception):
    """The whole import was refused; nothing was stored."""


class MetadataError(ImportAborted):
    def __init__(self, line: int, column: str, message: str):
        self.line, self.column = line, column
        super().__init__(f"metadata CSV line {line}, column {column!r}: {message}")


#: At most this many bad rows of a metadata CSV are told at once.
MAX_ROW_ERRORS = 20


class MetadataErrors(MetadataError):
    """Several bad rows, each told, so one upload shows everything to fix (the first
    names the line and column, as a single MetadataError does)."""

    def __init__(self, errors: list[MetadataError], more: int = 0):
        first = errors[0]
        self.line, self.column, self.errors = first.line, first.column, errors
        # One line each (pages list them; the message reads as a list in plain text too).
        told = [str(e).removeprefix("metadata CSV ") for e in errors]
        if more:
            told.append(f"and {more} more")
        ImportAborted.__init__(
            self, f"metadata CSV: {len(errors) + more} rows refused:\n" + "\n".join(told)
        )


class Rejected(Exception):
    """One file refused, with the reason shown in the report."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_pixels: int
    max_archive_bytes: int
    max_members: int
    # Decoded pixels of one import, all files together: decoding is the import's CPU
    # cost, and many small files that each decode to a large image would take minutes.
    max_import_pixels: int = 5_000_000_000
    # What a file past the budget is told to do.
    over_budget: str = "import the rest separately"

    @classmethod
    def from_settings(cls) -> Limits:
        return cls(
            max_bytes=settings.MAX_IMAGE_BYTES,
            max_pixels=settings.MAX_IMAGE_PIXELS,
            max_archive_bytes=settings.MAX_ARCHIVE_BYTES,
            max_members=settings.MAX_ARCHIVE_MEMBERS,
            max_import_pixels=settings.MAX_IMPORT_PIXELS,
        )

    @classmethod
    def for_request(cls) -> Limits:
        """An import inside one web request: the smaller pixel budget of
        MAX_REQUEST_IMPORT_PIXELS (a larger import runs as a job on a worker)."""
        limits = cls.from_settings()
        return replace(
            limits,
            max_import_pixels=min(limits.max_import_pixels, settings.MAX_REQUEST_IMPORT_PIXELS),
            over_budget="send the rest as a background import (?background=1), which has "
            "the larger budget of a job",
        )


@dataclass
class ImportState:
    """What one import has spent and seen: decoded pixels against
    ``Limits.max_import_pixels``, and the outcome of each sha256 so far, so a file
    given many times is decoded at most once."""

    pixels_left: int
    seen: dict[str, FileOutcome] = field(default_factory=dict)
    over_budget: str = "import the rest separately"

    def spend(self, width: int, height: int) -> None:
        pixels = width * height
        if pixels > self.pixels_left:
            raise Rejected(
                f"the import's pixel budget is spent ({pixels:,} more pixels to decode): "
                f"{self.over_budget}"
            )
        self.pixels_left -= pixels


@dataclass
class MetadataRow:
    line: int
    generator: str = ""
    task: str = ""
    prompt: str = ""
    role: str | None = None
    expected_low: float | None = None
    expected_high: float | None = None
    extra: dict = field(default_factory=dict)
    # The typed columns (KNOWN_COLUMNS) the header has but this row leaves empty.
    empty: tuple[str, ...] = ()


@dataclass
class FileOutcome:
    name: str
    status: str  # "imported", "skipped" or "rejected"
    reason: str = ""
    stimulus_id: int | None = None
    with_metadata: bool = False  # a metadata CSV row was applied to it


@dataclass
class ImportReport:
    outcomes: list[FileOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def imported(self) -> int:
        return self.count("imported")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def rejected(self) -> int:
        return self.count("rejected")

    def summary(self) -> str:
        return f"{self.imported} imported, {self.skipped} skipped, {self.rejected} rejected"


@dataclass(frozen=True)
class ImageInfo:
    format: str
    extension: str
    width: int
    height: int


# --- Metadata CSV -------------------------------------------------------------


def _parse_float(text: str, line: int, column: str) -> float | None:
    if text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise MetadataError(line, column, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise MetadataError(line, column, f"{text!r} is not a finite number")
    return value


def _json_value(text: str):
    """Extra columns keep numbers as numbers (e.g. a degradation strength)."""
    if re.fullmatch(r"[+-]?\d+", text.strip()):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def read_metadata_csv(data: bytes, *, study: Study | None = None) -> dict[str, MetadataRow]:
    """Parse a metadata CSV into rows keyed by file name, or raise MetadataError.

    Lines are counted as a spreadsheet shows them (the header is line 1; a quoted
    prompt spanning lines counts each line).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise MetadataError(line, "-", "not valid UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise MetadataError(1, "-", f"unreadable CSV ({exc})") from None
    if not header or all(not h.strip() for h in header):
        raise MetadataError(1, "-", "the file is empty; expected a header with a 'filename' column")
    header = [h.strip() for h in header]
    lowered = [h.lower() for h in header]
    for i, name in enumerate(lowered):
        if not name:
            raise MetadataError(1, f"#{i + 1}", "empty column name in the header")
        if lowered.index(name) != i:
            raise MetadataError(1, header[i], "duplicate column name")
    name_col = next((lowered.index(a) for a in FILENAME_ALIASES if a in lowered), None)
    if name_col is None:
        raise MetadataError(1, "filename", "missing column (the file names go in 'filename')")
    scale = study.scale_def if study is not None else None

    rows: dict[str, MetadataRow] = {}
    errors: list[MetadataError] = []
    more = 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise MetadataError(reader.line_num, "-", f"unreadable CSV ({exc})") from None
        line = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue  # blank lines are harmless
        try:
            key, row = _metadata_row(record, line, header, lowered, name_col, rows, scale)
        except MetadataError as exc:
            # Every bad row told at once (up to MAX_ROW_ERRORS), not one per upload.
            if len(errors) < MAX_ROW_ERRORS:
                errors.append(exc)
            else:
                more += 1
            continue
        rows[key] = row
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise MetadataErrors(errors, more)
    return rows


def _metadata_row(
    record: list[str],
    line: int,
    header: list[str],
    lowered: list[str],
    name_col: int,
    rows: dict[str, MetadataRow],
    scale,
) -> tuple[str, MetadataRow]:
    """One data line of a metadata CSV, checked: (its file name key, its row)."""
    if len(record) != len(header):
        raise MetadataError(
            line, "-", f"expected {len(header)} fields like the header, found {len(record)}"
        )
    for i, cell in enumerate(record):
        # NUL reaches PostgreSQL as an error (text and JSON alike): refused here.
        if has_control_characters(cell):
            raise MetadataError(line, header[i], "control characters (NUL and others)")
    cells = dict(zip(lowered, record, strict=True))
    for column in ("generator", "task"):
        if len(cells.get(column, "").strip()) > MAX_LABEL_CHARS:
            raise MetadataError(line, column, f"longer than {MAX_LABEL_CHARS} characters")
    for column, cell in cells.items():  # the prompt and the extra columns
        if len(cell) > MAX_PROMPT_CHARS:
            raise MetadataError(line, column, f"longer than {MAX_PROMPT_CHARS:,} characters")
    filename = record[name_col].strip()
    if not filename:
        raise MetadataError(line, header[name_col], "empty file name")
    key = PurePosixPath(filename.replace("\\", "/")).as_posix()
    if key in rows:
        raise MetadataError(
            line, header[name_col], f"{filename!r} already listed on line {rows[key].line}"
        )
    row = MetadataRow(line=line)
    row.generator = cells.get("generator", "").strip()
    row.task = cells.get("task", "").strip()
    row.prompt = cells.get("prompt", "").strip()
    role = cells.get("role", "").strip().lower()
    if role:
        if role not in ROLES:
            raise MetadataError(line, "role", f"{role!r} is not one of {', '.join(sorted(ROLES))}")
        row.role = role
    row.expected_low = _parse_float(cells.get("expected_low", ""), line, "expected_low")
    row.expected_high = _parse_float(cells.get("expected_high", ""), line, "expected_high")
    if (row.expected_low is None) != (row.expected_high is None):
        missing = "expected_high" if row.expected_high is None else "expected_low"
        raise MetadataError(line, missing, "give both ends of the expected range or neither")
    if row.expected_low is not None and row.expected_low > row.expected_high:
        raise MetadataError(line, "expected_high", "is below expected_low")
    if scale is not None and row.expected_low is not None:
        for col, value in (
            ("expected_low", row.expected_low),
            ("expected_high", row.expected_high),
        ):
            if not scale.minimum <= value <= scale.maximum:
                raise MetadataError(
                    line,
                    col,
                    f"{value:g} is outside the study's scale {scale.minimum:g}-{scale.maximum:g}",
                )
    row.empty = tuple(c for c in KNOWN_COLUMNS[1:] if c in cells and cells[c].strip() == "")
    row.extra = {
        header[i]: _json_value(value)
        for i, (name, value) in enumerate(zip(lowered, record, strict=True))
        if i != name_col and name not in KNOWN_COLUMNS and value.strip() != ""
    }
    return key, row


# --- Image checks -------------------------------------------------------------


def inspect_image(data: bytes, *, max_pixels: int, state: ImportState | None = None) -> ImageInfo:
    """Identify, size-check and fully decode an image, or raise Rejected (the import's
    pixel budget, if given, is charged from the header, before decoding)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format or "?"
                if fmt not in ALLOWED_FORMATS:
                    raise Rejected(f"unsupported format {fmt} (PNG, JPEG or WebP only)")
                width, height = im.size
                if width < 1 or height < 1:
                    raise Rejected("the image has no pixels")
                # Checked from the header, before a single pixel is decoded.
                if width * height > max_pixels:
                    raise Rejected(
                        f"too many pixels ({width}x{height} = {width * height:,} > "
                        f"{max_pixels:,}): possible decompression bomb"
                    )
                if getattr(im, "n_frames", 1) > 1:
                    raise Rejected("animated images are not supported")
                if state is not None:
                    state.spend(width, height)
                im.load()  # a truncated or corrupt file fails here
    except Rejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Rejected(f"too many pixels: possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise Rejected("not an image (PNG, JPEG or WebP expected)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise Rejected(f"truncated or corrupt image ({exc})") from None
    return ImageInfo(fmt, ALLOWED_FORMATS[fmt], width, height)


# --- Sources ------------------------------------------------------------------

_UNSAFE_NAME = re.compile(r"^([A-Za-z]:|[\\/])")


def _is_ignorable(parts: tuple[str, ...]) -> bool:
    # Finder and Explorer litter: not stimuli, not worth a "rejected" line.
    return any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1] in {
        "Thumbs.db",
        "desktop.ini",
    }


def _folder_entries(root: Path, limits: Limits, skip: set[Path]) -> Iterator[tuple[str, object]]:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or _is_ignorable(rel.parts) or path.resolve() in skip:
            continue
        name = rel.as_posix()
        if path.is_symlink():
            yield name, Rejected("symbolic links are not followed")
            continue
        size = path.stat().st_size
        if size > limits.max_bytes:
            yield name, Rejected(f"file too large ({size:,} bytes > {limits.max_bytes:,})")
            continue
        yield name, path.read_bytes


def _zip_entries(archive: zipfile.ZipFile, limits: Limits) -> Iterator[tuple[str, object]]:
    for info in archive.infolist():
        raw = info.filename
        if info.is_dir():
            continue
        parts = tuple(p for p in raw.replace("\\", "/").split("/") if p)
        if _UNSAFE_NAME.match(raw) or ".." in parts or not parts:
            yield raw, Rejected("unsafe path in archive (absolute or containing '..')")
            continue
        if _is_ignorable(parts):
            continue
        name = "/".join(parts)
        if info.flag_bits & 0x1:
            yield name, Rejected("encrypted archive entry")
            continue
        if info.file_size > limits.max_bytes:
            yield (
                name,
                Rejected(f"file too large ({info.file_size:,} bytes > {limits.max_bytes:,})"),
            )
            continue

        def read(info=info):
            # Read at most one byte past the limit: the header's size may lie.
            with archive.open(info) as handle:
                data = handle.read(limits.max_bytes + 1)
            if len(data) > limits.max_bytes:
                raise Rejected(f"file too large (more than {limits.max_bytes:,} bytes)")
            return data

        yield name, read


def open_archive(path: Path, limits: Limits) -> zipfile.ZipFile:
    if path.stat().st_size > limits.max_archive_bytes:
        raise ImportAborted(f"{path.name}: archive larger than {limits.max_archive_bytes:,} bytes")
    return open_zip(path, path.name, limits)


def open_zip(file: Path | IO[bytes], name: str, limits: Limits) -> zipfile.ZipFile:
    """Open a zip (a path or a seekable file) and check its directory against the
    limits (entries, expanded size) before a single entry is read, or raise
    ImportAborted. The upload page calls it too, so a broken archive is refused on
    the form before any job exists."""
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ImportAborted(f"{name}: broken or unreadable zip archive ({exc})") from None
    members = archive.infolist()
    if len(members) > limits.max_members:
        archive.close()
        raise ImportAborted(f"{name}: {len(members):,} entries (limit {limits.max_members:,})")
    expanded = sum(m.file_size for m in members)
    if expanded > limits.max_archive_bytes:
        archive.close()
        raise ImportAborted(
            f"{name}: expands to {expanded:,} bytes (limit {limits.max_archive_bytes:,})"
        )
    return archive


def zip_entry_count(archive: zipfile.ZipFile, limits: Limits) -> int:
    """How many lines the import's report will have for this archive (its files less
    the ignorable litter); nothing is read but the directory."""
    return sum(1 for _ in _zip_entries(archive, limits))


# --- The import ---------------------------------------------------------------


def stimuli_import(
    *,
    study: Study,
    source: Path,
    metadata_csv: Path | None = None,
    role: str = Stimulus.Role.TEST,
    limits: Limits | None = None,
    progress: Callable[[FileOutcome], None] | None = None,
) -> ImportReport:
    """Import every image of a folder or zip into ``study``; see the module docstring.

    ``progress`` is called with each file's outcome as soon as it is known (a
    background import counts its progress with it; an exception it raises stops the
    import, the files handled so far staying imported)."""
    limits = limits or Limits.from_settings()
    if role not in ROLES:
        raise ImportAborted(f"unknown role {role!r}; use one of {sorted(ROLES)}")
    source = Path(source)
    if not source.exists():
        raise ImportAborted(f"{source}: no such file or folder")
    metadata: dict[str, MetadataRow] = {}
    skip: set[Path] = set()
    if metadata_csv is not None:
        metadata_csv = Path(metadata_csv)
        try:
            raw = metadata_csv.read_bytes()
        except OSError as exc:
            raise ImportAborted(f"cannot read metadata CSV {metadata_csv}: {exc}") from None
        metadata = read_metadata_csv(raw, study=study)
        skip.add(metadata_csv.resolve())

    report = ImportReport()
    if source.is_dir():
        entries = _folder_entries(source, limits, skip)
        _import_entries(study, entries, metadata, role, limits, report, progress)
    elif zipfile.is_zipfile(source) or source.suffix.lower() == ".zip":
        with open_archive(source, limits) as archive:
            entries = _zip_entries(archive, limits)
            _import_entries(study, entries, metadata, role, limits, report, progress)
    else:
        raise ImportAborted(f"{source}: neither a folder nor a zip archive")

    seen = {o.name for o in report.outcomes} | {PurePosixPath(o.name).name for o in report.outcomes}
    for key, row in metadata.items():
        if key not in seen:
            report.warnings.append(f"metadata line {row.line}: no file named {key!r} in the source")
    report.warnings.extend(_gold_warnings(metadata, role))
    return report


def _gold_warnings(metadata: dict[str, MetadataRow], default_role: str) -> list[str]:
    """Gold rows with typed columns left empty: a free column may be anything, but a
    gold item without its range is refused and one without a generator or task is
    hard to find again, so the report says which line lacks what."""
    warnings = []
    for key, row in metadata.items():
        if (row.role or default_role) != Stimulus.Role.GOLD:
            continue
        empty = [c for c in row.empty if c not in ("role", "prompt")]
        if row.expected_low is None:
            empty += [c for c in ("expected_low", "expected_high") if c not in empty]
        if empty:
            warnings.append(
                f"metadata line {row.line}: gold item {key!r} has no {', '.join(empty)}"
            )
    return warnings


def _lookup(metadata: dict[str, MetadataRow], name: str) -> MetadataRow | None:
    return metadata.get(name) or metadata.get(PurePosixPath(name).name)


def _import_entries(study, entries, metadata, role, limits, report, progress=None) -> None:
    state = ImportState(pixels_left=limits.max_import_pixels, over_budget=limits.over_budget)
    for name, reader in entries:
        try:
            if isinstance(reader, Rejected):
                raise reader
            try:
                data = reader()
            except (zipfile.BadZipFile, OSError, EOFError, zipfile.LargeZipFile) as exc:
                raise Rejected(f"unreadable entry ({exc})") from None
            outcome = stimulus_import_bytes(
                study, name, data, _lookup(metadata, name), role, limits, state=state
            )
        except Rejected as exc:
            outcome = FileOutcome(name, "rejected", str(exc))
        report.outcomes.append(outcome)
        if progress is not None:
            progress(outcome)


def stimulus_import_bytes(
    study, name, data, row, default_role, limits, *, state: ImportState | None = None
) -> FileOutcome:
    if len(name) > MAX_NAME_CHARS:
        raise Rejected(f"file name longer than {MAX_NAME_CHARS} characters")
    if has_control_characters(name, free_text=False):
        raise Rejected("control characters in the file name")
    if len(data) > limits.max_bytes:
        raise Rejected(f"file too large ({len(data):,} bytes > {limits.max_bytes:,})")
    if not data:
        raise Rejected("empty file")
    # Duplicates are found by sha256 before any decoding: a file given many times (in
    # the upload or already in the study) costs one hash, not one decode, per copy.
    sha = hashlib.sha256(data).hexdigest()
    if state is not None and (first := state.seen.get(sha)) is not None:
        if first.status == "rejected":
            raise Rejected(first.reason)
        return FileOutcome(name, "skipped", f"duplicate of {first.name} (same sha256)")
    existing = Stimulus.objects.filter(study=study, sha256=sha).values_list(
        "original_name", flat=True
    )
    if existing:
        return FileOutcome(name, "skipped", f"duplicate of {existing[0]} (same sha256)")
    try:
        outcome = _stimulus_store(study, name, data, sha, row, default_role, limits, state)
    except Rejected as exc:
        if state is not None:
            state.seen[sha] = FileOutcome(name, "rejected", str(exc))
        raise
    if state is not None:
        state.seen[sha] = outcome
    return outcome


def _stimulus_store(study, name, data, sha, row, default_role, limits, state) -> FileOutcome:
    info = inspect_image(data, max_pixels=limits.max_pixels, state=state)
    role = (row.role if row and row.role else None) or default_role
    low = row.expected_low if row else None
    high = row.expected_high if row else None
    if role == Stimulus.Role.GOLD and low is None:
        raise Rejected("gold items need expected_low and expected_high in the metadata CSV")
    stimulus = Stimulus(
        study=study,
        original_name=name,
        sha256=sha,
        width=info.width,
        height=info.height,
        byte_size=len(data),
        role=role,
        generator=row.generator if row else "",
        task=row.task if row else "",
        prompt=row.prompt if row else "",
        metadata=dict(row.extra) if row else {},
        expected_low=low,
        expected_high=high,
    )
    stored = f"{study.slug}/{sha[:2]}/{sha}.{info.extension}"
    # The file first, then its row; a row that is not written takes its file back
    # with it: never a row without its file, nor (store permitting) a file without row.
    try:
        stimulus.image.save(stored, ContentFile(data), save=False)
    except storage.STORE_ERRORS as exc:
        raise storage.unavailable(exc, f"storing {name}") from exc
    try:
        with transaction.atomic():
            stimulus.save()
    except IntegrityError:
        _delete_image(stimulus)
        if Stimulus.objects.filter(study=study, sha256=sha).exists():
            # Another import of the same file won the race: keep one copy.
            return FileOutcome(name, "skipped", "duplicate (same sha256, imported concurrently)")
        raise
    except BaseException:
        _delete_image(stimulus)
        raise
    # What was applied, so the report shows the CSV's effect file by file.
    applied = [f"{info.width}×{info.height} {info.format}", f"role {role}"]
    if stimulus.generator:
        applied.append(f"generator {stimulus.generator}")
    if stimulus.task:
        applied.append(f"task {stimulus.task}")
    if stimulus.expected_low is not None:
        applied.append(f"expected {stimulus.expected_low:g}–{stimulus.expected_high:g}")
    if stimulus.metadata:
        applied.append(f"{len(stimulus.metadata)} more field(s)")
    return FileOutcome(name, "imported", ", ".join(applied), stimulus.pk, row is not None)


def _delete_image(stimulus: Stimulus) -> None:
    try:
        stimulus.image.delete(save=False)
    except storage.STORE_ERRORS:
        logger.exception("could not delete %s after its row failed", stimulus.image.name)
