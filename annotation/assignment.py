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
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Exists, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Claim, Rater, Rating, Session, Stimulus, Study

CANDIDATES_PER_TRY = 16
SKIP_LOCKED_TRIES = 8


def _count_subquery(model, now, *, live_only: bool):
    qs = model.objects.filter(stimulus=OuterRef("pk"), repetition=1)
    if live_only:
        qs = qs.filter(expires_at__gt=now)
    return Coalesce(
        Subquery(
            qs.order_by().values("stimulus").annotate(c=Count("pk")).values("c"),
            output_field=IntegerField(),
        ),
        Value(0),
    )


def filled(stimulus_id: int, *, now=None, exclude_rater: Rater | None = None) -> int:
    """Ratings (repetition 1) plus live claims on a stimulus; call under its row lock."""
    now = now or timezone.now()
    ratings = Rating.objects.filter(stimulus_id=stimulus_id, repetition=1).count()
    claims = Claim.objects.filter(stimulus_id=stimulus_id, repetition=1, expires_at__gt=now)
    if exclude_rater is not None:
        claims = claims.exclude(rater=exclude_rater)
    return ratings + claims.count()


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
    return (
        Claim.objects.select_related("stimulus")
        .filter(session=session, expires_at__gt=now)
        .order_by("created_at", "id")
        .first()
    )


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
    claim, _ = Claim.objects.update_or_create(
        rater=session.rater,
        stimulus=stimulus,
        repetition=repetition,
        defaults={
            "session": session,
            "expires_at": now + timedelta(seconds=session.rater.study.claim_ttl_seconds),
        },
    )
    return claim


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


def _claim_test(session: Session, now) -> Claim | None:
    study = session.rater.study
    k = study.ratings_per_stimulus
    candidates = (
        Stimulus.objects.filter(study=study, role=Stimulus.Role.TEST)
        .exclude(ratings__rater=session.rater)
        .exclude(_own_live_claim(session.rater, now))
        .annotate(
            n_ratings=_count_subquery(Rating, now, live_only=False),
            n_claims=_count_subquery(Claim, now, live_only=True),
        )
        .annotate(fill=Coalesce("n_ratings", 0) + Coalesce("n_claims", 0))
        .filter(fill__lt=k)
        .order_by("-fill", "?")
    )
    attempt = 0
    while True:
        attempt += 1
        ids = list(candidates.values_list("pk", flat=True)[:CANDIDATES_PER_TRY])
        if not ids:
            return None
        # Skip rows other raters hold; after a few rounds of contention, wait instead
        # of spinning (still correct: counts are re-read under the lock).
        skip = attempt <= SKIP_LOCKED_TRIES
        with transaction.atomic():
            locked = list(
                Stimulus.objects.select_for_update(skip_locked=skip)
                .filter(pk__in=ids)
                .order_by("pk")
                .only("pk", "study_id")
            )
            order = {pk: i for i, pk in enumerate(ids)}
            locked.sort(key=lambda s: order[s.pk])
            for stimulus in locked:
                # Re-read under the row lock: another rater may have filled it meanwhile.
                if filled(stimulus.pk, now=now) < k:
                    return _make_claim(session, stimulus, 1, now)
        # Every candidate was locked by others or turned out full: the list is stale.


def claim_next(*, session: Session, now=None) -> Claim | None:
    """The rater's current claim, or a new one; None when the session has nothing left."""
    now = now or timezone.now()
    rater = session.rater
    rater.refresh_from_db(fields=["status"])  # quality checks may have excluded them meanwhile
    if rater.status != Rater.Status.ACTIVE:
        return None
    current = _live_claim(session, now)
    if current is not None:
        return current  # a reload resumes on the same stimulus
    done, planned = session_progress(session)
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
    return _claim_test(session, now)


def study_fill(study: Study) -> dict[str, int]:
    """Test stimuli complete / in progress / untouched (for the study page)."""
    now = timezone.now()
    k = study.ratings_per_stimulus
    rows = (
        Stimulus.objects.filter(study=study, role=Stimulus.Role.TEST)
        .annotate(
            n=Count("ratings", filter=Q(ratings__repetition=1), distinct=True),
            c=Count("claims", filter=Q(claims__expires_at__gt=now), distinct=True),
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
