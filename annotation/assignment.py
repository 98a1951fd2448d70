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
stimulus row first, so two raters never take the last slot twice. The requests
of one session (a replayed submit, a second tab) claim one at a time: each
claiming transaction first takes the session's claiming lock and re-reads its
live claim (``_claiming``), so the session keeps one live claim. The unique
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

import bisect
from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import accumulate

from django.db import transaction
from django.db.models import Count, Exists, Max, OuterRef, Q, Value
from django.db.models.functions import Coalesce
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
    """Items in a full session for this rater: the session size, within the per-rater cap."""
    size = study.session_size
    if study.max_items_per_rater:
        done = rater.ratings.count()
        size = max(0, min(size, study.max_items_per_rater - done))
    return size


# --- Places: a session is admitted only with the work it was promised ---------------
#
# A new session is planned, under the study's row lock (services.session_start), with
# the most items (up to a full session, down to the researcher's minimum) for which
# every session that holds places can still be served whatever the others do:
# rater j, still owing m_j test items, can choose among N_j stimuli with room that it
# has not rated; the others, owing D together, can fill at most t(D) stimuli (the
# smallest rooms first), so j is never left short while N_j - t(D) >= m_j. Counting
# slots alone is not enough: each rater rates a stimulus once, and the closest-to-done
# order fills small rooms first, so a late rater can meet only stimuli it has rated.
# The bound is conservative near the end; the researcher's minimum session lets the
# last ratings go to shorter sessions, told before consent.

#: How long an unfinished session without activity (a rating, a live claim) keeps
#: its places: a rater who left the consent page or closed the window stops holding
#: work the study needs for others.
PLACE_HOLD = timedelta(hours=1)


def test_demand(study: Study, planned: int, gold_available: int) -> int:
    """Test items a session of ``planned`` items rates: the plan less its gold items
    (while the rater has gold left to see) and its repeat (claim_next's order)."""
    every = max(2, round(1 / study.gold_rate)) if study.gold_rate > 0 else 0
    repeat_at = (planned * 2) // 3 if study.repeat_check and planned >= 4 else -1
    gold = tests = 0
    for position in range(planned):
        if position == repeat_at:
            continue
        if every and position % every == every - 1 and gold < gold_available:
            gold += 1
            continue
        tests += 1
    return tests


def session_size_for(study: Study, rater: Rater | None) -> int:
    """A full session for this rater (None: a newcomer): the session size within the
    per-rater cap, and no more items than the study could ever hand them (test stimuli
    they have not rated, and gold): a session larger than the study is that study."""
    size = study.session_size if rater is None else plan_session_items(study, rater)
    tests = Stimulus.objects.filter(study=study, role=Stimulus.Role.TEST)
    golds = Stimulus.objects.filter(study=study, role=Stimulus.Role.GOLD)
    new_tests, new_gold = tests.count(), golds.count()
    if rater is not None:
        new_tests -= Rating.objects.filter(rater=rater, repetition=1, stimulus__in=tests).count()
        if new_gold:
            new_gold -= Rating.objects.filter(rater=rater, stimulus__in=golds).count()
    while size > 0 and test_demand(study, size, new_gold) > new_tests:
        size -= 1
    return size


def _exhausted(rooms: list[int], prefix: list[int], demand: int, raters: int) -> int:
    """How many stimuli ``demand`` ratings by ``raters`` distinct raters can fill
    completely: the smallest rooms first, and only rooms of at most ``raters`` (each
    rater rates a stimulus once)."""
    return min(bisect.bisect_right(prefix, demand), bisect.bisect_right(rooms, raters))


def holding_sessions(study: Study, now):
    """Unfinished sessions of active, non-pilot raters that still hold their places
    (started, rated or claiming within ``PLACE_HOLD``), with ``tests_done``."""
    live_claim = Claim.objects.filter(session=OuterRef("pk"), expires_at__gt=now)
    return (
        Session.objects.filter(rater__study=study, rater__status=Rater.Status.ACTIVE)
        .filter(finished_at__isnull=True)
        .exclude(stage__in=[Session.Stage.DONE, Session.Stage.STOPPED])
        .exclude(rater__source=Rater.Source.PILOT)
        .annotate(
            tests_done=Count(
                "ratings",
                filter=Q(ratings__repetition=1, ratings__stimulus__role=Stimulus.Role.TEST),
            ),
            rated=Count("ratings"),
            last_rating=Max("ratings__created_at"),
            claiming=Exists(live_claim),
        )
        .filter(
            Q(started_at__gt=now - PLACE_HOLD)
            | Q(last_rating__gt=now - PLACE_HOLD)
            | Q(claiming=True)
        )
    )


def test_stimuli_with_room(study: Study):
    """The study's test stimuli short of K counted ratings, with their count ``n``."""
    return (
        Stimulus.objects.filter(study=study, role=Stimulus.Role.TEST)
        .annotate(n=Coalesce("tally__ratings", 0))
        .filter(n__lt=study.ratings_per_stimulus)
    )


def _places_snapshot(
    study: Study, rater_ids: set[int], session_ids: list[int]
) -> tuple[list[int], dict[int, int], dict[int, int]]:
    """The rooms left (K less counted ratings, smallest first) of the test stimuli
    short of K; test items rated per session of ``session_ids``; and stimuli with room
    each rater of ``rater_ids`` has rated, all read in one statement (a UNION ALL).

    In READ COMMITTED every statement sees its own snapshot, and raters keep rating
    while a place is planned (they do not take the study's lock). Read apart, a rating
    committed between two reads could count neither as room taken nor as an item
    owed, and the plan would promise one place too many: a rater admitted for three
    items would find only two (the race test caught it about one run in eight).
    """
    k = study.ratings_per_stimulus
    # No ORDER BY in either part (SQLite refuses one inside a compound statement).
    room_rows = (
        test_stimuli_with_room(study)
        .order_by()
        .annotate(kind=Value(0))
        .values_list("kind", "pk", "n", "pk")
    )
    rating_rows = (
        Rating.objects.filter(
            rater_id__in=rater_ids,
            repetition=1,
            stimulus__study=study,
            stimulus__role=Stimulus.Role.TEST,
        )
        .order_by()
        .annotate(kind=Value(1))
        .values_list("kind", "rater_id", "stimulus_id", "session_id")
    )
    rows = list(room_rows.union(rating_rows, all=True))
    rooms = sorted(k - n for kind, _, n, _ in rows if kind == 0)
    with_room = {pk for kind, pk, _, _ in rows if kind == 0}
    wanted = set(session_ids)
    tests_done: dict[int, int] = {}
    rated_stimuli: dict[int, set[int]] = {}
    for kind, rater_id, stimulus_id, session_id in rows:
        if kind != 1:
            continue
        if session_id in wanted:
            tests_done[session_id] = tests_done.get(session_id, 0) + 1
        if stimulus_id in with_room:
            rated_stimuli.setdefault(rater_id, set()).add(stimulus_id)
    return rooms, tests_done, {r: len(s) for r, s in rated_stimuli.items()}


def places_plan(study: Study, rater: Rater | None, *, size: int, minimum: int, now=None) -> int:
    """The most items (``size`` down to ``minimum``) a new session of ``rater`` (None: a
    visitor not registered yet) may be planned with so that it and every session
    holding places are served in full; 0 when not even ``minimum`` fits. Call under the
    study's row lock to take the places (services.session_start); without, it is what
    a newcomer would be offered now (the consent page of a new visitor)."""
    now = now or timezone.now()
    sessions = holding_sessions(study, now)
    if rater is not None:
        sessions = sessions.exclude(rater=rater)
    # The sessions first (none can start meanwhile: the caller holds the study's row);
    # what they and the rooms hold then comes from one statement, so from one snapshot
    # (``_places_snapshot``).
    holding = list(sessions.values_list("pk", "rater_id", "planned_items"))
    rater_ids = {rater_id for _, rater_id, _ in holding}
    if rater is not None:
        rater_ids.add(rater.pk)
    rooms, tests_done, rated = _places_snapshot(study, rater_ids, [pk for pk, _, _ in holding])
    prefix = list(accumulate(rooms))
    gold = Stimulus.objects.filter(study=study, role=Stimulus.Role.GOLD)
    gold_total = gold.count()
    gold_seen = 0
    if gold_total and rater is not None:
        gold_seen = Rating.objects.filter(rater=rater, stimulus__in=gold).count()
    owed = []  # (test items still owed, stimuli it may still choose) per holding session
    for pk, rater_id, planned in holding:
        owe = max(0, test_demand(study, planned, gold_total) - tests_done.get(pk, 0))
        if owe:
            owed.append((owe, len(rooms) - rated.get(rater_id, 0)))
    total_owed = sum(owe for owe, _ in owed)
    choice = len(rooms) - (rated.get(rater.pk, 0) if rater is not None else 0)

    def served(owe: int, choose: int, others: int, other_raters: int) -> bool:
        return owe == 0 or choose - _exhausted(rooms, prefix, others, other_raters) >= owe

    # Sessions already short of the guarantee (settings changed, a lapsed rater back)
    # do not hold new raters out; every session that is served must stay served.
    n = len(owed)
    safe = [(o, c) for o, c in owed if served(o, c, total_owed - o, n - 1)]
    for planned in range(size, max(minimum, 1) - 1, -1):
        new = test_demand(study, planned, gold_total - gold_seen)
        if not served(new, choice, total_owed, n):
            continue
        if all(served(o, c, total_owed - o + new, n) for o, c in safe):
            return planned
    return 0


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


def _claiming(session: Session, now, make: Callable[[Session, datetime], Claim | None]):
    """``make``'s claim, made in its own transaction behind the session's claiming
    lock (``statements.lock_session``); or, when another request of the same session
    (a replayed submit, a second tab) claimed meanwhile, that request's claim.

    The lock is taken per claiming transaction, never around several: each of
    ``_claim_test``'s attempts is its own transaction, so the stimulus rows an
    attempt locked are released before the next one waits for others."""
    with transaction.atomic():
        return _claimed_meanwhile(session, now) or make(session, now)


def _claimed_meanwhile(session: Session, now) -> Claim | None:
    """First in each claiming transaction: the session's claiming lock, then its live
    claim read again (another request of the session may have claimed meanwhile)."""
    statements.lock_session(session.pk)
    if statements.live_claim_id(session.pk, now) is None:
        return None
    return _live_claim(session, now)


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
            if claimed := _claimed_meanwhile(session, now):
                return claimed
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
        claim = _claiming(session, now, _claim_repeat)
        if claim:
            return claim
    if _gold_due(study, done):
        claim = _claiming(session, now, _claim_gold)
        if claim:
            return claim
    if pilot.is_pilot(rater):
        return _claiming(session, now, _claim_pilot)
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
