"""Stored results: MOS analyses (per stimulus and dimension, per rater verdicts).

Model versions, scoring jobs and predictions join this module with the GPU
scoring work.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from annotation.models import Rater, Stimulus, Study

METHOD_CHOICES = [
    ("mean", "Plain MOS"),
    ("zscore", "Per-rater z-scores (0-100)"),
    ("bt500", "ITU-R BT.500-14 subject rejection"),
    ("p913", "ITU-T P.913 bias removal + rejection"),
    ("p910", "ITU-T P.910 Annex E maximum likelihood"),
    ("correlation", "Correlation screening"),
    ("imported", "Published MOS (imported dataset)"),
]


class Analysis(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="analyses")
    method = models.CharField(max_length=16, choices=METHOD_CHOICES)
    reject_on = models.CharField(
        max_length=16,
        choices=[("overall", "Overall naturalness"), ("per_dimension", "Each dimension")],
        default="overall",
    )
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    n_ratings = models.PositiveIntegerField(default=0)
    n_raters = models.PositiveIntegerField(default=0)
    n_stimuli = models.PositiveIntegerField(default=0)
    info = models.JSONField(default=dict, blank=True, help_text="Method facts per dimension.")
    reliability = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "analyses"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(method__in=[m for m, _ in METHOD_CHOICES]), name="analysis_method"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_method_display()} of {self.study.slug} #{self.pk}"


class StimulusResult(models.Model):
    analysis = models.ForeignKey(
        Analysis, on_delete=models.CASCADE, related_name="stimulus_results"
    )
    stimulus = models.ForeignKey(Stimulus, on_delete=models.CASCADE, related_name="+")
    dimension = models.CharField(max_length=32)
    mos = models.FloatField(null=True)
    std = models.FloatField(null=True)
    ci_low = models.FloatField(null=True)
    ci_high = models.FloatField(null=True)
    n = models.PositiveIntegerField()
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["analysis", "stimulus", "dimension"]
        constraints = [
            models.UniqueConstraint(
                fields=["analysis", "stimulus", "dimension"], name="stimulus_result_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dimension} MOS of stimulus {self.stimulus_id} in analysis {self.analysis_id}"


class RaterResult(models.Model):
    """One rater's verdict; the figures are those of the deciding dimension
    (overall by default), every dimension's in ``per_dimension``."""

    analysis = models.ForeignKey(Analysis, on_delete=models.CASCADE, related_name="rater_results")
    rater = models.ForeignKey(Rater, on_delete=models.CASCADE, related_name="+")
    n = models.PositiveIntegerField()
    bias = models.FloatField(null=True)
    inconsistency = models.FloatField(null=True)
    p = models.FloatField(null=True)
    q = models.FloatField(null=True)
    corr = models.FloatField(null=True)
    rejected = models.BooleanField(default=False)
    decided_by = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True)
    per_dimension = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["analysis", "rater"]
        constraints = [
            models.UniqueConstraint(fields=["analysis", "rater"], name="rater_result_unique"),
        ]

    def __str__(self) -> str:
        verdict = "rejected" if self.rejected else "kept"
        return f"rater {self.rater_id} {verdict} in analysis {self.analysis_id}"


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


class ScoringJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="jobs")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="scoring_jobs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    batch_size = models.PositiveIntegerField(default=16)
    force = models.BooleanField(default=False, help_text="Recompute existing predictions.")
    waiting_for_broker = models.BooleanField(
        default=False, help_text="Not yet queued: the broker was unreachable when it started."
    )
    error = models.TextField(blank=True)
    worker_host = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One live job per model version and study: a second request joins the first.
            models.UniqueConstraint(
                fields=["model_version", "study"],
                condition=Q(status__in=["queued", "running"]),
                name="scoring_job_one_active",
            ),
            models.CheckConstraint(condition=Q(done__lte=F("total")), name="scoring_job_progress"),
        ]

    def __str__(self) -> str:
        return f"{self.model_version} on {self.study.slug} ({self.status})"

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 0.0


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


class ExportJob(models.Model):
    """An export written to a file by a worker (queue ``default``), for studies too big
    to stream within one HTTP request."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="export_jobs")
    format = models.CharField(max_length=32)
    analysis = models.ForeignKey(Analysis, null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    waiting_for_broker = models.BooleanField(default=False)
    file = models.FileField(upload_to="exports/", max_length=300, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.format} export of {self.study.slug} ({self.status})"
