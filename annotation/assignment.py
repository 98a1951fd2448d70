"""Which stimulus a rater sees next.

Each test stimulus should get exactly K ratings (repetition 1) from distinct
raters. Among the stimuli still short of K that this rater has not rated, the
ones closest to done (ratings plus live claims) go first, ties broken at
random, so the pool finishes evenly instead of leaving a long tail. Claims
expire and return to the pool. Gold items are interleaved at the study's rate
and one already-rated stimulus may come back once per session (repetition 2).

Concurrency: candidate stimuli are locked with
``SELECT ... FOR UPDATE SKIP LOCKED`` and their counts re-read under the lock;
every writer (claiming here, rating in services.rating_submit) locks the
stimulus row first, so two raters never take the last slot twice. The unique
constraints on Claim and Rating are the last guard.

The statements that run on every claim (the candidates, the lock, the count under
it, the claim's upsert) are hand-written in ``statements``, where the measured
gain of each is given; the rest is ORM.

A pilot (a researcher's preview, ``annotation.pilot``) counts toward nothing: its
claims are left out of the counts toward K and its ratings out of the tally, and it
is handed any test stimulus it has not rated yet, at random, even one that has its
K ratings (``_claim_pilot``), so a preview of a full study still works.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from annotation import pilot, statements
from annotation.models import Claim, Rater, Rating, Session, Stimulus, Study

CANDIDATES_PER_TRY = 16
SKIP_LOCKED_TRIES = 8


def filled(
    stimulus_id: int, *, now=None, exclude_rater: Rater | None = None, for_claim: bool = False
) -> int:
    """Ratings (repetition 1) plus live claims on a stimulus; call under its row lock.

    It must be a statement of its own, issued after the lock is taken: in READ
    COMMITTED each statement sees what was committed before it began, so counts
    read in the locking statement itself could predate the commit of the rater who
    held the lock. Ratings come from the trigger-kept tally (every rating is
    written under the stimulus lock, so the tally is exact here), live claims are
    counted; both in one statement (``statements.stimulus_fill``), since it runs on
    every claim. ``for_claim``: the caller claims the stimulus when it has room, and
    the statement also lets the claim commit without waiting for the disk.
    """
    return statements.stimulus_fill(
        stimulus_id,
        now or timezone.now(),
        exclude_rater_id=None if exclude_rater is None else exclude_rater.pk,
        for_claim=for_claim,
    )


def session_progress(session: Session) -> tuple[int, int]:
    """(items rated in this session, items planned)."""
    return session.ratings.count(), session.planned_items


def plan_session_items(study: Study, rater: Rater) -> int:
    """Items in a new session: the session size, within the per-rater cap."""
    size = study.session_size
    if study.max_items_per_rater:
        done = rater.ratings.count()
        size = max(0, min(size, study.max_items_per_rater - done))
    return size


def _live_claim(session: Session, now) -> Claim | None:
    """The session's oldest unexpired claim, with its stimulus. Not on the request
    path (the rater endpoints read it with the session, ``statements``)."""
    claim = (
        Claim.objects.select_related("stimulus")
        .filter(session=session, expires_at__gt=now)
        .order_by("created_at", "id")
        .first()
    )
    if claim is not None:
        claim.session = session
    return claim


def _gold_due(study: Study, position: int) -> bool:
    """Gold on every round(1/rate)-th item, never first (raters warm up first)."""
    if study.gold_rate <= 0:
        return False
    every = max(2, round(1 / study.gold_rate))
    return position % every == every - 1


def _repeat_due(study: Study, session: Session, position: int) -> bool:
    if not study.repeat_check or session.planned_items < 4:
        return False
    if session.ratings.filter(repetition=2).exists():
        return False
    return position == (session.planned_items * 2) // 3


def _make_claim(session: Session, stimulus: Stimulus, repetition: int, now) -> Claim:
    """A new claim, or the rater's old (expired) claim on the stimulus renewed.

    One INSERT ... ON CONFLICT DO UPDATE on the (rater, stimulus, repetition) unique
    constraint instead of update_or_create's SELECT FOR UPDATE and INSERT in two
    savepoints: the same outcome (created_at kept on renewal) in one statement.
    """
    claim = Claim(
        rater=session.rater,
        stimulus=stimulus,
        session=session,
        repetition=repetition,
        created_at=now,
        expires_at=now + timedelta(seconds=session.rater.study.claim_ttl_seconds),
    )
    return statements.upsert_claim(claim)


def _claim_gold(session: Session, now) -> Claim | None:
    rater = session.rater
    gold = (
        Stimulus.objects.filter(study=rater.study, role=Stimulus.Role.GOLD)
        .exclude(ratings__rater=rater)
        .exclude(_own_live_claim(rater, now))
        .order_by("?")
        .first()
    )
    return _make_claim(session, gold, 1, now) if gold else None


def _claim_repeat(session: Session, now) -> Claim | None:
    rated = (
        Rating.objects.filter(session=session, repetition=1, stimulus__role=Stimulus.Role.TEST)
        .exclude(stimulus__ratings__rater=session.rater, stimulus__ratings__repetition=2)
        .order_by("?")
        .first()
    )
    return _make_claim(session, rated.stimulus, 2, now) if rated else None


def _own_live_claim(rater: Rater, now) -> Exists:
    return Exists(Claim.objects.filter(stimulus=OuterRef("pk"), rater=rater, expires_at__gt=now))


def _claim_pilot(session: Session, now) -> Claim | None:
    """A pilot's test item: any test stimulus it has not rated, at random, full or
    not. Its claim reserves nothing and its rating counts toward nothing, so there is
    no count to read and no stimulus to lock."""
    rater = session.rater
    stimulus = (
        Stimulus.objects.filter(study=rater.study, role=Stimulus.Role.TEST)
        .exclude(ratings__rater=rater)
        .exclude(_own_live_claim(rater, now))
        .only(*statements.STIMULUS_SHOWN_FIELDS)
        .order_by("?")
        .first()
    )
    return _make_claim(session, stimulus, 1, now) if stimulus else None


def _claim_test(session: Session, now) -> Claim | None:
    study = session.rater.study
    k = study.ratings_per_stimulus
    attempt = 0
    while True:
        attempt += 1
        ids = statements.candidate_ids(study, session.rater, now, CANDIDATES_PER_TRY)
        if not ids:
            return None
        with transaction.atomic():
            if attempt <= SKIP_LOCKED_TRIES:
                # The first candidate nobody else holds, one row at a time: a rater
                # locks only the stimulus it claims (and any it finds full on the way),
                # so concurrent raters, who rank the same stimuli first, skip past each
                # other instead of each locking a whole list and starving the rest.
                for pk in ids:
                    stimulus = statements.lock_stimulus(pk, skip_locked=True)
                    # Re-read under the row lock: another rater may have filled it.
                    if stimulus is not None and filled(pk, now=now, for_claim=True) < k:
                        return _make_claim(session, stimulus, 1, now)
            else:
                # After a few rounds of contention, wait instead of spinning: all rows
                # at once, in primary-key order, so two waiting raters cannot deadlock.
                locked = list(
                    Stimulus.objects.filter(pk__in=ids)
                    .order_by("pk")
                    .only(*statements.STIMULUS_SHOWN_FIELDS)
                    .select_for_update(of=("self",))
                )
                order = {pk: i for i, pk in enumerate(ids)}
                locked.sort(key=lambda s: order[s.pk])
                for stimulus in locked:
                    if filled(stimulus.pk, now=now, for_claim=True) < k:
                        return _make_claim(session, stimulus, 1, now)
        # Every candidate was held by others or turned out full: the list is stale.


# claim_next's ``live`` when the caller has not read the session's live claim.
UNREAD = object()


def claim_next(
    *,
    session: Session,
    now=None,
    done: int | None = None,
    status_checked: bool = False,
    live=UNREAD,
) -> Claim | None:
    """The rater's current claim, or a new one; None when the session has nothing left.

    Callers on the request path pass what they have just read in the same request,
    to save the queries: ``done`` (the session's ratings, ``session_progress``),
    ``status_checked`` (the rater's status was read from the database just before)
    and ``live`` (the session's live claim, or None when it has none).
    """
    now = now or timezone.now()
    rater = session.rater
    if not status_checked:
        # Quality checks may have excluded them meanwhile.
        rater.refresh_from_db(fields=["status"])
    if rater.status != Rater.Status.ACTIVE:
        return None
    current = _live_claim(session, now) if live is UNREAD else live
    if current is not None:
        return current  # a reload resumes on the same stimulus
    if done is None:
        done, _ = session_progress(session)
    planned = session.planned_items
    if done >= planned:
        return None
    study = rater.study
    if study.max_items_per_rater and rater.ratings.count() >= study.max_items_per_rater:
        return None
    if _repeat_due(study, session, done):
        claim = _claim_repeat(session, now)
        if claim:
            return claim
    if _gold_due(study, done):
        claim = _claim_gold(session, now)
        if claim:
            return claim
    if pilot.is_pilot(rater):
        return _claim_pilot(session, now)
    return _claim_test(session, now)


def study_fill(study: Study) -> dict[str, int]:
    """Test stimuli complete / in progress / untouched (for the study page); pilot
    ratings and claims (researchers' previews) count toward nothing."""
    now = timezone.now()
    k = study.ratings_per_stimulus
    rows = (
        Stimulus.objects.filter(study=study, role=Stimulus.Role.TEST)
        .annotate(
            n=Count(
                "ratings",
                filter=Q(ratings__repetition=1, ratings__is_pilot=False),
                distinct=True,
            ),
            # Only pilot raters have a pilot_user (a database check).
            c=Count(
                "claims",
                filter=Q(claims__expires_at__gt=now, claims__rater__pilot_user__isnull=True),
                distinct=True,
            ),
        )
        .values_list("n", "c")
    )
    complete = in_progress = untouched = 0
    for n, c in rows:
        if n >= k:
            complete += 1
        elif n or c:
            in_progress += 1
        else:
            untouched += 1
    return {"complete": complete, "in_progress": in_progress, "untouched": untouched}
