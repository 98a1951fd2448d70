"""Helpers of the annotation tests."""

from __future__ import annotations

from django.utils import timezone

from annotation.models import Rater, Session
from tests.factories import RaterFactory, SessionFactory


def rater_past_places(study, external_id: str = "", planned: int | None = None):
    """A rater at the rating stage whose session was never admitted (no places taken):
    for tests of the claim mechanics behind admission (claims, expiry, K), where raters
    are put in places that admission (test_places.py) would not give them."""
    now = timezone.now()
    rater = RaterFactory(
        study=study,
        source=Rater.Source.PROLIFIC if external_id else Rater.Source.ANONYMOUS,
        external_id=external_id,
        consented_at=now,
        training_done_at=now,
    )
    session = SessionFactory(
        rater=rater,
        stage=Session.Stage.RATING,
        planned_items=study.session_size if planned is None else planned,
    )
    return rater, session
