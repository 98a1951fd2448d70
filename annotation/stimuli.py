"""A study's stimuli after import: background imports (ImportJob), role changes and
removal. The pages and the API call these; none of them takes a request.

Imports: :func:`import_job_create` checks everything it can before a job exists
(sizes, a readable zip, the metadata CSV parsed with its line and column), stores
the upload as one zip (many image files uploaded together are packed into one)
and sends the job; :func:`import_job_run` is the worker's side (the task
``annotation.tasks.run_import``): the per-file checks of :mod:`annotation.importing`,
``done`` counted as files are handled, the per-file report stored at the end.

Role changes: a stimulus whose role was the context of counted ratings keeps it
(see :func:`stimulus_set_role`). Removal: only a stimulus nobody has rated, pilot
ratings included (see :func:`stimulus_remove`).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO

from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile as Upload
from django.db import DatabaseError, transaction
from django.db.models import ProtectedError
from django.db.models.fields.files import FieldFile
from django.utils import timezone

from annotation import importing
from annotation.models import Claim, ImportJob, Rating, Stimulus, Study
from studyweb import jobs, storage
from studyweb.errors import ServiceError

logger = logging.getLogger("annotation.stimuli")

ROLES = [r.value for r in Stimulus.Role]
#: A background import writes its progress at most this often (seconds).
PROGRESS_EVERY = 0.5
#: The status of the report row that names the metadata CSV (its first row): the
#: job keeps the CSV's uploaded name there, as the stored CSV is deleted once imported.
CSV_ROW = "metadata"


class StimulusError(ServiceError):
    """An upload, role change or removal refused; nothing was changed."""


# --- Import jobs -----------------------------------------------------------------


def _name(upload: Upload) -> str:
    # Browsers send a bare name; a script may send a path. Keep the last part.
    return PurePosixPath((upload.name or "upload").replace("\\", "/")).name or "upload"


def _size(upload: Upload) -> int:
    return int(upload.size or 0)


def _is_zip(upload: Upload) -> bool:
    if _name(upload).lower().endswith(".zip"):
        return True
    upload.seek(0)
    head = upload.read(4)
    upload.seek(0)
    return head in (b"PK\x03\x04", b"PK\x05\x06")


def _check_metadata(study: Study, metadata: Upload | None, limits: importing.Limits) -> bytes:
    if metadata is None:
        return b""
    size = _size(metadata)
    if size > limits.max_bytes:
        raise StimulusError(
            f"{_name(metadata)} is too large for a metadata CSV ({size:,} bytes > "
            f"{limits.max_bytes:,})",
            field="metadata",
            code="too_large",
        )
    metadata.seek(0)
    data = b"".join(metadata.chunks())
    try:
        importing.read_metadata_csv(data, study=study)
    except importing.MetadataError as exc:
        raise StimulusError(str(exc), field="metadata", code="metadata") from None
    return data


def _checked_zip(upload: Upload, limits: importing.Limits) -> int:
    """The number of report lines the archive will give; refuses a broken or
    oversized archive, or one with nothing in it."""
    name, size = _name(upload), _size(upload)
    if size > limits.max_archive_bytes:
        raise StimulusError(
            f"{name} is too large ({size:,} bytes > {limits.max_archive_bytes:,})",
            field="files",
            code="too_large",
        )
    upload.seek(0)
    try:
        with importing.open_zip(upload, name, limits) as archive:
            count = importing.zip_entry_count(archive, limits)
    except importing.ImportAborted as exc:
        raise StimulusError(str(exc), field="files", code="bad_archive") from None
    finally:
        upload.seek(0)
    if count == 0:
        raise StimulusError(f"{name} holds no files to import", field="files", code="empty")
    return count


def _check_images(uploads: Sequence[Upload], limits: importing.Limits) -> None:
    too_large = [f"{_name(u)} ({_size(u):,} bytes)" for u in uploads if _size(u) > limits.max_bytes]
    if too_large:
        raise StimulusError(
            f"too large (more than {limits.max_bytes:,} bytes per image): "
            + ", ".join(too_large[:5])
            + (f" and {len(too_large) - 5} more" if len(too_large) > 5 else ""),
            field="files",
            code="too_large",
        )
    total = sum(_size(u) for u in uploads)
    if total > limits.max_archive_bytes:
        raise StimulusError(
            f"{len(uploads)} files of {total:,} bytes in all: more than one upload may hold "
            f"({limits.max_archive_bytes:,} bytes)",
            field="files",
            code="too_large",
        )


def _pack(uploads: Sequence[Upload], spool: IO[bytes]) -> None:
    """Many uploaded files as one zip, stored (images are compressed already); a name
    given twice (same name from two folders) gets a suffix, so both are reported."""
    used: set[str] = set()
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for upload in uploads:
            name = _name(upload)
            stem, dot, ext = name.rpartition(".")
            candidate, n = name, 1
            while candidate in used:
                n += 1
                candidate = f"{stem}~{n}.{ext}" if dot else f"{name}~{n}"
            used.add(candidate)
            upload.seek(0)
            with archive.open(candidate, "w", force_zip64=True) as entry:
                for chunk in upload.chunks():
                    entry.write(chunk)
    spool.seek(0)


def import_job_create(
    *,
    study: Study,
    user=None,
    files: Sequence[Upload],
    metadata: Upload | None = None,
    default_role: str = Stimulus.Role.TEST,
    enqueue: bool = True,
) -> ImportJob:
    """Check an upload and make it an import job, sent to a worker once committed.

    ``files``: one zip archive, or any number of image files (packed into one zip).
    Refused before anything is stored (StimulusError naming the field ``files``,
    ``metadata`` or ``default_role``): no file, a zip mixed with other files, a size
    over MAX_IMAGE_BYTES (per image, and for the CSV) or MAX_ARCHIVE_BYTES (an
    archive, or the files together), a broken zip or one over the entry limits, a
    metadata CSV that does not parse (its line and column in the message), gold as
    the default role without a metadata CSV. Raises BrokerUnavailable (the job
    saved, waiting) when the broker does not take it.
    """
    limits = importing.Limits.from_settings()
    if default_role not in ROLES:
        raise StimulusError(
            f"{default_role!r} is not a role; use one of {', '.join(ROLES)}",
            field="default_role",
        )
    files = [f for f in files if f is not None]
    if not files:
        raise StimulusError(
            "choose a zip archive or one or more image files", field="files", code="required"
        )
    zips = [f for f in files if _is_zip(f)]
    if zips and len(files) > 1:
        raise StimulusError(
            "upload one zip archive, or image files without an archive, not both",
            field="files",
            code="mixed",
        )
    if default_role == Stimulus.Role.GOLD and metadata is None:
        raise StimulusError(
            "gold items need expected_low and expected_high: give them in a metadata CSV, "
            "or import with another role",
            field="default_role",
            code="gold_needs_range",
        )
    if zips:
        total = _checked_zip(zips[0], limits)
        archive_name = _name(zips[0])
    else:
        _check_images(files, limits)
        total = len(files)
        archive_name = _name(files[0]) if len(files) == 1 else f"{len(files)} files"
    metadata_bytes = _check_metadata(study, metadata, limits)

    job = ImportJob(
        study=study,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        archive_name=archive_name[:255],
        default_role=default_role,
        total=total,
        waiting_for_broker=enqueue,
    )
    if metadata is not None:
        job.report = [_csv_row(_name(metadata)[:255], "")]
    stored = f"{study.slug}-{uuid.uuid4().hex}"
    try:
        if zips:
            job.archive.save(f"{stored}.zip", zips[0], save=False)
        else:
            with tempfile.TemporaryFile() as spool:
                _pack(files, spool)
                job.archive.save(f"{stored}.zip", File(spool), save=False)
        if metadata is not None:
            job.metadata.save(f"{stored}.csv", ContentFile(metadata_bytes), save=False)
        job.save()
    except storage.STORE_ERRORS as exc:
        _delete_upload(job)  # no row refers to the stored files
        raise StimulusError(
            str(storage.unavailable(exc, "storing the upload")),
            field="files",
            code="storage_unavailable",
            status=503,
        ) from None
    except BaseException:
        _delete_upload(job)  # no row refers to the stored files
        raise
    if enqueue:
        # Sent once the row (and so the stored upload's name) is visible to a worker;
        # at once when no transaction is open (a page, the API).
        transaction.on_commit(partial(jobs.job_send, job))
    return job


def _delete_upload(job: ImportJob) -> list[str]:
    """Delete the stored upload; returns the fields whose file is gone (a store that
    is away keeps its file, and the row keeps naming it, so nothing is orphaned)."""
    gone = []
    for field, stored in (("archive", job.archive), ("metadata", job.metadata)):
        if not stored:
            gone.append(field)
            continue
        try:
            stored.delete(save=False)
        except storage.STORE_ERRORS:
            logger.warning("%s: could not delete the upload %s yet", job.label, stored.name)
        else:
            gone.append(field)
    return gone


@contextlib.contextmanager
def _local_path(stored: FieldFile) -> Iterator[Path | None]:
    """A filesystem path for a stored file (a copy for storages without paths)."""
    if not stored or not stored.name:
        yield None
        return
    with storage.local_copy(stored.name, storage=stored.storage) as path:
        yield path


class _Cancelled(Exception):
    pass


class _Progress:
    """Counts outcomes; writes ``done`` and the running counts at most every
    PROGRESS_EVERY seconds, and stops the import when the job was cancelled."""

    def __init__(self, job: ImportJob):
        self.job = job
        self.counts = {"imported": 0, "skipped": 0, "rejected": 0}
        self.done = 0
        self.written_at = time.monotonic()

    def __call__(self, outcome: importing.FileOutcome) -> None:
        self.done += 1
        self.counts[outcome.status] = self.counts.get(outcome.status, 0) + 1
        now = time.monotonic()
        if now - self.written_at >= PROGRESS_EVERY or self.done == self.job.total:
            self.write()
            self.written_at = now

    def write(self) -> None:
        updated = ImportJob.objects.filter(pk=self.job.pk, status=ImportJob.Status.RUNNING).update(
            done=self.done,
            total=max(self.job.total, self.done),
            **self.counts,
        )
        if not updated:
            raise _Cancelled


def import_job_run(*, job_id: int) -> ImportJob | None:
    """Run an import job (the worker's task): each file committed as it is handled,
    so the page sees ``done`` grow; the report stored when the last one is done.

    Idempotent: a finished job is left as it is; a job delivered again after its
    worker died runs again, and the files it had imported are reported skipped
    (same sha256). The uploaded archive is deleted once the job has finished.
    """
    job = ImportJob.objects.select_related("study").filter(pk=job_id).first()
    if job is None:
        logger.info("import %s is gone (its study was deleted): nothing to run", job_id)
        return None
    if job.status in ImportJob.FINISHED:
        return job
    if not jobs.job_mark_running(ImportJob, job.pk):
        job.refresh_from_db()
        if job.status != ImportJob.Status.RUNNING:
            return job  # cancelled meanwhile
    progress = _Progress(job)
    try:
        with _local_path(job.archive) as source, _local_path(job.metadata) as csv_path:
            if source is None:
                raise importing.ImportAborted("the uploaded archive is missing from storage")
            report = importing.stimuli_import(
                study=job.study,
                source=source,
                metadata_csv=csv_path,
                role=job.default_role,
                progress=progress,
            )
    except _Cancelled:
        logger.info("%s cancelled after %d file(s)", job.label, progress.done)
        _finish_cleanup(job)
        job.refresh_from_db()
        return job
    except importing.MetadataError as exc:
        jobs.job_mark_failed(ImportJob, job.pk, error=str(exc), code="metadata", field="metadata")
        _finish_cleanup(job)
    except storage.StoreUnavailable as exc:
        # Each file is stored before its row is written and deleted if the row is not,
        # so what was imported is whole; running the job again skips it (same sha256).
        logger.warning("%s: %s", job.label, exc)
        with contextlib.suppress(_Cancelled):
            progress.write()  # the files handled before it, as the page shows them
        jobs.job_mark_failed(
            ImportJob, job.pk, error=str(exc), code="storage_unavailable", field="files"
        )
        _finish_cleanup(job)
    except importing.ImportAborted as exc:
        jobs.job_mark_failed(
            ImportJob, job.pk, error=str(exc), code="import_aborted", field="files"
        )
        _finish_cleanup(job)
    except DatabaseError:
        raise  # the database blinked: the task is retried and runs the job again
    except Exception as exc:
        # Anything else (an unreadable stored upload, a bug) would fail the same way
        # again: the row says so and the log has the traceback; the task ends there.
        logger.exception("%s failed", job.label)
        jobs.job_mark_failed(ImportJob, job.pk, error=f"{type(exc).__name__}: {exc}", field="files")
        _finish_cleanup(job)
    else:
        rows = [{"name": o.name, "status": o.status, "reason": o.reason} for o in report.outcomes]
        csv = next((r for r in job.report[:1] if r.get("status") == CSV_ROW), None)
        if csv is not None:
            applied = sum(1 for o in report.outcomes if o.with_metadata)
            rows.insert(0, _csv_row(csv["name"], f"metadata CSV, applied to {applied} file(s)"))
        rows += [
            {"name": "metadata CSV", "status": "warning", "reason": w} for w in report.warnings
        ]
        jobs.job_mark_done(
            ImportJob,
            job.pk,
            done=len(report.outcomes),
            total=len(report.outcomes),
            imported=report.imported,
            skipped=report.skipped,
            rejected=report.rejected,
            report=rows,
        )
        _finish_cleanup(job)
        logger.info("%s done: %s", job.label, report.summary())
    job.refresh_from_db()
    return job


def _csv_row(name: str, reason: str) -> dict:
    return {"name": name, "status": CSV_ROW, "reason": reason or "metadata CSV"}


def _finish_cleanup(job: ImportJob) -> None:
    """The upload is not needed once the job has finished (the report stays)."""
    gone = _delete_upload(job)
    if gone:
        ImportJob.objects.filter(pk=job.pk).update(**{field: "" for field in gone})


def import_job_public(job: ImportJob, *, with_report: bool = True) -> dict:
    """The job as the progress bar and the API read it (the report once finished)."""
    body = {
        "id": job.pk,
        "status": job.status,
        "done": job.done,
        "total": job.total,
        "percent": round(job.percent, 1),
        "imported": job.imported,
        "skipped": job.skipped,
        "rejected": job.rejected,
        "archive_name": job.archive_name,
        "default_role": job.default_role,
        "waiting_for_broker": job.waiting_for_broker,
        "error": job.error,
        "error_code": job.error_code,
        "error_field": job.error_field,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "finished": job.status in ImportJob.FINISHED,
    }
    if with_report:
        body["report"] = job.report if job.status in ImportJob.FINISHED else []
    return body


# --- Roles and removal --------------------------------------------------------------


def counted_ratings(stimulus: Stimulus) -> int:
    """Ratings that count (pilot ratings never do), both repetitions."""
    return Rating.objects.filter(stimulus=stimulus, is_pilot=False).count()


def stimulus_set_role(*, stimulus: Stimulus, role: str) -> Stimulus:
    """Change a stimulus's role (test, training, gold).

    The rule: a stimulus with counted ratings keeps its role. The ratings were
    collected for that role and what they mean follows it: test ratings make the
    MOS (which reads the current role, so test -> gold or training would drop
    them from every analysis), gold ratings judged raters and were shown to many
    of them (gold -> test would pour them into the MOS). Pilot ratings never
    count, so a stimulus rated only in a preview may change. A gold item needs
    its expected range (expected_low, expected_high), given by the metadata CSV.
    """
    if role not in ROLES:
        raise StimulusError(f"{role!r} is not a role; use one of {', '.join(ROLES)}", field="role")
    with transaction.atomic():
        locked = Stimulus.objects.select_for_update().get(pk=stimulus.pk)
        if locked.role == role:
            stimulus.role = role
            return stimulus
        if role == Stimulus.Role.GOLD and (
            locked.expected_low is None or locked.expected_high is None
        ):
            raise StimulusError(
                f"{locked.original_name} has no expected range: a gold item needs "
                "expected_low and expected_high (import it with a metadata CSV that gives them)",
                field="role",
                code="gold_needs_range",
            )
        rated = counted_ratings(locked)
        if rated:
            raise StimulusError(
                f"{locked.original_name} keeps its role ({locked.role}): it has {rated} "
                f"rating(s) collected as a {locked.role} item, and changing the role would "
                "change what they mean",
                field="role",
                code="rated",
                status=409,
            )
        Stimulus.objects.filter(pk=locked.pk).update(role=role)
    stimulus.role = role
    return stimulus


def stimulus_remove(*, stimulus: Stimulus) -> None:
    """Delete a stimulus nobody has rated (pilot ratings included: they are kept for
    the researcher) and that no rater is looking at now; its image file goes too."""
    with transaction.atomic():
        locked = Stimulus.objects.select_for_update().get(pk=stimulus.pk)
        ratings = Rating.objects.filter(stimulus=locked)
        n, pilot = ratings.count(), ratings.filter(is_pilot=True).count()
        if n:
            which = f" ({pilot} of them pilot)" if pilot else ""
            raise StimulusError(
                f"{locked.original_name} has {n} rating(s){which}; only a stimulus nobody "
                "has rated can be removed",
                field="stimulus",
                code="rated",
                status=409,
            )
        live = Claim.objects.filter(stimulus=locked, expires_at__gt=timezone.now()).count()
        if live:
            raise StimulusError(
                f"{locked.original_name} is being rated right now ({live} rater(s) have it "
                "on screen); try again in a few minutes",
                field="stimulus",
                code="claimed",
                status=409,
            )
        image = locked.image.name or ""
        try:
            locked.delete()
        except ProtectedError:
            # A rating was written between the count and the delete.
            raise StimulusError(
                f"{locked.original_name} was just rated; it is kept",
                field="stimulus",
                code="rated",
                status=409,
            ) from None
        storage = locked.image.storage
        transaction.on_commit(partial(_delete_file, storage, image))


def _delete_file(storage, name: str) -> None:
    # Stored names are per study and content, but a copied row (a script, the admin)
    # may share one: the file goes only when no stimulus refers to it any more.
    if name and not Stimulus.objects.filter(image=name).exists():
        with contextlib.suppress(OSError):
            storage.delete(name)
