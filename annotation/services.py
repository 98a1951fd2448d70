"""The writes of the annotation side. Views, the API, the demo seeder and the
simulators all go through these functions, so a rating is written in exactly one
place: ``rating_submit``.

Functions are keyword-only, named ``<noun>_<verb>``, and atomic.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import NoReturn

from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation import assignment, protocol, quality, statements, studies
from annotation.models import MAX_PLATFORM_KEYS, Claim, Rater, Rating, Session, Stimulus, Study
from annotation.viewing import (
    BadConditions,
    Conditions,
    ConditionsRefused,
    conditions_check,
    conditions_clean,
    session_changes,
)
from studyweb.errors import ServiceError


class StudyFull(ServiceError):
    """No places: the study has no work left for a session of the rater's minimum.
    Nothing was written; the rater is sent back with the study's no-work outcome."""

    code = "study_full"
    status = 409


class SubmitRefused(Exception):
    """A submission that was not written. ``status`` is the HTTP status to answer."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int = 400,
        field: str | None = None,
        errors: dict[str, str] | None = None,
    ):
        self.code, self.message, self.status = code, message, status
        self.field = field
        self.errors = errors or ({field: message} if field else {})
        super().__init__(message)

    def as_dict(self) -> dict:
        return {"error": self.code, "detail": self.message, "fields": self.errors}


@dataclass(frozen=True)
class SubmitResult:
    rating: Rating
    created: bool  # False for a replay of an already written submission
    # The rating gave its test stimulus its K-th counted rating (the study may be complete).
    filled: bool = False


# --- Raters and sessions -------------------------------------------------------


def rater_enter(
    *,
    study: Study,
    source: str = Rater.Source.ANONYMOUS,
    external_id: str = "",
    platform: dict | None = None,
    token: str | None = None,
) -> tuple[Rater, bool]:
    """The rater behind a link: found again by external id or token cookie, else new.

    Returns (rater, created). A token of another study is ignored, never reused.
    """
    external_id = (external_id or "").strip()[:128]
    platform = platform or {}
    if external_id:
        rater, created = Rater.objects.get_or_create(
            study=study, source=source, external_id=external_id, defaults={"platform": platform}
        )
        if not created and platform and platform != rater.platform:
            # Each entry may add keys; the newest values win and the oldest keys go
            # past MAX_PLATFORM_KEYS (the database bounds the stored JSON).
            merged = {**rater.platform, **platform}
            rater.platform = dict(list(merged.items())[-MAX_PLATFORM_KEYS:])
            rater.save(update_fields=["platform"])
        return rater, created
    if token:
        known = Rater.objects.filter(study=study, token=token).first()
        if known is not None:
            return known, False
    return Rater.objects.create(study=study, source=source, platform=platform), True


def session_minimum(study: Study, full: int) -> int:
    """The fewest items a session is admitted for: a full session, unless the
    researcher set a smaller minimum."""
    return min(full, study.min_session_items or full)


def session_offer(*, study: Study) -> int:
    """The items a newcomer would be admitted for now (0: the study is full), for the
    consent page shown before anything is written; nothing is reserved."""
    full = assignment.session_size_for(study, None)
    if full == 0:
        return 0
    return assignment.places_plan(study, None, size=full, minimum=session_minimum(study, full))


def session_start(*, rater: Rater, user_agent: str = "", platform_session_id: str = "") -> Session:
    """The rater's unfinished session (resumed), or a new one planned with the places
    the study has (``assignment.places_plan``); ``StudyFull`` when it has too few."""
    with transaction.atomic():
        Rater.objects.select_for_update().get(pk=rater.pk)  # one session at a time per rater
        current = (
            rater.sessions.filter(finished_at__isnull=True)
            .exclude(stage__in=[Session.Stage.DONE, Session.Stage.STOPPED])
            .order_by("-started_at")
            .first()
        )
        if current is not None:
            return current
        stage = Session.Stage.CONSENT if rater.consented_at is None else Session.Stage.RATING
        if stage == Session.Stage.RATING and rater.training_done_at is None:
            stage = Session.Stage.INSTRUCTIONS
        study = rater.study
        planned = full = assignment.plan_session_items(study, rater)
        if full and rater.source != Rater.Source.PILOT:
            full = assignment.session_size_for(study, rater)
            # A pilot takes no places (annotation.pilot). Admissions are taken one at a
            # time on the study's row, so two raters never count the same places.
            study = Study.objects.select_for_update().get(pk=study.pk)
            planned = assignment.places_plan(
                study, rater, size=full, minimum=session_minimum(study, full)
            )
            if planned == 0 and full:
                raise StudyFull("this study has no places left: all its images are taken")
        return Session.objects.create(
            rater=rater,
            stage=stage,
            planned_items=planned,
            user_agent=user_agent[:400],
            platform_session_id=platform_session_id[:128],
        )


def session_advance(*, session: Session, stage: str) -> Session:
    """Move a session forward through consent, instructions, training, rating."""
    order = [s.value for s in Session.Stage]
    if order.index(stage) < order.index(session.stage):
        return session  # going back (e.g. a reload of an old page) changes nothing
    now = timezone.now()
    rater = session.rater
    # Declining consent stops the session; it must never record consent.
    if stage not in (Session.Stage.CONSENT, Session.Stage.STOPPED) and rater.consented_at is None:
        rater.consented_at = now
        rater.save(update_fields=["consented_at"])
    if stage == Session.Stage.RATING and rater.training_done_at is None:
        rater.training_done_at = now
        rater.save(update_fields=["training_done_at"])
    session.stage = stage
    fields = ["stage"]
    if stage in (Session.Stage.DONE, Session.Stage.STOPPED):
        session.finished_at = now
        fields.append("finished_at")
    session.save(update_fields=fields)
    return session


def session_finish(*, session: Session) -> Session:
    session_advance(session=session, stage=Session.Stage.DONE)
    rater = session.rater
    if rater.status == Rater.Status.ACTIVE:
        rater.status = Rater.Status.COMPLETED
        rater.save(update_fields=["status"])
    Claim.objects.filter(session=session).delete()  # give unrated claims back at once
    if rater.source != Rater.Source.PILOT:
        studies.study_complete_check(study=rater.study)
    return session


# --- Ratings -------------------------------------------------------------------


def _parse_client_id(client_id) -> uuid.UUID:
    try:
        return client_id if isinstance(client_id, uuid.UUID) else uuid.UUID(str(client_id))
    except (ValueError, TypeError, AttributeError):
        raise SubmitRefused(
            "invalid_client_id", "client_id must be a UUID", field="client_id"
        ) from None


def _parse_viewing_seconds(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SubmitRefused(
            "invalid_viewing_time",
            "viewing_seconds must be a finite number",
            field="viewing_seconds",
        )
    if not 0 <= value <= 86400:
        raise SubmitRefused(
            "invalid_viewing_time",
            "viewing_seconds must be between 0 and 86400",
            field="viewing_seconds",
        )
    return float(value)


def _replay(existing: Rating, rater: Rater, stimulus_id, scores: dict) -> SubmitResult:
    if existing.rater_id != rater.pk:
        raise SubmitRefused(
            "client_id_taken",
            "this client_id belongs to another submission",
            status=409,
            field="client_id",
        )
    if existing.stimulus_id != stimulus_id or existing.scores() != scores:
        raise SubmitRefused(
            "replay_mismatch",
            "this client_id was already used for a different submission; nothing was changed",
            status=409,
            field="client_id",
        )
    return SubmitResult(existing, created=False)


def rating_submit(
    *,
    rater: Rater,
    stimulus_id: int,
    scores: object,
    client_id,
    viewing_seconds,
    display=None,
    viewing=None,
    now=None,
    check_view_time: bool = True,
) -> SubmitResult:
    """Write one rating, or refuse it with a clear reason and change nothing.

    The rater must hold a claim on the stimulus, for at least the study's minimum
    viewing time (the page enforces it too; this is for scripted clients; the
    demo's simulated raters, who look at nothing, pass ``check_view_time=False``).
    A replay of the same client_id with the same content returns the first result
    and writes nothing. A claim
    that expired is still honoured if nobody else took the slot meanwhile.

    ``display`` (the size the image was shown at) and ``viewing`` (the rater's window,
    screen, browser: kept on the session) are optional (``annotation.viewing``);
    conditions the study's options rule out are refused (409 ``viewing_conditions``).
    """
    now = now or timezone.now()
    cid = _parse_client_id(client_id)
    study = rater.study
    try:
        clean = protocol.validate_scores(study.protocol, study.scale, scores)
    except protocol.ProtocolError as exc:
        existing = Rating.objects.filter(client_id=cid).first()
        if existing is not None:
            raise SubmitRefused(
                "replay_mismatch",
                "this client_id was already used for a different submission",
                status=409,
                field="client_id",
            ) from None
        raise SubmitRefused(
            "invalid_scores", f"the scores do not fit this study: {exc}", errors=exc.errors
        ) from None
    seconds = _parse_viewing_seconds(viewing_seconds)
    try:
        conditions = conditions_clean(display, viewing)
    except BadConditions as exc:
        raise SubmitRefused("invalid_viewing_conditions", exc.message, field=exc.field) from None

    # A replay (a retry after a lost answer) is looked up by its client_id only when
    # the write does not go through, not before every write: it cannot go through,
    # since the first submission deleted the claim (refused below as "no_claim") or,
    # should the rater hold another claim on the stimulus, the client_id is already
    # taken (IntegrityError). Either way the transaction is rolled back first, so a
    # replay changes nothing, as before.
    try:
        with transaction.atomic():
            result = _rating_write(
                rater, study, stimulus_id, clean, cid, seconds, now, check_view_time, conditions
            )
    except SubmitRefused:
        existing = Rating.objects.filter(client_id=cid).first()
        if existing is not None:
            return _replay(existing, rater, stimulus_id, clean)
        raise
    except IntegrityError:
        # A concurrent retry with the same client_id won the race: answer as a replay.
        existing = Rating.objects.filter(client_id=cid).first()
        if existing is not None:
            return _replay(existing, rater, stimulus_id, clean)
        raise SubmitRefused(
            "already_rated", "you have already rated this image", status=409
        ) from None
    quality.after_rating(rating=result.rating)
    if result.filled:
        # Only on the rating that filled its stimulus: no query on the others.
        studies.study_complete_check(study=study)
    return result


# Allowance on the minimum viewing time, for clock differences between web replicas.
# The page starts its timer when it shows the image, which is after the claim was
# made (the claim comes with the previous answer), so a rater using the page never
# meets this check.
VIEW_TIME_SLACK_SECONDS = 0.5


def _rating_write(
    rater,
    study,
    stimulus_id,
    clean,
    cid,
    seconds,
    now,
    check_view_time=True,
    conditions: Conditions | None = None,
) -> SubmitResult:
    conditions = conditions or Conditions()
    # A researcher's preview (annotation.pilot): its rating counts toward nothing, so
    # it takes no slot (no check against K) and is taken whatever the study's status.
    pilot = rater.source == Rater.Source.PILOT
    if study.status == Study.Status.CLOSED and not pilot:
        raise SubmitRefused("study_closed", "this study is closed", status=409)
    try:
        conditions_check(study, conditions)
    except ConditionsRefused as exc:
        raise SubmitRefused(
            "viewing_conditions", exc.message, status=409, field=f"viewing.{exc.condition}"
        ) from None
    if (
        not isinstance(stimulus_id, int)
        or isinstance(stimulus_id, bool)
        or not 0 < stimulus_id < 2**63
    ):
        raise SubmitRefused(
            "unknown_stimulus", "no such image in this study", status=404, field="stimulus"
        )
    # The usual case in one statement: the stimulus, the rater and the rater's claim,
    # locked in that order (assignment locks stimuli first too, so counts are stable).
    found = statements.lock_claim_for_submit(rater, stimulus_id)
    if found is None:
        _refuse_unlocked(rater, study, stimulus_id)  # always raises, saying why
    stimulus, claim, rater_status = found
    if rater_status == Rater.Status.EXCLUDED:
        raise SubmitRefused("rater_excluded", "your participation has ended", status=403)
    if check_view_time and study.min_view_seconds > 0:
        shown = (now - claim.created_at).total_seconds()
        if shown + VIEW_TIME_SLACK_SECONDS < study.min_view_seconds:
            wait = study.min_view_seconds - shown
            raise SubmitRefused(
                "too_fast",
                f"please look at the image for at least {study.min_view_seconds:g} s "
                f"before rating it (another {wait:.1f} s)",
                status=409,
            )
    counts = not pilot and claim.repetition == 1 and stimulus.role == Stimulus.Role.TEST
    if counts and claim.expires_at <= now:
        k = study.ratings_per_stimulus
        if assignment.filled(stimulus.pk, now=now, exclude_rater=rater) >= k:
            statements.delete_claim(claim.pk)
            raise SubmitRefused(
                "claim_expired",
                "your time on this image ran out and it was given to another rater; "
                "please continue with the next image",
                status=409,
            )
    filled = False
    if counts:
        # The last guard in Python; the database constraint guards distinct raters.
        # Counted after the lock, in a statement of its own (READ COMMITTED: it sees
        # the ratings committed by whoever held the lock before).
        before = statements.count_test_ratings(stimulus.pk)
        if before >= study.ratings_per_stimulus:
            statements.delete_claim(claim.pk)
            raise SubmitRefused("stimulus_full", "this image has all its ratings", status=409)
        filled = before + 1 == study.ratings_per_stimulus
    rating = Rating(
        stimulus=stimulus,
        rater=rater,
        session=claim.session,
        protocol=study.protocol,
        scale=study.scale,
        repetition=claim.repetition,
        is_gold=stimulus.role == Stimulus.Role.GOLD,
        is_pilot=pilot,
        viewing_seconds=seconds,
        client_id=cid,
        created_at=now,
        **conditions.shown,
    )
    for key, value in clean.items():
        setattr(rating, key, value)
    rating.save(force_insert=True)  # one INSERT; by hand saved 0.03-0.06 ms
    # The session's viewing conditions: written only when the report changed them, so
    # the usual submit (same window as before, or nothing reported) adds no statement.
    changes = session_changes(claim.session, conditions)
    if changes:
        Session.objects.filter(pk=claim.session_id).update(**changes)
        for key, value in changes.items():
            setattr(claim.session, key, value)
    statements.delete_claim(claim.pk)
    return SubmitResult(rating, created=True, filled=filled)


def _refuse_unlocked(rater, study, stimulus_id) -> NoReturn:
    """Why a submission found no (stimulus, rater, claim) to lock: the refusal to raise."""
    if not Stimulus.objects.filter(pk=stimulus_id, study=study).exists():
        raise SubmitRefused(
            "unknown_stimulus", "no such image in this study", status=404, field="stimulus"
        )
    if Rater.objects.filter(pk=rater.pk, status=Rater.Status.EXCLUDED).exists():
        raise SubmitRefused("rater_excluded", "your participation has ended", status=403)
    raise SubmitRefused(
        "no_claim", "this image was not assigned to you", status=409, field="stimulus"
    )
