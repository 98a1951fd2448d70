"""Export jobs: a dataset written to a file by a worker, downloaded later."""

from __future__ import annotations

from django.db import models

from annotation.models import Study
from scoring.analyses.models import Analysis
from studyweb.jobs import Job


class ExportJob(Job):
    """An export written to a file by a worker (queue ``default``), for studies too big
    to stream within one HTTP request."""

    task_name = "scoring.tasks.run_export"
    noun = "export"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="export_jobs")
    format = models.CharField(max_length=32)
    analysis = models.ForeignKey(Analysis, null=True, blank=True, on_delete=models.SET_NULL)
    file = models.FileField(upload_to="exports/", max_length=300, blank=True)
    size = models.PositiveBigIntegerField(default=0)

    class Meta(Job.Meta):
        pass

    def __str__(self) -> str:
        return f"{self.format} export of {self.study.slug} ({self.status})"
