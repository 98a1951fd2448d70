"""Stored MOS analyses: the job, per-stimulus MOS per dimension, per-rater verdicts."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from annotation.models import Rater, Stimulus, Study
from scoring.numerics import mos
from studyweb.jobs import Job

METHOD_CHOICES = [
    *((name, method.label) for name, method in mos.REGISTRY.items()),
    ("imported", "Published MOS (imported dataset)"),
]


class Analysis(Job):
    """MOS with screening and reliability for every dimension of a study (a job)."""

    task_name = "scoring.tasks.run_analysis"
    noun = "analysis"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="analyses")
    method = models.CharField(max_length=16, choices=METHOD_CHOICES)
    method_version = models.CharField(
        max_length=32,
        blank=True,
        help_text="The method's version in the MOS registry when the analysis ran "
        "(scoring.numerics.mos.REGISTRY), so a published dataset can be reproduced.",
    )
    reject_on = models.CharField(
        max_length=16,
        choices=[("overall", "Overall naturalness"), ("per_dimension", "Each dimension")],
        default="overall",
    )
    options = models.JSONField(default=dict, blank=True)
    n_ratings = models.PositiveIntegerField(default=0)
    n_raters = models.PositiveIntegerField(default=0)
    n_stimuli = models.PositiveIntegerField(default=0)
    info = models.JSONField(default=dict, blank=True, help_text="Method facts per dimension.")
    reliability = models.JSONField(default=dict, blank=True)

    class Meta(Job.Meta):
        verbose_name_plural = "analyses"
        constraints = [
            *Job.Meta.constraints,
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
