"""Quality control while a study runs: gold checks and straight-lining.

Gold: a gold item's overall score outside the researcher's expected range is a
failure; after the study's F failures the rater is stopped politely and marked
excluded with the reason. Straight-lining: the variance of a rater's overall
scores below a threshold after 10 or more items is flagged (not excluded: the
researcher decides).
"""

from __future__ import annotations

from django.db import transaction

from annotation import statements
from annotation.models import Rater, Rating

STRAIGHT_LINE_MIN_ITEMS = 10
# Variance thresholds per scale: ~0.1 on 1..5 is crowd practice (METHODS.md s.6);
# the same share of the range squared on 0..100.
STRAIGHT_LINE_VARIANCE = {"acr5": 0.1, "continuous": 0.1 * (100 / 4) ** 2}


def gold_passed(rating: Rating) -> bool | None:
    stimulus = rating.stimulus
    if stimulus.expected_low is None or stimulus.expected_high is None:
        return None
    return stimulus.expected_low <= rating.overall <= stimulus.expected_high


def after_rating(*, rating: Rating) -> None:
    """Update the rater's quality state after a rating was written."""
    if rating.is_gold and gold_passed(rating) is False:
        _gold_failed(rating)
    _check_straight_lining(rating.rater_id, rating.scale)


def _gold_failed(rating: Rating) -> None:
    with transaction.atomic():
        rater = Rater.objects.select_for_update().select_related("study").get(pk=rating.rater_id)
        rater.gold_failures += 1
        fields = ["gold_failures"]
        limit = rater.study.gold_fail_limit
        if limit and rater.gold_failures >= limit and rater.status != Rater.Status.EXCLUDED:
            rater.status = Rater.Status.EXCLUDED
            rater.status_reason = (
                f"failed {rater.gold_failures} gold question(s) (limit {limit}); last: "
                f"{rating.stimulus.original_name} rated {rating.overall:g}, expected "
                f"{rating.stimulus.expected_low:g}-{rating.stimulus.expected_high:g}"
            )
            fields += ["status", "status_reason"]
            # Give the excluded rater's reserved images back to the pool at once.
            rater.claims.all().delete()
        rater.save(update_fields=fields)


def _check_straight_lining(rater_id: int, scale: str) -> None:
    # Runs after every rating, so one hand-written statement (``statements``): the
    # rater's flags with the count and the variance of their overall scores.
    found = statements.straight_lining(rater_id)
    if found is None or found[1] < STRAIGHT_LINE_MIN_ITEMS:
        return
    flags, n, variance = found
    flagged = variance < STRAIGHT_LINE_VARIANCE.get(scale, 0.1)
    current = flags.get("straight_lining")
    if flagged and not current:
        flags = {
            **flags,
            "straight_lining": f"variance of overall scores {variance:.3g} over {n} items",
        }
    elif not flagged and current:
        flags = {k: v for k, v in flags.items() if k != "straight_lining"}
    else:
        return
    Rater.objects.filter(pk=rater_id).update(flags=flags)
