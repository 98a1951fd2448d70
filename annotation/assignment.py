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

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from annotation import statements
from annotation.models import Claim, Rater, Rating, Session, Stimulus, StimulusTally, Study

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
    counted; both in one hand-written statement, since it runs on every claim.
    ``for_claim``: the caller claims the stimulus when it has room (see
    ``_commit_without_waiting_for_disk``).
    """
    at = connection.ops.adapt_datetimefield_value(now or timezone.now())
    sql = (
        f"SELECT COALESCE((SELECT ratings FROM {StimulusTally._meta.db_table}"
        "                  WHERE stimulus_id = %s), 0)"
        f"     + (SELECT COUNT(*) FROM {Claim._meta.db_table}"
        "         WHERE stimulus_id = %s AND repetition = 1 AND expires_at > %s"
        + (" AND rater_id <> %s)" if exclude_rater is not None else ")")
        + (_commit_without_waiting_for_disk() if for_claim else "")
    )
    params = [stimulus_id, stimulus_id, at]
    if exclude_rater is not None:
        params.append(exclude_rater.pk)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


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
    return statements.live_claim(session, now)


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


# The candidates of _claim_test: test stimuli of the study that the rater has neither
# rated nor holds a live claim on, with fill = ratings (repetition 1) + live claims
# (repetition 1) below K, closest to done first, ties at random.
#
# Hand-written because it runs on every claim and dominated the rating path. Ratings
# come from StimulusTally (kept by triggers), so ranking a study's stimuli reads one
# narrow row each instead of counting each one's ratings; the CTE is MATERIALIZED on
# PostgreSQL so the planner cannot inline it and compute the fill twice. Live claims,
# a small set, are counted only for the stimuli found in it (a hashed IN), and the
# rater's own ratings and claims are read once into a hashed NOT IN. This shape keeps
# its plan with or without fresh statistics and as a prepared (generic) plan. The
# cost grows with the study's test stimuli still short of K. Plain SQL that SQLite
# runs too.
_CANDIDATES_SQL = """
WITH counted AS {materialized} (
    SELECT s.id,
        COALESCE(t.ratings, 0)
        + CASE WHEN s.id IN (SELECT stimulus_id FROM {claim} WHERE expires_at > %s)
          THEN (SELECT COUNT(*) FROM {claim} c
                WHERE c.stimulus_id = s.id AND c.repetition = 1 AND c.expires_at > %s)
          ELSE 0 END AS fill
    FROM {stimulus} s LEFT JOIN {tally} t ON t.stimulus_id = s.id
    WHERE s.study_id = %s AND s.role = %s AND COALESCE(t.ratings, 0) < %s
        AND s.id NOT IN (SELECT stimulus_id FROM {rating} WHERE rater_id = %s)
        AND s.id NOT IN (SELECT stimulus_id FROM {claim} WHERE rater_id = %s AND expires_at > %s)
)
SELECT id FROM counted WHERE fill < %s ORDER BY fill DESC, RANDOM() LIMIT %s
"""


def _candidate_ids(study: Study, rater: Rater, now) -> list[int]:
    sql = _CANDIDATES_SQL.format(
        materialized="MATERIALIZED" if connection.vendor == "postgresql" else "",
        rating=Rating._meta.db_table,
        stimulus=Stimulus._meta.db_table,
        claim=Claim._meta.db_table,
        tally=StimulusTally._meta.db_table,
    )
    at = connection.ops.adapt_datetimefield_value(now)
    params = [
        at,
        at,
        study.pk,
        Stimulus.Role.TEST.value,
        study.ratings_per_stimulus,
        rater.pk,
        rater.pk,
        at,
        study.ratings_per_stimulus,
        CANDIDATES_PER_TRY,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def _claim_test(session: Session, now) -> Claim | None:
    study = session.rater.study
    k = study.ratings_per_stimulus
    attempt = 0
    while True:
        attempt += 1
        ids = _candidate_ids(study, session.rater, now)
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
                locked = statements.lock_stimuli(ids, skip_locked=False)
                order = {pk: i for i, pk in enumerate(ids)}
                locked.sort(key=lambda s: order[s.pk])
                for stimulus in locked:
                    if filled(stimulus.pk, now=now, for_claim=True) < k:
                        return _make_claim(session, stimulus, 1, now)
        # Every candidate was held by others or turned out full: the list is stale.


def _commit_without_waiting_for_disk() -> str:
    """A select-list item that lets the claim's transaction commit without waiting
    for its WAL flush (``set_config(..., true)`` is ``SET LOCAL``), or "".

    Read with the counts under the lock, so it costs no round trip of its own.
    The transaction holds the row locks of the candidates it locked until it
    commits, and raters submitting a rating for one of those stimuli wait for them;
    the flush was most of that time. A claim is a reservation, not data: were
    PostgreSQL to crash within the next fraction of a second, the claim would be
    lost and the stimulus simply back in the pool (the rater's submit is then
    refused as "no_claim" and the page moves on). Visibility and locking are
    unchanged: other transactions see the claim as soon as it commits. Only for our
    own outermost transaction: inside a caller's transaction, which may write
    ratings, it would relax that transaction's commit too. (Set before knowing
    whether this stimulus is the one: a transaction that ends up claiming nothing
    has nothing to flush.)
    """
    if connection.vendor == "postgresql" and len(connection.atomic_blocks) == 1:
        return ", set_config('synchronous_commit', 'off', true)"
    return ""


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
