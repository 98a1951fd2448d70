"""The rating service: what is written, what is refused, and that refusals change nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import assignment, rater_flow, services
from annotation.models import Claim, Rater, Rating
from annotation.services import SubmitRefused
from tests.annotation.helpers import rater_past_places
from tests.factories import StimulusFactory, StudyFactory
from tests.factories import rater_at_rating as enter

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_too]
GOOD = {"overall": 70, "technical": 60, "rationality": 80}


@pytest.fixture
def study():
    return StudyFactory(protocol="perspectives", ratings_per_stimulus=2, session_size=5)


def submit(rater, stimulus_id, scores=None, client_id=None, seconds=4.2):
    return services.rating_submit(
        rater=rater,
        stimulus_id=stimulus_id,
        scores=GOOD if scores is None else scores,
        client_id=client_id or uuid.uuid4(),
        viewing_seconds=seconds,
    )


def test_claim_then_submit_writes_one_rating(study):
    StimulusFactory.create_batch(3, study=study)
    rater, session = enter(study)
    claim = assignment.claim_next(session=session)
    result = submit(rater, claim.stimulus_id)
    assert result.created and result.rating.scores() == {k: float(v) for k, v in GOOD.items()}
    assert not Claim.objects.filter(pk=claim.pk).exists()


def test_replay_returns_first_result_and_writes_nothing(study):
    stimulus = StimulusFactory(study=study)
    rater, session = enter(study)
    assignment.claim_next(session=session)
    cid = uuid.uuid4()
    first = submit(rater, stimulus.pk, client_id=cid)
    again = submit(rater, stimulus.pk, client_id=str(cid))
    assert not again.created and again.rating.pk == first.rating.pk
    assert Rating.objects.count() == 1
    with pytest.raises(SubmitRefused) as info:
        submit(rater, stimulus.pk, {**GOOD, "overall": 10}, client_id=cid)
    assert info.value.code == "replay_mismatch" and info.value.status == 409
    assert Rating.objects.get().overall == 70


@pytest.mark.parametrize(
    "scores, field",
    [
        ({"technical": 60, "rationality": 80}, "overall"),
        ({**GOOD, "overall": 101}, "overall"),
        ({**GOOD, "overall": -1}, "overall"),
        ({**GOOD, "overall": float("nan")}, "overall"),
        ({**GOOD, "overall": float("inf")}, "overall"),
        ({**GOOD, "overall": "abc"}, "overall"),
        ({**GOOD, "unknown": 5}, "unknown"),
        ([70, 60, 80], "scores"),
    ],
)
def test_bad_scores_refused_nothing_written(study, scores, field):
    stimulus = StimulusFactory(study=study)
    rater, session = enter(study)
    assignment.claim_next(session=session)
    with pytest.raises(SubmitRefused) as info:
        submit(rater, stimulus.pk, scores)
    assert info.value.status == 400 and field in info.value.errors
    assert Rating.objects.count() == 0
    assert Claim.objects.filter(rater=rater).count() == 1  # the claim is kept for a retry


def test_bad_client_id_and_viewing_time(study):
    stimulus = StimulusFactory(study=study)
    rater, session = enter(study)
    assignment.claim_next(session=session)
    with pytest.raises(SubmitRefused, match="UUID"):
        submit(rater, stimulus.pk, client_id="not-a-uuid")
    for seconds in (-1, float("nan"), "3", 10**7):
        with pytest.raises(SubmitRefused, match="viewing_seconds"):
            submit(rater, stimulus.pk, seconds=seconds)
    assert Rating.objects.count() == 0


def test_no_claim_and_foreign_rater_refused(study):
    stimulus = StimulusFactory(study=study)
    rater, session = enter(study, "P-1")
    other, _ = enter(study, "P-2")
    with pytest.raises(SubmitRefused) as info:
        submit(rater, stimulus.pk)
    assert info.value.code == "no_claim"
    assignment.claim_next(session=session)
    with pytest.raises(SubmitRefused):
        submit(other, stimulus.pk)  # another rater cannot use this claim
    foreign_study_rater, _ = enter(StudyFactory(protocol="perspectives"))
    with pytest.raises(SubmitRefused) as info:
        submit(foreign_study_rater, stimulus.pk)
    assert info.value.code == "unknown_stimulus"
    assert Rating.objects.count() == 0


def test_expired_claim_given_away_is_refused(study):
    study.ratings_per_stimulus = 1
    study.save()
    stimulus = StimulusFactory(study=study)
    slow, slow_session = enter(study, "slow")
    claim = assignment.claim_next(session=slow_session)
    Claim.objects.filter(pk=claim.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    fast, fast_session = rater_past_places(study, "fast")  # slow holds the only place
    assert assignment.claim_next(session=fast_session).stimulus_id == stimulus.pk
    with pytest.raises(SubmitRefused) as info:
        submit(slow, stimulus.pk)
    assert info.value.code == "claim_expired" and info.value.status == 409
    assert submit(fast, stimulus.pk).created
    assert Rating.objects.count() == 1


def test_expired_claim_not_given_away_is_still_honoured(study):
    stimulus = StimulusFactory(study=study)
    rater, session = enter(study)
    claim = assignment.claim_next(session=session)
    Claim.objects.filter(pk=claim.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert submit(rater, stimulus.pk).created


def test_k_distinct_raters_then_the_pool_is_empty(study):
    StimulusFactory.create_batch(2, study=study)
    for i in range(2):
        rater, session = enter(study, f"r{i}")
        while (claim := assignment.claim_next(session=session)) is not None:
            submit(rater, claim.stimulus_id)
    # A third rater finds no places (admission); past it, nothing to claim either.
    with pytest.raises(services.StudyFull):
        rater_flow.platform_enter(study=study, source="prolific", external_id="r2", platform={})
    assert not Rater.objects.filter(external_id="r2").exists()  # turned away: no row
    rater, session = rater_past_places(study, "r2")
    assert assignment.claim_next(session=session) is None
    counts = sorted(Rating.objects.values_list("stimulus_id", flat=True))
    assert len(counts) == 4 and len(set(counts)) == 2  # K=2 each, never 3
    assert assignment.study_fill(study) == {"complete": 2, "in_progress": 0, "untouched": 0}


def test_gold_failures_exclude_the_rater(study):
    study.gold_rate = 0.5
    study.gold_fail_limit = 2
    study.save()
    StimulusFactory.create_batch(4, study=study)
    for _ in range(3):
        StimulusFactory(study=study, role="gold", expected_low=70, expected_high=100)
    rater, session = enter(study)
    while (claim := assignment.claim_next(session=session)) is not None:
        scores = {**GOOD, "overall": 5} if claim.stimulus.role == "gold" else GOOD
        submit(rater, claim.stimulus_id, scores)
    rater.refresh_from_db()
    assert rater.status == Rater.Status.EXCLUDED
    assert "failed 2 gold" in rater.status_reason
    assert not rater.claims.exists()
    assert Rating.objects.filter(rater=rater, is_gold=True).count() == 2


def test_returning_rater_resumes(study):
    StimulusFactory.create_batch(3, study=study)
    rater, session = enter(study, "P-9")
    claim = assignment.claim_next(session=session)
    again, created = services.rater_enter(study=study, source="prolific", external_id="P-9")
    assert not created and again.pk == rater.pk
    assert services.session_start(rater=again).pk == session.pk
    assert assignment.claim_next(session=session).pk == claim.pk  # the same stimulus
    by_token, _ = services.rater_enter(study=study, token=rater.token)
    assert by_token.pk == rater.pk
    other_study = StudyFactory()
    stranger, created = services.rater_enter(study=other_study, token=rater.token)
    assert created and stranger.pk != rater.pk


def test_minimum_viewing_time_is_enforced_by_the_server_too(study):
    """A scripted client that submits before the study's minimum viewing time (counted
    from the claim, which the page shows right away) is refused and changes nothing;
    the same submission later goes through."""
    study.min_view_seconds = 3.0
    study.save(update_fields=["min_view_seconds"])
    StimulusFactory.create_batch(2, study=study)
    rater, session = enter(study)
    claim = assignment.claim_next(session=session)
    cid = uuid.uuid4()
    with pytest.raises(SubmitRefused) as refused:
        submit(rater, claim.stimulus_id, client_id=cid)
    assert refused.value.code == "too_fast" and refused.value.status == 409
    assert "at least 3 s" in refused.value.message
    assert not Rating.objects.exists() and Claim.objects.filter(pk=claim.pk).exists()
    later = claim.created_at + timedelta(seconds=2.6)  # within the 0.5 s allowance
    result = services.rating_submit(
        rater=rater,
        stimulus_id=claim.stimulus_id,
        scores=GOOD,
        client_id=cid,
        viewing_seconds=2.6,
        now=later,
    )
    assert result.created and Rating.objects.count() == 1
    # The simulated raters of the demo look at nothing and are exempt.
    claim = assignment.claim_next(session=session)
    services.rating_submit(
        rater=rater,
        stimulus_id=claim.stimulus_id,
        scores=GOOD,
        client_id=uuid.uuid4(),
        viewing_seconds=0.1,
        check_view_time=False,
    )
    assert Rating.objects.count() == 2
