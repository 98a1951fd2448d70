"""Pilot preview (annotation.pilot): a researcher walks the study as a rater sees it,
whatever its status; pilot ratings are marked and count toward nothing: not the
tally, not K (their claims reserve no place), not the study's progress. The rater
pages show a banner and end with "Preview finished"; a pilot's token works only
for its researcher, signed in."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from django.core.management import call_command
from django.test import Client

from annotation import assignment, pilot, rater_flow, selectors, services, statements
from annotation.models import Claim, Rater, Rating, Session, StimulusTally, Study, StudyShare
from annotation.rater_flow import StepKind
from annotation.services import SubmitRefused
from tests.annotation.helpers import rater_past_places
from tests.factories import (
    PilotRaterFactory,
    RaterFactory,
    RatingFactory,
    StimulusFactory,
    StudyFactory,
    UserFactory,
    pilot_at_rating,
    rater_at_rating,
)

pytestmark = pytest.mark.django_db
GOOD = {"overall": 70, "technical": 60, "rationality": 80}


def submit(rater, stimulus_id, scores=GOOD):
    return services.rating_submit(
        rater=rater,
        stimulus_id=stimulus_id,
        scores=scores,
        client_id=uuid.uuid4(),
        viewing_seconds=4.0,
    )


def rate_next(rater, session, scores=GOOD) -> int:
    claim = assignment.claim_next(session=session)
    assert claim is not None
    submit(rater, claim.stimulus_id, scores)
    return claim.stimulus_id


def tally(stimulus) -> int:
    return (
        StimulusTally.objects.filter(stimulus=stimulus).values_list("ratings", flat=True).first()
        or 0
    )


# --- Starting a preview ---------------------------------------------------------------


def test_pilot_start_makes_a_fresh_pilot_rater_and_ends_the_earlier_preview():
    study = StudyFactory(status=Study.Status.DRAFT)
    StimulusFactory.create_batch(3, study=study)
    first, first_session = pilot_at_rating(study)
    assert first.source == Rater.Source.PILOT and first.pilot_user == study.owner
    rated = rate_next(first, first_session)
    held = assignment.claim_next(session=first_session)
    assert held is not None

    started = pilot.pilot_start(study=study, user=study.owner)
    assert started.url == f"/s/{study.slug}/"
    assert started.rater.pk != first.pk and started.rater.token != first.token
    assert started.rater.pilot_user == study.owner
    assert not started.rater.sessions.exists()  # its pages start at consent

    first.refresh_from_db()
    first_session.refresh_from_db()
    assert first.status == Rater.Status.COMPLETED
    assert first_session.stage == Session.Stage.STOPPED and first_session.finished_at
    assert not Claim.objects.filter(rater=first).exists()  # given back
    # Its rating stays, marked pilot.
    assert Rating.objects.get(rater=first).stimulus_id == rated


def test_pilot_start_refusals_write_nothing():
    study = StudyFactory(status=Study.Status.DRAFT)
    StimulusFactory(study=study)
    stranger = UserFactory()
    with pytest.raises(pilot.PilotRefused) as refused:
        pilot.pilot_start(study=study, user=stranger)
    assert refused.value.code == "forbidden" and refused.value.status == 403

    empty = StudyFactory(status=Study.Status.DRAFT)
    StimulusFactory(study=empty, role="training")  # examples only: nothing to rate
    with pytest.raises(pilot.PilotRefused) as refused:
        pilot.pilot_start(study=empty, user=empty.owner)
    assert refused.value.code == "no_test_stimuli"
    assert "no test stimuli" in refused.value.message
    assert not Rater.objects.exists()


def test_a_view_only_shared_researcher_may_preview_while_the_share_lasts():
    study = StudyFactory(status=Study.Status.DRAFT)
    StimulusFactory(study=study)
    viewer = UserFactory()
    share = StudyShare.objects.create(study=study, user=viewer, level=StudyShare.Level.VIEW)
    rater = pilot.pilot_start(study=study, user=viewer).rater
    assert rater.pilot_user == viewer
    assert pilot.pilot_allowed(rater=rater, user=viewer)
    assert not pilot.pilot_allowed(rater=rater, user=study.owner)  # only its own researcher
    share.delete()
    assert not pilot.pilot_allowed(rater=rater, user=viewer)


def test_no_ordinary_rater_passes_for_a_pilot():
    study = StudyFactory()
    StimulusFactory(study=study)
    rater, _ = rater_at_rating(study, "p-1")
    assert not pilot.is_pilot(rater)
    assert not pilot.pilot_allowed(rater=rater, user=study.owner)


# --- Counting toward nothing ---------------------------------------------------------


def test_pilot_ratings_of_a_draft_are_marked_and_count_toward_nothing():
    study = StudyFactory(status=Study.Status.DRAFT, ratings_per_stimulus=1, session_size=5)
    stimuli = StimulusFactory.create_batch(2, study=study)
    rater, session = pilot_at_rating(study)
    rated = {rate_next(rater, session), rate_next(rater, session)}
    assert rated == {s.pk for s in stimuli}
    assert list(Rating.objects.values_list("is_pilot", flat=True)) == [True, True]
    assert all(tally(s) == 0 for s in stimuli)

    progress = selectors.study_progress(study)
    assert progress["n_ratings"] == 0 and progress["median_seconds"] is None
    assert progress["stimuli_by_ratings"] == [{"n": 0, "count": 2}, {"n": 1, "count": 0}]
    assert (progress["raters_active"], progress["raters_completed"]) == (0, 0)
    assert (progress["complete"], progress["untouched"]) == (0, 2)

    # Opened, the study still has both places for real raters (K = 1).
    study.status = Study.Status.OPEN
    study.save()
    real, real_session = rater_at_rating(study, "real-1")
    assert {rate_next(real, real_session), rate_next(real, real_session)} == rated
    assert all(tally(s) == 1 for s in stimuli)
    progress = selectors.study_progress(study)
    assert progress["n_ratings"] == 2 and progress["complete"] == 2
    assert progress["raters_active"] == 1  # the pilot is nobody's rater


def test_a_pilot_claim_reserves_no_place_and_a_full_study_can_still_be_previewed():
    study = StudyFactory(ratings_per_stimulus=1, session_size=3)
    only = StimulusFactory(study=study)
    first_pilot, pilot_session = pilot_at_rating(study)
    held = assignment.claim_next(session=pilot_session)
    assert held.stimulus_id == only.pk
    # The pilot's live claim is not counted: the one place is still free.
    assert statements.stimulus_fill(only.pk, held.created_at) == 0
    assert assignment.study_fill(study)["untouched"] == 1
    real, real_session = rater_at_rating(study, "real-1")
    claim = assignment.claim_next(session=real_session)
    assert claim is not None and claim.stimulus_id == only.pk
    submit(real, only.pk)
    assert tally(only) == 1

    # Full: no other real rater gets it, but a preview does, and its rating is kept
    # without filling anything.
    with pytest.raises(services.StudyFull):  # no places for another real rater
        rater_at_rating(study, "real-2")
    other, other_session = rater_past_places(study, "real-3")
    assert assignment.claim_next(session=other_session) is None
    submit(first_pilot, only.pk)  # the earlier claim is honoured: no place is taken
    rater, session = pilot_at_rating(study)
    assert rate_next(rater, session) == only.pk
    assert tally(only) == 1
    assert Rating.objects.filter(stimulus=only, is_pilot=True).count() == 2
    assert assignment.study_fill(study) == {"complete": 1, "in_progress": 0, "untouched": 0}


def test_an_expired_claim_is_not_refused_because_of_pilot_claims():
    """A real rater's claim that expired is honoured while nobody real took the place:
    a pilot holding the stimulus takes nothing."""
    from datetime import timedelta

    from django.utils import timezone

    study = StudyFactory(ratings_per_stimulus=1)
    only = StimulusFactory(study=study)
    real, real_session = rater_at_rating(study, "real-1")
    claim = assignment.claim_next(session=real_session)
    Claim.objects.filter(pk=claim.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    pilot_rater, pilot_session = pilot_at_rating(study)
    assert assignment.claim_next(session=pilot_session).stimulus_id == only.pk
    result = submit(real, only.pk)
    assert result.created and not result.rating.is_pilot


def test_a_pilot_rates_whatever_the_status_and_real_raters_do_not_rate_a_closed_study():
    study = StudyFactory(ratings_per_stimulus=2, session_size=4)
    StimulusFactory.create_batch(3, study=study)
    real, real_session = rater_at_rating(study, "real-1")
    real_claim = assignment.claim_next(session=real_session)
    rater, session = pilot_at_rating(study)
    for status in (Study.Status.PAUSED, Study.Status.DRAFT, Study.Status.CLOSED):
        Study.objects.filter(pk=study.pk).update(status=status)
        study.refresh_from_db()
        rater.study.status = status
        context = rater_flow.rater_context(study, rater, session=session)
        step = rater_flow.next_step(context=context)
        assert step.kind == StepKind.RATE, status
        assert submit(rater, step.claim.stimulus_id).rating.is_pilot
    real.study.status = Study.Status.CLOSED
    with pytest.raises(SubmitRefused) as refused:
        submit(real, real_claim.stimulus_id)
    assert refused.value.code == "study_closed"
    real_context = rater_flow.rater_context(study, real, session=real_session)
    assert rater_flow.next_step(context=real_context).kind == StepKind.UNAVAILABLE


def test_a_pilot_failing_gold_ends_only_its_own_preview():
    """Quality checks run for a pilot as for any rater (the researcher sees what raters
    meet) and touch no one else."""
    study = StudyFactory(gold_rate=0.5, gold_fail_limit=1, session_size=4)
    StimulusFactory.create_batch(3, study=study)
    StimulusFactory(study=study, role="gold", expected_low=80, expected_high=100)
    real, real_session = rater_at_rating(study, "real-1")
    rater, session = pilot_at_rating(study)
    rate_next(rater, session)
    gold = assignment.claim_next(session=session)  # every second item is gold
    assert gold.stimulus.role == "gold"
    submit(rater, gold.stimulus_id, {"overall": 10, "technical": 10, "rationality": 10})
    rater.refresh_from_db()
    real.refresh_from_db()
    assert rater.status == Rater.Status.EXCLUDED and rater.gold_failures == 1
    assert real.status == Rater.Status.ACTIVE and real.gold_failures == 0


# --- The tally's triggers (PostgreSQL and SQLite) -------------------------------------


@pytest.mark.sqlite_too
def test_the_tally_triggers_and_the_recount_leave_pilot_ratings_out():
    study = StudyFactory(protocol="perspectives")
    stimulus = StimulusFactory(study=study)
    RatingFactory(stimulus=stimulus)
    pilot_rating = RatingFactory(
        stimulus=stimulus, rater=PilotRaterFactory(study=study), is_pilot=True
    )
    assert tally(stimulus) == 1
    # Turned into a counted rating and back (the admin, a script): followed both ways.
    Rating.objects.filter(pk=pilot_rating.pk).update(is_pilot=False)
    assert tally(stimulus) == 2
    Rating.objects.filter(pk=pilot_rating.pk).update(is_pilot=True)
    assert tally(stimulus) == 1
    # A pilot rating moved to another stimulus, then deleted: nothing counted.
    other = StimulusFactory(study=study)
    Rating.objects.filter(pk=pilot_rating.pk).update(stimulus=other)
    assert (tally(stimulus), tally(other)) == (1, 0)
    Rating.objects.filter(pk=pilot_rating.pk).delete()
    assert (tally(stimulus), tally(other)) == (1, 0)
    # Bulk inserts of pilot ratings are skipped too.
    Rating.objects.bulk_create(
        [
            RatingFactory.build(
                stimulus=stimulus,
                rater=pilot_rating.rater,
                is_pilot=True,
                session=pilot_rating.session,
            )
        ]
    )
    assert tally(stimulus) == 1

    StimulusTally.objects.filter(stimulus=stimulus).update(ratings=5)  # drifted
    call_command("recount_tallies", stdout=io.StringIO())
    assert tally(stimulus) == 1


# --- The rater pages ---------------------------------------------------------------


@pytest.fixture
def draft():
    study = StudyFactory(
        slug="pilot-draft",
        status=Study.Status.DRAFT,
        session_size=2,
        min_view_seconds=0.0,
        completion_code="CODE42",
        completion_url="https://app.prolific.com/submissions/complete",
    )
    StimulusFactory.create_batch(3, study=study)
    return study


def pilot_client(study, user=None, *, signed_in=True) -> tuple[Client, Rater]:
    user = user or study.owner
    rater = pilot.pilot_start(study=study, user=user).rater
    client = Client()
    if signed_in:
        client.force_login(user)
    client.cookies["rater_token"] = rater.token
    return client, rater


def post_json(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


BANNER = "Pilot preview: your ratings are not counted."


def test_a_preview_of_a_draft_walks_every_page_with_the_banner_and_ends_without_a_code(draft):
    client, rater = pilot_client(draft)
    entry = f"/s/{draft.slug}/"
    back = f'href="/studies/{draft.slug}/"'
    consent = client.get(entry)
    assert consent.status_code == 200 and "Before you start" in consent.text
    assert BANNER in consent.text and back in consent.text
    instructions = client.post(f"{entry}consent", {"action": "agree"}, follow=True)
    assert "How to rate" in instructions.text and BANNER in instructions.text
    rate = client.post(f"{entry}instructions", follow=True)
    assert 'id="rate-form"' in rate.text and BANNER in rate.text

    for _ in range(2):
        step = client.get(f"{entry}next").json()["next"]
        assert step["step"] == "rate"
        body = {
            "stimulus": step["stimulus"]["id"],
            "scores": GOOD,
            "client_id": str(uuid.uuid4()),
            "viewing_seconds": 1.0,
        }
        assert post_json(client, f"{entry}submit", body).status_code == 201
    assert Rating.objects.filter(rater=rater, is_pilot=True).count() == 2

    end = client.get(entry)
    assert "Preview finished" in end.text and BANNER in end.text and back in end.text
    assert "CODE42" not in end.text and "prolific" not in end.text
    assert "completion.js" not in end.text

    # A real visitor of the draft sees it unavailable, with no banner.
    visitor = Client().get(entry)
    assert BANNER not in visitor.text and "Before you start" not in visitor.text


def test_declining_consent_in_a_preview_keeps_the_banner(draft):
    client, _ = pilot_client(draft)
    client.get(f"/s/{draft.slug}/")
    declined = client.post(f"/s/{draft.slug}/consent", {"action": "decline"})
    assert "You chose not to take part" in declined.text and BANNER in declined.text


def test_the_finish_endpoint_gives_a_pilot_no_code(draft):
    client, rater = pilot_client(draft)
    client.get(f"/s/{draft.slug}/")
    answer = client.post(
        f"/api/v1/rater/{draft.slug}/finish", HTTP_X_RATER_TOKEN=rater.token
    ).json()
    assert answer == {
        "completion_code": "",
        "completion_url": "",
        "status": "completed",
        "outcome": "completed",
    }


def test_a_pilot_token_works_only_for_its_researcher_signed_in(draft):
    entry = f"/s/{draft.slug}/"
    signed_out, rater = pilot_client(draft, signed_in=False)
    page = signed_out.get(entry)
    assert page.status_code == 403 and "only the researcher who started it" in page.text
    assert signed_out.get(f"{entry}next").json()["error"] == "unknown_rater"
    assert signed_out.post(f"{entry}consent", {"action": "agree"}).status_code == 403
    header = Client().get(f"/api/v1/rater/{draft.slug}/next", HTTP_X_RATER_TOKEN=rater.token)
    assert header.status_code == 403

    colleague = Client()
    colleague.force_login(UserFactory())
    colleague.cookies["rater_token"] = rater.token
    assert colleague.get(entry).status_code == 403
    assert not Session.objects.filter(rater=rater).exists()  # nothing was started


def test_tokens_of_another_study_open_no_preview(draft):
    other = StudyFactory(slug="other-draft", status=Study.Status.DRAFT, owner=draft.owner)
    StimulusFactory(study=other)
    client, pilot_rater = pilot_client(draft)
    # The cookie is scoped to /s/pilot-draft/; even sent to another study, it is not
    # that study's rater.
    client.cookies["rater_token"] = pilot_rater.token
    page = client.get(f"/s/{other.slug}/")
    assert BANNER not in page.text and "Before you start" not in page.text
    # A real rater of an open study cannot walk a draft as a pilot.
    open_study = StudyFactory(slug="open-one")
    real = RaterFactory(study=open_study)
    stranger = Client()
    stranger.cookies["rater_token"] = real.token
    assert "Before you start" not in stranger.get(f"/s/{draft.slug}/").text
    assert stranger.get(f"/s/{draft.slug}/next").status_code == 403
