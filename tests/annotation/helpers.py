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


def all_at_once(n: int, call) -> list:
    """``call()`` from ``n`` threads released together, each on its own database
    connection (closed after); their results, in the order they finished. Needs
    ``django_db(transaction=True)``: the threads see only what is committed."""
    import threading

    from django.db import connections

    barrier = threading.Barrier(n)
    results: list = []

    def run():
        try:
            barrier.wait(timeout=30)
            results.append(call())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == n, f"{n - len(results)} of {n} calls raised"
    return results
