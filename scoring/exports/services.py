"""Export jobs (a file written by a worker, downloaded later) and the HTTP
downloads the study page and the API share."""

from __future__ import annotations

import tempfile

from django.core.files import File
from django.http import FileResponse, HttpResponseRedirect, StreamingHttpResponse
from django.utils import timezone

from annotation.models import Study
from scoring.exports.formats import ExportError, ExportFormat, export_checked, export_stream
from scoring.models import Analysis, ExportJob
from studyweb import jobs, storage


def export_job_start(
    *, study: Study, fmt: str, analysis: Analysis | None = None, user=None, enqueue: bool = True
) -> ExportJob:
    """Record an export job and send it to a worker; the format and analysis are
    checked now. Raises BrokerUnavailable (the job saved, waiting) when the broker
    is down."""
    _, analysis = export_checked(study, fmt, analysis)
    job = ExportJob.objects.create(
        study=study, format=fmt, analysis=analysis, created_by=user, waiting_for_broker=enqueue
    )
    if enqueue:
        jobs.job_send(job)
    return job


def export_job_run(*, job_id: int) -> None:
    """Write the export to storage (a temporary name first), then record it."""
    job = ExportJob.objects.select_related("study", "analysis").get(pk=job_id)
    if job.status in ExportJob.FINISHED:
        return
    ExportJob.objects.filter(pk=job.pk, status=ExportJob.Status.QUEUED).update(
        status=ExportJob.Status.RUNNING, started_at=timezone.now()
    )
    try:
        exporter, chunks = export_stream(job.study, job.format, analysis=job.analysis)
        with tempfile.TemporaryFile() as spool:
            size = 0
            for chunk in chunks:
                spool.write(chunk)
                size += len(chunk)
            spool.seek(0)
            name = f"{job.study.slug}-{exporter.name}-{job.pk}.{exporter.extension}"
            job.file.save(name, File(spool), save=False)
        jobs.job_mark_done(ExportJob, job.pk, file=job.file.name, size=size, total=1, done=1)
    except ExportError as exc:
        jobs.job_mark_failed(
            ExportJob, job.pk, error=str(exc), code=exc.code, field=exc.field or ""
        )
    except storage.STORE_ERRORS as exc:
        # The file is one object, written whole or not at all: nothing to clean up.
        error = storage.unavailable(exc, "storing the export")
        jobs.job_mark_failed(ExportJob, job.pk, error=str(error), code="storage_unavailable")
    except Exception as exc:
        jobs.job_mark_failed(ExportJob, job.pk, error=f"{type(exc).__name__}: {exc}")
        raise


# --- HTTP downloads (the study page and the API share these) ---------------------


def analysis_from_param(study: Study, raw: str | None) -> Analysis | None:
    """The ``?analysis=`` of a download, or None; LookupError when it is not this study's."""
    if not raw:
        return None
    try:
        return Analysis.objects.get(pk=int(raw), study=study)
    except (ValueError, Analysis.DoesNotExist):
        raise LookupError("no such analysis of this study") from None


def streaming_download(study: Study, exporter: ExportFormat, chunks, analysis=None):
    """A StreamingHttpResponse with an attachment name that says what it holds."""
    response = StreamingHttpResponse(chunks, content_type=exporter.content_type)
    suffix = f"-analysis{analysis.pk}" if analysis else ""
    filename = f"{study.slug}-{exporter.name}{suffix}.{exporter.extension}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def export_file_response(job: ExportJob, exporter: ExportFormat):
    """A finished export's file: streamed from MEDIA_ROOT, or, from an object store, a
    redirect to a presigned URL that expires (the bytes never pass through the web
    process, so its memory stays flat whatever the file's size)."""
    name = job.file.name or ""
    filename = name.rsplit("/", 1)[-1]
    if storage.is_local(job.file.storage):
        return FileResponse(
            job.file.open("rb"),
            as_attachment=True,
            filename=filename,
            content_type=exporter.content_type,
        )
    # S3Storage.url takes the presigned request's parameters (Storage.url does not).
    url = job.file.storage.url(  # type: ignore[call-arg]
        name,
        parameters={
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
            "ResponseContentType": exporter.content_type,
        },
    )
    return HttpResponseRedirect(url)
