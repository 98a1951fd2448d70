"""Reads of the annotation side that pages and the API share."""

from __future__ import annotations

import statistics
from collections import Counter

from django.db.models import Count, Q

from annotation import assignment
from annotation.models import Rater, Rating, Stimulus, Study


def study_progress(study: Study) -> dict:
    """How far a study is: test stimuli complete / in progress / untouched, the
    number of stimuli with n first ratings (n = 0..K), raters by status, the
    median viewing time. Plain numbers; drawing them is the page's business.
    Researchers' pilot previews (raters and ratings) count nowhere here."""
    fill = assignment.study_fill(study)
    per_stimulus = list(
        Stimulus.objects.filter(study=study, role=Stimulus.Role.TEST)
        .annotate(n=Count("ratings", filter=Q(ratings__repetition=1, ratings__is_pilot=False)))
        .values_list("n", flat=True)
    )
    k = study.ratings_per_stimulus
    counts = Counter(min(n, k) for n in per_stimulus)
    raters = dict(
        Rater.objects.filter(study=study)
        .exclude(source=Rater.Source.PILOT)
        .values_list("status")
        .annotate(n=Count("id"))
    )
    seconds = list(
        Rating.objects.filter(stimulus__study=study, is_pilot=False).values_list(
            "viewing_seconds", flat=True
        )
    )
    return {
        **fill,
        "total": len(per_stimulus),
        "k": k,
        "stimuli_by_ratings": [{"n": n, "count": counts.get(n, 0)} for n in range(k + 1)],
        "raters_active": raters.get(Rater.Status.ACTIVE, 0),
        "raters_completed": raters.get(Rater.Status.COMPLETED, 0),
        "raters_excluded": raters.get(Rater.Status.EXCLUDED, 0),
        "median_seconds": statistics.median(seconds) if seconds else None,
        "n_ratings": len(seconds),
    }
