"""Assignment: closest-to-done first, distinct raters, claims that expire, and a race."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from annotation import assignment, services
from annotation.models import Claim, Rating, StimulusTally
from tests.annotation.helpers import rater_past_places
from tests.factories import StimulusFactory, StudyFactory
from tests.factories import rater_at_rating as enter

pytestmark = pytest.mark.sqlite_too
GOOD = {"overall": 50, "technical": 50, "rationality": 50}


def rate(rater, claim):
    return services.rating_submit(
        rater=rater,
        stimulus_id=claim.stimulus_id,
        scores=GOOD,
        client_id=uuid.uuid4(),
        viewing_seconds=3.0,
    )


@pytest.mark.django_db
def test_prefers_the_stimulus_closest_to_done():
    study = StudyFactory(protocol="perspectives", ratings_per_stimulus=3)
    a, b, c = StimulusFactory.create_batch(3, study=study)
    for i in range(2):
        rater, session = rater_past_places(study, f"early-{i}")
        Claim.objects.create(stimulus=b, rater=rater, session=session)
        rate(rater, Claim.objects.get(rater=rater))
    rater, session = rater_past_places(study, "late")
    assert assignment.claim_next(session=session).stimulus_id == b.pk


@pytest.mark.django_db
def test_live_claims_count_towards_k_and_expire():
    study = StudyFactory(protocol="perspectives", ratings_per_stimulus=1, claim_ttl_seconds=60)
    only = StimulusFactory(study=study)
    first, first_session = enter(study, "first")
    claim = assignment.claim_next(session=first_session)
    assert claim.stimulus_id == only.pk
    assert claim.expires_at > timezone.now() + timedelta(seconds=50)
    second, second_session = rater_past_places(study, "second")  # admission would refuse
    assert assignment.claim_next(session=second_session) is None  # held by first
    Claim.objects.filter(pk=claim.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert assignment.claim_next(session=second_session).stimulus_id == only.pk


@pytest.mark.django_db
def test_per_rater_cap_and_session_size():
    study = StudyFactory(
        protocol="perspectives", ratings_per_stimulus=5, session_size=3, max_items_per_rater=4
    )
    StimulusFactory.create_batch(8, study=study)
    rater, session = enter(study, "capped")
    while (claim := assignment.claim_next(session=session)) is not None:
        rate(rater, claim)
    assert session.ratings.count() == 3
    services.session_finish(session=session)
    rater.status = "active"
    rater.save()
    second = services.session_start(rater=rater)
    assert second.pk != session.pk and second.planned_items == 1  # 4 minus the 3 done


@pytest.mark.django_db
def test_gold_interleaved_and_one_repeat():
    study = StudyFactory(
        protocol="perspectives",
        ratings_per_stimulus=5,
        session_size=10,
        gold_rate=0.2,
        repeat_check=True,
    )
    StimulusFactory.create_batch(12, study=study)
    StimulusFactory.create_batch(3, study=study, role="gold", expected_low=0, expected_high=100)
    rater, session = enter(study, "g")
    seen = []
    while (claim := assignment.claim_next(session=session)) is not None:
        seen.append((claim.stimulus.role, claim.repetition))
        rate(rater, claim)
    roles = Counter(role for role, _ in seen)
    assert len(seen) == 10 and roles["gold"] == 2
    assert seen[0][0] == "test"  # never gold first
    assert [rep for _, rep in seen].count(2) == 1
    repeated = Rating.objects.get(rater=rater, repetition=2)
    assert Rating.objects.filter(rater=rater, stimulus=repeated.stimulus, repetition=1).exists()


@pytest.mark.django_db(transaction=True)
def test_race_for_the_last_claims():
    """24 threads, each a rater on its own connection, compete for 4 x K=3 slots.

    PostgreSQL: row locks, SKIP LOCKED. SQLite: one writer at a time (every
    transaction takes the write lock at BEGIN), the others wait for it."""
    study = StudyFactory(protocol="perspectives", ratings_per_stimulus=3, session_size=4)
    StimulusFactory.create_batch(4, study=study)
    # The claim race behind admission (test_places.py races the admission itself).
    raters = [rater_past_places(study, f"racer-{i}") for i in range(24)]
    barrier = threading.Barrier(len(raters))
    errors: list[BaseException] = []

    def work(rater, session):
        try:
            barrier.wait(timeout=30)
            while (claim := assignment.claim_next(session=session)) is not None:
                rate(rater, claim)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=pair) for pair in raters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    per_stimulus = Counter(Rating.objects.values_list("stimulus_id", flat=True))
    assert sorted(per_stimulus.values()) == [3, 3, 3, 3]  # exactly K, never more
    pairs = Counter(Rating.objects.values_list("rater_id", "stimulus_id"))
    assert max(pairs.values()) == 1  # never the same rater twice on a stimulus
    # The trigger-kept tally that ranks candidates agrees with the ratings after the race.
    assert dict(StimulusTally.objects.values_list("stimulus_id", "ratings")) == per_stimulus
    assert not Claim.objects.filter(expires_at__gt=timezone.now()).exists()
