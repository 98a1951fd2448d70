"""The rater's way through a study: which step comes next, training, the end.

The pages (``views``) and the JSON endpoints (``rater_api``) read a rater's
situation once, as a ``RaterContext`` (``rater_context``, or ``session_enter``
for the study link, which starts the session first), and hand it to the
decisions here. They keep HTTP to themselves: tokens, cookies, CSRF, request
bodies, and the Django session, where training answers are kept (they are not
test data, so never Ratings): callers pass them in with
``RaterContext.with_training_answers`` and store what comes back.

The decisions that move a rater on write through ``services`` and
``assignment`` (a claim, a finished or stopped session): they are services,
keyword-only, named ``<noun>_<verb>`` where they are not plainly a step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from annotation import assignment, pilot, protocol, services, statements
from annotation.models import Claim, Rater, Session, Stimulus, Study, StudyOutcome
from annotation.services import SubmitRefused

# Where MTurk's externalSubmit may be posted: never to a host taken from the link alone.
MTURK_SUBMIT_HOSTS = ("https://www.mturk.com", "https://workersandbox.mturk.com")
_FINISHED = (Session.Stage.DONE, Session.Stage.STOPPED)
# How long a break lasts. It is kept on the session (Session.break_until), so reloading
# the page or asking the API for the next image during it shows the break again.
BREAK_SECONDS = 30


class StepKind(StrEnum):
    """What the rater does next. The JSON endpoints answer the value as ``step``."""

    CONSENT = "consent"
    INSTRUCTIONS = "instructions"
    TRAIN = "train"
    RATE = "rate"
    BREAK = "break"
    DONE = "done"
    ENDED = "ended"  # excluded by the quality checks
    UNAVAILABLE = "unavailable"  # the study is not open (paused, closed)
    PAGE = "page"  # not rating (yet or any more): the entry page knows which page to show


@dataclass(frozen=True)
class Progress:
    done: int
    planned: int


@dataclass(frozen=True)
class Step:
    kind: StepKind
    stimulus: Stimulus | None = None  # TRAIN: the example; RATE: the claimed stimulus
    claim: Claim | None = None  # RATE
    progress: Progress | None = None  # TRAIN (examples answered) and RATE (items rated)
    until: datetime | None = None  # BREAK: when it is over
    # UNAVAILABLE on a study closed before the rater finished: the no-work outcome.
    end: Completion | None = None

    def seconds_left(self, now: datetime | None = None) -> int:
        """Whole seconds of the break still to go (0 when over or not a break)."""
        if self.until is None:
            return 0
        left = (self.until - (now or timezone.now())).total_seconds()
        return max(0, int(left + 0.999))


@dataclass(frozen=True)
class Training:
    """The study's training examples and the rater's answers to them so far."""

    items: tuple[Stimulus, ...]
    # By stimulus id as a string (the JSON keys of the Django session that keeps them).
    answers: Mapping[str, dict] = field(default_factory=dict)

    @property
    def progress(self) -> Progress:
        done = sum(1 for s in self.items if str(s.pk) in self.answers)
        return Progress(done, len(self.items))

    def next_item(self) -> Stimulus | None:
        return next((s for s in self.items if str(s.pk) not in self.answers), None)

    def item(self, pk: int) -> Stimulus | None:
        return next((s for s in self.items if s.pk == pk), None)


@dataclass(frozen=True)
class RaterContext:
    """A rater's situation in a study, as read once for one request."""

    study: Study
    rater: Rater
    session: Session | None  # the current session, unless the caller named one
    done: int  # ratings in that session
    live: Claim | None  # that session's oldest unexpired claim, with its stimulus
    # At the instructions and training stages only (the pages show the examples there).
    training: Training | None = None

    @property
    def stage(self) -> str | None:
        return self.session.stage if self.session is not None else None

    @property
    def progress(self) -> Progress:
        return Progress(self.done, self.session.planned_items if self.session else 0)

    def with_training_answers(self, answers: Mapping[str, dict]) -> RaterContext:
        """The context with the rater's training answers, which the caller keeps."""
        if self.training is None:
            return self
        return replace(self, training=replace(self.training, answers=answers))


# --- Reading the context --------------------------------------------------------------


def rater_context(
    study: Study, rater: Rater, *, session: Session | None = None, now=None
) -> RaterContext:
    """The rater's context: their session, its rating count and its live claim, in
    one query (and the training examples at the stages that show them).

    Without ``session``: the rater's current (unfinished) session, if any; ``rater``
    and ``study`` must have been read earlier in this request, as they are taken
    to be fresh. With ``session`` (the session of a rating just written, or one just
    started): that session, its stage and the rater's and the study's status read
    again with it, since another request (a quality check, the researcher pausing
    the study) may have changed them since the objects were read.
    """
    now = now or timezone.now()
    if session is None:
        session, done, live = statements.current_session(rater, now)
    else:
        if session.rater_id == rater.pk:
            session.rater = rater  # the same row: spares a query for it
        stage, finished_at, rater_status, study_status, done, live = statements.session_states(
            session, now
        )
        session.stage, session.finished_at = stage, finished_at
        session.rater.status = rater_status
        study.status = study_status
    training = None
    if session is not None and session.stage in (
        Session.Stage.INSTRUCTIONS,
        Session.Stage.TRAINING,
    ):
        items = study.stimuli.filter(role=Stimulus.Role.TRAINING).order_by("id")
        training = Training(items=tuple(items))
    return RaterContext(study, rater, session, done, live, training)


def session_enter(
    *, study: Study, rater: Rater, user_agent: str = "", platform_session_id: str = ""
) -> RaterContext:
    """The rater opening the study link: an active rater's session started (or
    resumed) and their context read with it. A rater who completed the study or
    was excluded starts nothing: their context is read as it is."""
    if rater.status != Rater.Status.ACTIVE:
        return rater_context(study, rater)
    session = services.session_start(
        rater=rater, user_agent=user_agent, platform_session_id=platform_session_id
    )
    return rater_context(study, rater, session=session)


# --- The next step --------------------------------------------------------------------


def page_step(*, context: RaterContext) -> Step:
    """The page the study link shows: consent, instructions, a training example, or
    the rating step (``next_step``), for a context from ``session_enter`` (with the
    training answers at the training stage).

    An excluded rater's session is stopped; a rater who finished sees the end again
    (e.g. to copy the code). After the last training example the session moves on
    to rating.
    """
    rater, session = context.rater, context.session
    if rater.status == Rater.Status.EXCLUDED:
        if session is not None:
            services.session_advance(session=session, stage=Session.Stage.STOPPED)
        return Step(StepKind.ENDED)
    if rater.status == Rater.Status.COMPLETED:
        return Step(StepKind.DONE)
    if context.stage == Session.Stage.CONSENT:
        return Step(StepKind.CONSENT)
    if context.stage == Session.Stage.INSTRUCTIONS:
        return Step(StepKind.INSTRUCTIONS)
    if context.stage == Session.Stage.TRAINING:
        training = context.training
        item = training.next_item()
        if item is not None:
            return Step(StepKind.TRAIN, stimulus=item, progress=training.progress)
        services.session_advance(session=session, stage=Session.Stage.RATING)
        # Read again at the rating stage, as the next request would see it.
        context = rater_context(context.study, rater, session=session)
    return next_step(context=context)


def next_step(*, context: RaterContext, after_rating: bool = False) -> Step:
    """What the rater does next at the rating stage: rate a stimulus, take a break
    (it starts only ``after_rating``, every ``break_every`` items, and lasts
    ``BREAK_SECONDS``: asked again meanwhile, the answer is the same break), or leave
    for a page.

    Claims the next stimulus when one is due (or resumes the live claim: a reload
    shows the same one); finishes the session when nothing is left, and stops it
    when quality checks excluded the rater meanwhile.
    """
    study, rater, session = context.study, context.rater, context.session
    if session is None or session.stage != Session.Stage.RATING:
        return Step(StepKind.DONE if context.stage == Session.Stage.DONE else StepKind.PAGE)
    if rater.status == Rater.Status.EXCLUDED:
        services.session_advance(session=session, stage=Session.Stage.STOPPED)
        return Step(StepKind.ENDED)
    progress = context.progress
    done = progress.done
    if 0 < progress.planned <= done and context.live is None:
        # Every item rated: finished, whatever the study's status meanwhile (the last
        # rating may have closed it: the rater still gets their code). Unless the
        # quality checks excluded them meanwhile (another of their requests).
        rater.refresh_from_db(fields=["status"])
        if rater.status == Rater.Status.EXCLUDED:
            services.session_advance(session=session, stage=Session.Stage.STOPPED)
            return Step(StepKind.ENDED)
        services.session_finish(session=session)
        return Step(StepKind.DONE)
    if not study.is_open and not pilot.is_pilot(rater):
        # A researcher's pilot preview goes on whatever the status (annotation.pilot).
        return Step(StepKind.UNAVAILABLE, end=stopped_outcome(study, rater))
    # No claim during a break: its time to live would run out while resting.
    now = timezone.now()
    if session.break_until is not None and now < session.break_until:
        return Step(StepKind.BREAK, progress=progress, until=session.break_until)
    if after_rating and 0 < done < progress.planned and done % study.break_every == 0:
        return Step(StepKind.BREAK, progress=progress, until=break_start(session=session, now=now))
    claim = assignment.claim_next(
        session=session, done=done, status_checked=True, live=context.live
    )
    if claim is None:
        # Nothing left to claim. The status is read again first: a rater whom the
        # quality checks excluded meanwhile (another of their requests) ends the
        # session, and must not be marked completed.
        rater.refresh_from_db(fields=["status"])
        if rater.status == Rater.Status.EXCLUDED:
            services.session_advance(session=session, stage=Session.Stage.STOPPED)
            return Step(StepKind.ENDED)
        services.session_finish(session=session)
        return Step(StepKind.DONE)
    return Step(StepKind.RATE, stimulus=claim.stimulus, claim=claim, progress=progress)


def break_start(*, session: Session, now: datetime | None = None) -> datetime:
    """The rater's break starts now: its end is written on the session (one UPDATE,
    only when a break starts) and returned."""
    until = (now or timezone.now()) + timedelta(seconds=BREAK_SECONDS)
    Session.objects.filter(pk=session.pk).update(break_until=until)
    session.break_until = until
    return until


# --- Stages before rating -------------------------------------------------------------


def visitor_register(*, study: Study, user_agent: str = "", promised: int | None = None) -> Rater:
    """A new visitor of the anonymous link who agreed on the consent page: registered
    only now, with their consent, and on to the instructions (link previews and
    crawlers open links too, and must not leave raters behind).

    ``promised``: the items their consent page stated. When the places taken now are
    fewer (others took the last ones meanwhile), the session stays at consent, so the
    page asks again with the real number. ``StudyFull`` writes nothing at all."""
    with transaction.atomic():
        rater, _ = services.rater_enter(study=study)
        session = services.session_start(rater=rater, user_agent=user_agent)
    if promised is None or session.planned_items >= promised:
        services.session_advance(session=session, stage=Session.Stage.INSTRUCTIONS)
    return rater


def platform_enter(
    *,
    study: Study,
    source: str,
    external_id: str,
    platform: Mapping[str, str],
    user_agent: str = "",
    platform_session_id: str = "",
) -> RaterContext:
    """A crowd-platform rater opening the study link: found again or registered, with
    their session (``session_enter``). ``StudyFull`` writes nothing: a rater turned
    away leaves no row behind."""
    with transaction.atomic():
        rater, _ = services.rater_enter(
            study=study, source=source, external_id=external_id, platform=dict(platform)
        )
        return session_enter(
            study=study, rater=rater, user_agent=user_agent, platform_session_id=platform_session_id
        )


def consent_give(*, context: RaterContext) -> None:
    """Consent given: on to the instructions. Only from the consent stage: a form
    posted again from an old page changes nothing."""
    if context.stage == Session.Stage.CONSENT:
        services.session_advance(session=context.session, stage=Session.Stage.INSTRUCTIONS)


def instructions_finish(*, context: RaterContext) -> None:
    """Instructions read: on to training, or straight to rating when the study has no
    training examples. Only from the instructions stage, as ``consent_give``."""
    if context.stage == Session.Stage.INSTRUCTIONS:
        stage = Session.Stage.TRAINING if context.training.items else Session.Stage.RATING
        services.session_advance(session=context.session, stage=stage)


def scripted_session_start(*, rater: Rater, user_agent: str = "") -> Session:
    """A scripted client's session (the rater API's start), at the rating stage: the
    client shows consent and instructions itself; training examples are the pages' only."""
    session = services.session_start(rater=rater, user_agent=user_agent)
    if session.stage in (Session.Stage.CONSENT, Session.Stage.INSTRUCTIONS, Session.Stage.TRAINING):
        services.session_advance(session=session, stage=Session.Stage.RATING)
    return session


# --- Training -------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingAnswer:
    feedback: dict
    answers: dict[str, dict]  # all the rater's answers, this one included: for the caller to keep
    progress: Progress
    step: Step  # the next example, or PAGE when training is over (the session is at rating)


def training_open(context: RaterContext) -> bool:
    """Whether the rater is at the training stage (the only one that takes answers)."""
    return context.stage == Session.Stage.TRAINING


def training_answer_submit(
    *, context: RaterContext, stimulus_id: int, scores: object
) -> TrainingAnswer:
    """Check a training answer like a rating and answer it with feedback; after the
    last example the session moves on to rating. For a context at the training
    stage (``training_open``), with the rater's answers so far. Refusals raise
    ``SubmitRefused``."""
    study, training = context.study, context.training
    try:
        clean = protocol.validate_scores(study.protocol, study.scale, scores)
    except protocol.ProtocolError as exc:
        raise SubmitRefused(
            "invalid_scores", f"the scores do not fit this study: {exc}", errors=exc.errors
        ) from None
    stimulus = training.item(stimulus_id)
    if stimulus is None:
        raise SubmitRefused(
            "unknown_stimulus", "no such training image", status=404, errors={"stimulus": "unknown"}
        )
    feedback = training_feedback(study, stimulus, clean)
    answer = {"scores": clean, "feedback": feedback["message"]}
    training = replace(training, answers={**training.answers, str(stimulus.pk): answer})
    following = training.next_item()
    if following is None:
        services.session_advance(session=context.session, stage=Session.Stage.RATING)
        step = Step(StepKind.PAGE)
    else:
        step = Step(StepKind.TRAIN, stimulus=following, progress=training.progress)
    return TrainingAnswer(feedback, dict(training.answers), training.progress, step)


def training_feedback(study: Study, stimulus: Stimulus, scores: dict[str, float]) -> dict:
    """ "Experts rated this around 80": the centre of the expected overall range."""
    center = stimulus.expected_center
    yours = scores.get("overall")
    scale = study.scale_def
    if center is None:
        message = gettext(
            "There is no reference answer for this example; any honest rating is fine."
        )
    else:
        message = gettext(
            "Experts rated this image around %(center)s (%(anchor)s) for overall "
            "naturalness. You rated it %(yours)s."
        ) % {
            "center": f"{center:g}",
            "anchor": gettext(anchor_label(scale, center)),
            "yours": f"{yours:g}",
        }
    return {
        "expected": center,
        "low": stimulus.expected_low,
        "high": stimulus.expected_high,
        "yours": yours,
        "message": message,
    }


def anchor_label(scale: protocol.Scale, value: float) -> str:
    """The anchor word closest to a value (e.g. 80 -> "Good")."""
    return min(scale.anchor_positions(), key=lambda pos: abs(pos[0] - value))[1]


# --- The end --------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    code: str
    target: dict | None  # see outcome_target
    progress: Progress  # of the session the rater finished last (or stopped)
    kind: str = StudyOutcome.Kind.COMPLETED


def outcome_code(study: Study, kind: str, source: str) -> tuple[str, str]:
    """(code, redirect URL) of an outcome for raters of ``source``: the study's row for
    that platform, else its row for every platform; for completed, else the study's
    completion code and URL; for the other outcomes, else none ("", "")."""
    rows = {(o.platform, o.kind): o for o in study.outcomes.all() if o.kind == kind}
    row = rows.get((source, kind)) or rows.get(("", kind))
    if row is not None:
        return row.code, row.redirect_url
    if kind == StudyOutcome.Kind.COMPLETED:
        return study.completion_code, study.completion_url
    return "", ""


def _last_session(context: RaterContext, stage: str) -> Session | None:
    session = context.rater.sessions.filter(stage=stage).order_by("-finished_at").first()
    if session is None and context.session is not None:
        current = context.session.finished_at is None and context.stage not in _FINISHED
        session = context.session if current else None
    return session


def _ending(context: RaterContext, kind: str, stage: str) -> Completion:
    session = _last_session(context, stage)
    progress = Progress(0, 0)
    if session is not None:
        progress = Progress(session.ratings.count(), session.planned_items)
    study, rater = context.study, context.rater
    code, url = outcome_code(study, kind, rater.source)
    if pilot.is_pilot(rater):
        return Completion("", None, progress, kind)
    return Completion(code, outcome_target(rater.source, rater.platform, code, url), progress, kind)


def completion(context: RaterContext) -> Completion:
    """What the end page shows: the code, where to take it, and how much was rated
    in the session the rater finished last (else their current one)."""
    return _ending(context, StudyOutcome.Kind.COMPLETED, Session.Stage.DONE)


def screened_out(context: RaterContext) -> Completion:
    """What an excluded rater's page shows: the study's screened-out code and where to
    take it (platforms pay or reject by it), and what they rated before it ended."""
    return _ending(context, StudyOutcome.Kind.SCREENED_OUT, Session.Stage.STOPPED)


def no_work(study: Study, source: str, platform: Mapping[str, str]) -> Completion:
    """What a rater turned away from a full study gets: the no-work code and the way
    back to their platform (nothing of theirs was written)."""
    code, url = outcome_code(study, StudyOutcome.Kind.NO_WORK, source)
    return Completion(code, outcome_target(source, platform, code, url), Progress(0, 0), "no_work")


def stopped_outcome(study: Study, rater: Rater) -> Completion | None:
    """What a rater the study was closed on before they finished gets: the no-work
    code and the way back, so a crowd worker can be paid for what they did. None
    while the study is only paused (they come back) or not closed."""
    if study.status != Study.Status.CLOSED:
        return None
    return no_work(study, rater.source, rater.platform)


def completion_target(study: Study, rater: Rater) -> dict | None:
    """Where a rater who completed goes at the end (``outcome_target``); nowhere for a
    pilot (a preview ends on its own page)."""
    if pilot.is_pilot(rater):
        return None
    code, url = outcome_code(study, StudyOutcome.Kind.COMPLETED, rater.source)
    return outcome_target(rater.source, rater.platform, code, url)


def outcome_target(source: str, platform: Mapping[str, str], code: str, url: str) -> dict | None:
    """Where the rater goes with an outcome's code: MTurk's externalSubmit form, the
    URL (Prolific's with its ``cc``), or nowhere."""
    if source == Rater.Source.MTURK:
        submit_to = (platform.get("turk_submit_to") or "").rstrip("/")
        assignment_id = platform.get("assignment_id")
        if submit_to in MTURK_SUBMIT_HOSTS and assignment_id:
            return {
                "method": "post",
                "url": f"{submit_to}/mturk/externalSubmit",
                "fields": {"assignmentId": assignment_id, "completionCode": code},
                "label": gettext("Submit the HIT on MTurk"),
            }
    if not url:
        return None
    if source == Rater.Source.PROLIFIC:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if code and not any(key == "cc" for key, _ in query):
            url = urlunsplit(parts._replace(query=urlencode([*query, ("cc", code)])))
        return {"method": "get", "url": url, "label": gettext("Return to Prolific")}
    return {"method": "get", "url": url, "label": gettext("Continue")}


def rater_finish(*, context: RaterContext) -> str:
    """The rater ends their session themselves (a scripted client: the pages finish by
    themselves), once its work is done; unrated claims go back to the pool at once.
    Returns the rater's status after it (the quality checks may have excluded them).

    Refused (``SubmitRefused``, nothing changes) while the session has items left
    and the study still gives them: a completion code is earned by the work promised.
    A study the researcher closed meanwhile ends the session with what was rated."""
    rater, session = context.rater, context.session
    if rater.status == Rater.Status.ACTIVE and not pilot.is_pilot(rater):
        if session is None:
            raise SubmitRefused(
                "no_session", "there is no session to finish: start one first", status=409
            )
        left = session.planned_items - context.done
        if left > 0 and context.study.status != Study.Status.CLOSED:
            raise SubmitRefused(
                "unfinished",
                f"rate the {left} image{'s' if left != 1 else ''} left in your session "
                "before finishing",
                status=409,
            )
    if session is not None:
        services.session_finish(session=session)
    rater.refresh_from_db(fields=["status"])
    return rater.status
