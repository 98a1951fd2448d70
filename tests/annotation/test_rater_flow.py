"""The rater flow's decisions (annotation.rater_flow) without HTTP: the context read,
the next step at every stage, training answers, and the end."""

from __future__ import annotations

import uuid

import pytest

from annotation import assignment, rater_flow, services
from annotation.models import Claim, Rater, Rating, Session, Study
from annotation.rater_flow import Progress, StepKind
from annotation.services import SubmitRefused
from tests.factories import RaterFactory, SessionFactory, StimulusFactory, StudyFactory
from tests.factories import rater_at_rating as enter

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_too]
GOOD = {"overall": 70, "technical": 60, "rationality": 80}


@pytest.fixture
def study():
    study = StudyFactory(
        protocol="perspectives", ratings_per_stimulus=2, session_size=3, completion_code="C7"
    )
    StimulusFactory.create_batch(4, study=study)
    return study


@pytest.fixture
def examples(study):
    """Two training examples, the first with a reference range around 80."""
    return [
        StimulusFactory(study=study, role="training", expected_low=70, expected_high=90),
        StimulusFactory(study=study, role="training"),
    ]


def at_stage(study, stage, planned=3, **rater_fields):
    rater = RaterFactory(study=study, **rater_fields)
    return rater, SessionFactory(rater=rater, stage=stage, planned_items=planned)


def context_of(study, rater, **kwargs):
    """The context as a request reads it: the study and rater fresh from the database."""
    return rater_flow.rater_context(
        Study.objects.get(pk=study.pk), Rater.objects.get(pk=rater.pk), **kwargs
    )


def rate(rater, stimulus_id):
    return services.rating_submit(
        rater=rater,
        stimulus_id=stimulus_id,
        scores=GOOD,
        client_id=uuid.uuid4(),
        viewing_seconds=3,
    )


def rate_one(rater, session):
    rate(rater, assignment.claim_next(session=session).stimulus_id)


# --- The context ----------------------------------------------------------------------


def test_context_reads_the_current_session_its_ratings_and_its_live_claim(study):
    rater, session = enter(study)
    rate_one(rater, session)
    claim = assignment.claim_next(session=session)
    context = context_of(study, rater)
    assert context.session.pk == session.pk and context.stage == Session.Stage.RATING
    assert context.done == 1 and context.progress == Progress(1, 3)
    assert context.live.pk == claim.pk and context.live.stimulus.pk == claim.stimulus_id
    assert context.training is None


def test_context_without_a_current_session(study):
    rater, _ = at_stage(study, Session.Stage.DONE)  # a finished session is not current
    context = context_of(study, rater)
    assert context.session is None and context.stage is None and context.live is None
    assert context.progress == Progress(0, 0)


def test_context_of_a_named_session_reads_the_statuses_again(study):
    rater, session = enter(study)
    Rater.objects.filter(pk=rater.pk).update(status=Rater.Status.EXCLUDED)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.PAUSED)
    Session.objects.filter(pk=session.pk).update(stage=Session.Stage.STOPPED)
    context = rater_flow.rater_context(study, rater, session=session)  # objects read before
    assert context.rater.status == Rater.Status.EXCLUDED and session.rater is rater
    assert context.study.status == Study.Status.PAUSED
    assert context.stage == Session.Stage.STOPPED


@pytest.mark.parametrize(
    "stage, shown",
    [
        (Session.Stage.CONSENT, False),
        (Session.Stage.INSTRUCTIONS, True),
        (Session.Stage.TRAINING, True),
        (Session.Stage.RATING, False),
    ],
)
def test_training_examples_are_read_at_the_stages_that_show_them(study, examples, stage, shown):
    rater, _ = at_stage(study, stage)
    context = context_of(study, rater)
    if shown:
        assert [s.pk for s in context.training.items] == [s.pk for s in examples]
        assert context.training.answers == {}
    else:
        assert context.training is None
        assert context.with_training_answers({"1": {}}) is context


# --- The rating step ------------------------------------------------------------------


def test_rate_claims_a_stimulus_and_a_second_read_resumes_it(study):
    rater, _ = enter(study)
    step = rater_flow.next_step(context=context_of(study, rater))
    assert step.kind == StepKind.RATE and step.progress == Progress(0, 3)
    assert step.stimulus.pk == step.claim.stimulus_id
    again = rater_flow.next_step(context=context_of(study, rater))
    assert again.claim.pk == step.claim.pk and Claim.objects.count() == 1


@pytest.mark.parametrize(
    "stage, kind",
    [
        (Session.Stage.CONSENT, StepKind.PAGE),
        (Session.Stage.TRAINING, StepKind.PAGE),
        (Session.Stage.STOPPED, StepKind.PAGE),
        (Session.Stage.DONE, StepKind.DONE),
    ],
)
def test_no_claim_outside_the_rating_stage(study, stage, kind):
    rater, session = at_stage(study, stage)
    context = rater_flow.rater_context(study, rater, session=session)
    assert rater_flow.next_step(context=context).kind == kind
    assert not Claim.objects.exists()


def test_no_session_is_a_page(study):
    rater = RaterFactory(study=study)
    assert rater_flow.next_step(context=context_of(study, rater)).kind == StepKind.PAGE


def test_an_excluded_rater_is_ended_and_the_session_stopped(study):
    rater, session = enter(study)
    Rater.objects.filter(pk=rater.pk).update(status=Rater.Status.EXCLUDED)
    context = rater_flow.rater_context(study, rater, session=session)
    assert rater_flow.next_step(context=context).kind == StepKind.ENDED
    session.refresh_from_db()
    assert session.stage == Session.Stage.STOPPED and session.finished_at is not None
    assert not Claim.objects.exists()


def test_a_study_that_is_not_open_claims_nothing(study):
    rater, _ = enter(study)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.PAUSED)
    assert rater_flow.next_step(context=context_of(study, rater)).kind == StepKind.UNAVAILABLE
    assert not Claim.objects.exists()


def test_a_break_after_every_n_ratings_and_only_after_a_rating(study):
    study.break_every = 2
    study.save()
    rater, session = enter(study)
    rate_one(rater, session)
    rate_one(rater, session)
    context = rater_flow.rater_context(study, rater, session=session)
    assert rater_flow.next_step(context=context, after_rating=True).kind == StepKind.BREAK
    assert not Claim.objects.exists()  # its time to live would run out during the break
    # The break is kept on the session: asked again, the answer is the break until it
    # is over (tests/annotation/test_breaks.py), then the next image.
    assert rater_flow.next_step(context=context).kind == StepKind.BREAK
    Session.objects.filter(pk=session.pk).update(break_until=None)
    context = rater_flow.rater_context(study, rater)
    assert rater_flow.next_step(context=context).kind == StepKind.RATE


def test_nothing_left_finishes_the_session(study):
    rater, session = enter(study)
    for _ in range(3):
        rate_one(rater, session)
    step = rater_flow.next_step(context=rater_flow.rater_context(study, rater, session=session))
    assert step.kind == StepKind.DONE
    session.refresh_from_db()
    rater.refresh_from_db()
    assert session.stage == Session.Stage.DONE and rater.status == Rater.Status.COMPLETED


def test_an_exclusion_after_the_read_ends_instead_of_finishing(study):
    rater, session = enter(study)
    for _ in range(3):
        rate_one(rater, session)
    context = rater_flow.rater_context(study, rater, session=session)
    Rater.objects.filter(pk=rater.pk).update(status=Rater.Status.EXCLUDED)
    assert rater_flow.next_step(context=context).kind == StepKind.ENDED
    session.refresh_from_db()
    rater.refresh_from_db()
    assert session.stage == Session.Stage.STOPPED and rater.status == Rater.Status.EXCLUDED


# --- The study link's page ------------------------------------------------------------


def page(study, rater, answers=None):
    context = rater_flow.session_enter(study=study, rater=Rater.objects.get(pk=rater.pk))
    if answers is not None:
        context = context.with_training_answers(answers)
    return context, rater_flow.page_step(context=context)


def test_a_new_rater_starts_at_consent(study):
    rater = RaterFactory(study=study)
    context, step = page(study, rater)
    assert step.kind == StepKind.CONSENT and context.stage == Session.Stage.CONSENT
    assert Session.objects.get(rater=rater).pk == context.session.pk


def test_instructions_then_training_examples_in_order(study, examples):
    rater, session = at_stage(study, Session.Stage.INSTRUCTIONS)
    assert page(study, rater)[1].kind == StepKind.INSTRUCTIONS
    Session.objects.filter(pk=session.pk).update(stage=Session.Stage.TRAINING)
    _, step = page(study, rater, answers={})
    assert step.kind == StepKind.TRAIN and step.stimulus.pk == examples[0].pk
    assert step.progress == Progress(0, 2)
    _, step = page(study, rater, answers={str(examples[0].pk): {"scores": GOOD}})
    assert step.stimulus.pk == examples[1].pk and step.progress == Progress(1, 2)


def test_after_the_last_example_the_page_moves_on_to_rating(study, examples):
    rater, session = at_stage(study, Session.Stage.TRAINING)
    answers = {str(s.pk): {"scores": GOOD} for s in examples}
    _, step = page(study, rater, answers=answers)
    assert step.kind == StepKind.RATE and step.progress == Progress(0, 3)
    session.refresh_from_db()
    rater.refresh_from_db()
    assert session.stage == Session.Stage.RATING and rater.training_done_at is not None


def test_an_excluded_rater_starts_nothing_and_their_session_is_stopped(study):
    rater, session = enter(study)
    Rater.objects.filter(pk=rater.pk).update(status=Rater.Status.EXCLUDED)
    _, step = page(study, rater)
    assert step.kind == StepKind.ENDED
    session.refresh_from_db()
    assert session.stage == Session.Stage.STOPPED and Session.objects.count() == 1


def test_a_rater_who_finished_sees_the_end_again_and_starts_nothing(study):
    rater, _ = at_stage(study, Session.Stage.DONE, status=Rater.Status.COMPLETED)
    context, step = page(study, rater)
    assert step.kind == StepKind.DONE and Session.objects.count() == 1
    assert context.session is None


# --- Stages before rating -------------------------------------------------------------


def test_a_visitor_is_registered_with_consent_at_the_instructions(study):
    rater = rater_flow.visitor_register(study=study, user_agent="UA")
    assert rater.source == Rater.Source.ANONYMOUS and rater.consented_at is not None
    session = rater.sessions.get()
    assert session.stage == Session.Stage.INSTRUCTIONS and session.user_agent == "UA"


@pytest.mark.parametrize(
    "stage, after",
    [
        (Session.Stage.CONSENT, Session.Stage.INSTRUCTIONS),
        (Session.Stage.RATING, Session.Stage.RATING),  # an old form posted again
    ],
)
def test_consent_moves_on_only_from_the_consent_stage(study, stage, after):
    rater, session = at_stage(study, stage)
    rater_flow.consent_give(context=context_of(study, rater))
    session.refresh_from_db()
    assert session.stage == after


@pytest.mark.parametrize("with_examples, after", [(True, "training"), (False, "rating")])
def test_instructions_lead_to_training_when_there_are_examples(study, with_examples, after):
    if with_examples:
        StimulusFactory(study=study, role="training")
    rater, session = at_stage(study, Session.Stage.INSTRUCTIONS)
    rater_flow.instructions_finish(context=context_of(study, rater))
    session.refresh_from_db()
    assert session.stage == after


def test_a_scripted_session_starts_at_rating(study, examples):
    rater = RaterFactory(study=study, source=Rater.Source.PROLIFIC, external_id="P")
    session = rater_flow.scripted_session_start(rater=rater, user_agent="script")
    assert session.stage == Session.Stage.RATING
    rater.refresh_from_db()
    assert rater.consented_at is not None and rater.training_done_at is not None
    assert rater_flow.scripted_session_start(rater=rater).pk == session.pk  # resumed


# --- Training -------------------------------------------------------------------------


def training_context(study, rater, answers=None):
    context = context_of(study, rater)
    assert rater_flow.training_open(context)
    return context.with_training_answers(answers or {})


def test_a_training_answer_gets_feedback_and_the_next_example(study, examples):
    rater, session = at_stage(study, Session.Stage.TRAINING)
    answered = rater_flow.training_answer_submit(
        context=training_context(study, rater), stimulus_id=examples[0].pk, scores=GOOD
    )
    assert answered.feedback["expected"] == 80 and answered.feedback["yours"] == 70
    assert "around 80 (Good)" in answered.feedback["message"]
    assert answered.answers == {
        str(examples[0].pk): {"scores": GOOD, "feedback": answered.feedback["message"]}
    }
    assert answered.progress == Progress(1, 2)
    assert answered.step.kind == StepKind.TRAIN and answered.step.stimulus.pk == examples[1].pk
    session.refresh_from_db()
    assert session.stage == Session.Stage.TRAINING
    assert not Rating.objects.exists()  # training answers are not test data


def test_the_last_training_answer_moves_the_session_to_rating(study, examples):
    rater, session = at_stage(study, Session.Stage.TRAINING)
    before = {str(examples[0].pk): {"scores": GOOD, "feedback": "..."}}
    answered = rater_flow.training_answer_submit(
        context=training_context(study, rater, before), stimulus_id=examples[1].pk, scores=GOOD
    )
    assert "no reference answer" in answered.feedback["message"]
    assert answered.answers.keys() == {str(s.pk) for s in examples}
    assert answered.step.kind == StepKind.PAGE and answered.progress == Progress(2, 2)
    session.refresh_from_db()
    assert session.stage == Session.Stage.RATING


def test_training_answers_are_checked_and_refusals_change_nothing(study, examples):
    rater, session = at_stage(study, Session.Stage.TRAINING)
    context = training_context(study, rater)
    with pytest.raises(SubmitRefused) as bad:
        rater_flow.training_answer_submit(
            context=context, stimulus_id=examples[0].pk, scores={**GOOD, "overall": 101}
        )
    assert bad.value.code == "invalid_scores" and "overall" in bad.value.errors
    test_item = study.stimuli.filter(role="test").first()
    with pytest.raises(SubmitRefused) as unknown:
        rater_flow.training_answer_submit(context=context, stimulus_id=test_item.pk, scores=GOOD)
    assert (unknown.value.code, unknown.value.status) == ("unknown_stimulus", 404)
    assert unknown.value.errors == {"stimulus": "unknown"}
    session.refresh_from_db()
    assert session.stage == Session.Stage.TRAINING


def test_training_is_open_only_at_the_training_stage(study):
    rater, _ = at_stage(study, Session.Stage.RATING)
    assert not rater_flow.training_open(context_of(study, rater))


def test_anchor_labels_are_the_nearest_anchor(study):
    scale = study.scale_def
    assert rater_flow.anchor_label(scale, 80) == "Good"
    assert rater_flow.anchor_label(scale, 0) == "Bad"
    assert rater_flow.anchor_label(scale, 100) == "Excellent"


# --- The end --------------------------------------------------------------------------


def test_completion_counts_the_last_finished_session(study):
    study.completion_url = "https://example.org/thanks"
    study.save()
    rater, session = enter(study)
    rate_one(rater, session)
    Study.objects.filter(pk=study.pk).update(status=Study.Status.CLOSED)  # ends it early
    rater_flow.rater_finish(context=context_of(study, rater))
    end = rater_flow.completion(context_of(study, rater))
    assert end.code == "C7" and end.progress == Progress(1, 3)
    assert end.target == {"method": "get", "url": "https://example.org/thanks", "label": "Continue"}


def test_completion_without_any_session(study):
    rater = RaterFactory(study=study, status=Rater.Status.COMPLETED)
    end = rater_flow.completion(context_of(study, rater))
    assert end.progress == Progress(0, 0) and end.target is None


@pytest.mark.parametrize(
    "submit_to, target_url",
    [
        (
            "https://workersandbox.mturk.com/",
            "https://workersandbox.mturk.com/mturk/externalSubmit",
        ),
        ("https://mturk.example.net", None),  # never a host taken from the link alone
    ],
)
def test_mturk_completion_posts_only_to_mturk(study, submit_to, target_url):
    platform = {"assignment_id": "A1", "turk_submit_to": submit_to}
    rater = RaterFactory(study=study, source=Rater.Source.MTURK, platform=platform)
    target = rater_flow.completion_target(study, rater)
    if target_url is None:
        assert target is None  # the study has no completion URL either
    else:
        assert target["method"] == "post" and target["url"] == target_url
        assert target["fields"] == {"assignmentId": "A1", "completionCode": "C7"}


def test_finishing_gives_claims_back_and_completes_the_rater(study):
    study.session_size = 1
    study.save()
    rater, session = enter(study)
    rate_one(rater, session)
    # A claim left behind (e.g. by a second tab) once the session's item is rated.
    spare = study.stimuli.exclude(ratings__rater=rater).first()
    Claim.objects.create(stimulus=spare, rater=rater, session=session)
    assert rater_flow.rater_finish(context=context_of(study, rater)) == Rater.Status.COMPLETED
    session.refresh_from_db()
    assert session.stage == Session.Stage.DONE and not Claim.objects.exists()


def test_finishing_before_the_work_is_done_is_refused_and_changes_nothing(study):
    """start then finish with no rating used to return the completion code."""
    rater, session = enter(study)
    rater_flow.next_step(context=context_of(study, rater))
    with pytest.raises(SubmitRefused) as refused:
        rater_flow.rater_finish(context=context_of(study, rater))
    assert refused.value.code == "unfinished" and refused.value.status == 409
    assert "rate the 3 images left" in refused.value.message
    session.refresh_from_db()
    rater.refresh_from_db()
    assert session.stage == Session.Stage.RATING and rater.status == Rater.Status.ACTIVE
    assert Claim.objects.filter(session=session).exists()  # its claim is kept too


def test_finishing_without_a_session_is_refused_and_writes_nothing(study):
    rater = RaterFactory(study=study)
    with pytest.raises(SubmitRefused) as refused:
        rater_flow.rater_finish(context=context_of(study, rater))
    assert refused.value.code == "no_session"
    assert not Session.objects.exists()
    assert Rater.objects.get(pk=rater.pk).status == Rater.Status.ACTIVE
