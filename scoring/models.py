"""Stored results: MOS analyses (per stimulus and dimension, per rater verdicts).

Model versions, scoring jobs and predictions join this module with the GPU
scoring work.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

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
