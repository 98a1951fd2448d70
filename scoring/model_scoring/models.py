"""Model scoring: model versions, scoring jobs and the predictions they write."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from annotation.models import Stimulus, Study
from studyweb.jobs import Job


class ModelVersion(models.Model):
    """A model that can score images: a JOINT checkpoint, a TorchScript model, or a
    weight-free baseline. The checkpoint's sha256 is verified when it is loaded."""

    class Kind(models.TextChoices):
        JOINT = "joint", "JOINT checkpoint"
        BASELINE = "baseline", "Weight-free baseline"
        TORCHSCRIPT = "torchscript", "TorchScript model"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    description = models.TextField(blank=True)
    checkpoint_path = models.CharField(
        max_length=500, blank=True, help_text="A file readable by the GPU workers."
    )
    checkpoint_sha256 = models.CharField(max_length=64, blank=True)
    baseline = models.CharField(
        max_length=32, blank=True, help_text="For kind=baseline: which attribute scorer."
    )
    fusion_w_t = models.FloatField(default=0.145, help_text="Naturalness = w_t * T + w_r * R")
    fusion_w_r = models.FloatField(default=0.769)
    options = models.JSONField(
        default=dict, blank=True, help_text="Preprocessing options (lfm_order, artifact_model...)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="baseline") | ~Q(baseline=""), name="model_version_baseline_named"
            ),
            models.CheckConstraint(
                condition=Q(kind="baseline") | ~Q(checkpoint_path=""),
                name="model_version_checkpoint_given",
            ),
        ]

    def __str__(self) -> str:
        return self.name


#: The most images one batch task predicts at once (the API, the service and a check in
#: the database agree on it).
BATCH_SIZE_MAX = 1024


class ScoringJob(Job):
    """Score a study's test stimuli with a model version, in batches on ``gpu`` workers."""

    task_name = "scoring.tasks.score_job"
    noun = "scoring job"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="jobs")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="scoring_jobs")
    batch_size = models.PositiveIntegerField(default=16)
    force = models.BooleanField(default=False, help_text="Recompute existing predictions.")
    worker_host = models.CharField(max_length=200, blank=True)

    class Meta(Job.Meta):
        constraints = [
            *Job.Meta.constraints,
            # One live job per model version and study: a second request joins the first.
            models.UniqueConstraint(
                fields=["model_version", "study"],
                condition=Q(status__in=["queued", "running"]),
                name="scoring_job_one_active",
            ),
            models.CheckConstraint(condition=Q(done__lte=F("total")), name="scoring_job_progress"),
            models.CheckConstraint(
                condition=Q(batch_size__gte=1, batch_size__lte=BATCH_SIZE_MAX),
                name="scoring_job_batch_size",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_version} on {self.study.slug} ({self.status})"

    def refresh_progress(self) -> None:
        """Recount ``done`` from the predictions themselves (exact after redeliveries)
        and finish the job when every stimulus has its prediction.

        Batches call it after each write; the job layer's periodic tick calls it
        for running jobs too, because a batch of a killed worker's orphaned pool
        process can commit after the last batch counted, and then nothing else
        would finish the job. A batch whose task was lost with a killed worker is
        never counted here; the tick sends the job again once it stalls
        (studyweb.jobs.jobs_resend_stalled).
        """
        predictions = Prediction.objects.filter(
            model_version_id=self.model_version_id,
            stimulus__study_id=self.study_id,
            stimulus__role=Stimulus.Role.TEST,
        )
        if self.force:
            predictions = predictions.filter(job=self)
        done = min(predictions.count(), self.total)
        ScoringJob.objects.filter(pk=self.pk, done__lt=done).update(done=done)
        if done >= self.total:
            ScoringJob.objects.filter(pk=self.pk, status__in=ScoringJob.ACTIVE).update(
                status=ScoringJob.Status.DONE, finished_at=timezone.now()
            )
        self.refresh_from_db()


class Prediction(models.Model):
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="predictions"
    )
    stimulus = models.ForeignKey(Stimulus, on_delete=models.CASCADE, related_name="predictions")
    technical = models.FloatField(null=True)
    rationality = models.FloatField(null=True)
    naturalness = models.FloatField(null=True)
    artifact_map = models.CharField(max_length=200, blank=True)
    job = models.ForeignKey(ScoringJob, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_version", "stimulus"]
        constraints = [
            models.UniqueConstraint(fields=["model_version", "stimulus"], name="prediction_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.model_version} on stimulus {self.stimulus_id}"
