"""The rating path's hand-written statements (annotation/statements.py) against their
ORM forms: Python CPU a run, and the statements each form runs.

Not a test. Each pair runs N calls (env N, default 400) inside a rolled-back
transaction, the two forms in alternate rounds (env ROUNDS, default 5), on a study
of 2,000 stimuli; CPU is this process's time.process_time (PostgreSQL's own time
is another process and not counted). Results of the two forms are compared
first. It creates and drops its own test database on the local PostgreSQL
(DATABASE_URL, default postgres://postgres@127.0.0.1:5432/stmtbench -> test_...).

    .venv/bin/python bench/bench_statements.py
    ROUNDS=9 .venv/bin/python bench/bench_statements.py

Figures in docs/benchmarks.md, "Rating path", "Hand-written statements".
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/stmtbench")
os.environ["DJANGO_SETTINGS_MODULE"] = "studyweb.test_settings"

import django

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.db.models import (  # noqa: E402
    Avg,
    CharField,
    Count,
    F,
    FloatField,
    Func,
    IntegerField,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, NullIf  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_databases, teardown_databases  # noqa: E402
from django.utils import timezone  # noqa: E402

N = int(os.environ.get("N", "400"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))


def orm_filled(pk, now, exclude_rater=None, for_claim=False):
    from annotation.models import Claim, Stimulus, StimulusTally

    claims = Claim.objects.filter(stimulus_id=pk, repetition=1, expires_at__gt=now)
    if exclude_rater is not None:
        claims = claims.exclude(rater_id=exclude_rater.pk)
    live = claims.order_by().annotate(n=Func(F("pk"), function="COUNT")).values("n")
    tally = StimulusTally.objects.filter(stimulus_id=pk).values("ratings")
    fields = {"fill": Coalesce(Subquery(tally), 0) + Subquery(live, output_field=IntegerField())}
    if for_claim and connection.vendor == "postgresql" and len(connection.atomic_blocks) == 1:
        fields["sync"] = Func(
            Value("synchronous_commit"),
            Value("off"),
            Value(True),
            function="set_config",
            output_field=CharField(),
        )
    row = (
        Stimulus.objects.filter(pk=pk)
        .order_by()
        .annotate(**fields)
        .values_list(*fields.keys())
        .first()
    )
    return 0 if row is None else row[0]


def orm_straight(rater_id):
    from annotation.models import Rater, Rating

    scores = Rating.objects.filter(rater_id=rater_id, repetition=1, is_gold=False).order_by()
    mean = scores.values("rater_id").annotate(m=Avg("overall")).values("m")
    dev = F("overall") - Subquery(mean, output_field=FloatField())
    grouped = scores.values("rater_id")
    n = grouped.annotate(n=Count("pk")).values("n")
    v = grouped.annotate(
        v=Sum(dev * dev, output_field=FloatField()) / NullIf(Count("pk") - 1, 0)
    ).values("v")
    return (
        Rater.objects.filter(pk=rater_id)
        .order_by()
        .annotate(n=Subquery(n), v=Subquery(v, output_field=FloatField()))
        .values_list("flags", "n", "v")
        .first()
    )


def hand_straight(rater_id):
    from annotation import statements

    return statements.straight_lining(rater_id)


def old_hand_straight(rater_id):
    from annotation.models import Rater, Rating

    where = "rater_id = %s AND repetition = 1 AND NOT is_gold"
    sql = (
        f"SELECT r.flags, s.n, s.v FROM {Rater._meta.db_table} r, ("
        "    SELECT COUNT(*) AS n,"
        "        SUM((x.overall - a.m) * (x.overall - a.m)) / NULLIF(COUNT(*) - 1, 0) AS v"
        f"   FROM {Rating._meta.db_table} x,"
        f"       (SELECT AVG(overall) AS m FROM {Rating._meta.db_table} WHERE {where}) a"
        f"   WHERE {where}"
        ") s WHERE r.id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [rater_id, rater_id, rater_id])
        row = cursor.fetchone()
    flags = Rater._meta.get_field("flags").from_db_value(row[0], None, connection)
    return flags, row[1], row[2]


def orm_lock_stimulus(pk, skip_locked):
    from annotation.models import Stimulus

    found = list(
        Stimulus.objects.filter(pk=pk)
        .order_by()
        .only("id", "study_id", "image", "width", "height")
        .select_for_update(skip_locked=skip_locked, of=("self",))
    )
    return found[0] if found else None


def orm_count_test_ratings(pk):
    from annotation.models import StimulusTally

    found = list(StimulusTally.objects.filter(stimulus_id=pk).values_list("ratings", flat=True))
    return found[0] if found else 0


def orm_delete_claim(claim_id):
    from annotation.models import Claim

    Claim.objects.filter(pk=claim_id).delete()


def orm_upsert_claim(claim):
    from annotation.models import Claim

    Claim.objects.bulk_create(
        [claim],
        update_conflicts=True,
        unique_fields=["rater", "stimulus", "repetition"],
        update_fields=["session", "expires_at"],
    )
    return claim


def orm_insert_rating(rating):
    rating.save(force_insert=True)
    return rating


def orm_rater_by_token(slug, token):
    from annotation.models import Rater

    return Rater.objects.select_related("study").filter(study__slug=slug, token=token).first()


def orm_live_claim(session, now):
    from annotation.models import Claim

    return (
        Claim.objects.select_related("stimulus")
        .filter(session=session, expires_at__gt=now)
        .order_by("created_at", "id")
        .first()
    )


def orm_lock_stimuli(ids, skip_locked):
    from annotation.models import Stimulus

    return list(
        Stimulus.objects.filter(pk__in=ids)
        .order_by("pk")
        .only("id", "study_id", "image", "width", "height")
        .select_for_update(skip_locked=skip_locked, of=("self",))
    )


def orm_lock_claim_for_submit(rater, stimulus_id):
    from annotation.models import Claim

    claim = (
        Claim.objects.select_related("stimulus", "session", "rater")
        .filter(stimulus_id=stimulus_id, stimulus__study_id=rater.study_id, rater=rater)
        .order_by("-repetition")
        .select_for_update(of=("self", "stimulus", "rater"))
        .first()
    )
    if claim is None:
        return None
    return claim.stimulus, claim, claim.rater.status


# The hand-written forms that went back to the ORM (as they were before).
def old_live_claim(session, now):
    from annotation import statements as st

    row = st._fetchone(
        f"SELECT {st._CLAIM.sql}, {st._STIMULUS.sql}"
        f" FROM {st._table(st.Session)} se{st._live_claim_join()}"
        " WHERE se.id = %s",
        [st._at(now), session.pk],
    )
    return None if row is None else st._claim_from(row, 0, session)


def old_lock_stimuli(ids, skip_locked):
    from annotation import statements as st

    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {st._STIMULUS_SHOWN.sql} FROM {st._table(st.Stimulus)} s"
            f" WHERE s.id IN ({marks})"
            f" ORDER BY s.id{st._for_update('s', skip_locked=skip_locked)}",
            list(ids),
        )
        return [st._STIMULUS_SHOWN.build(row) for row in cursor.fetchall()]


def old_insert_rating(rating):
    from annotation import statements as st
    from annotation.models import Rating

    fields = [f for f in Rating._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(st._q(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    values = [f.get_db_prep_save(getattr(rating, f.attname), connection) for f in fields]
    row = st._fetchone(
        f"INSERT INTO {st._table(Rating)} ({columns}) VALUES ({marks}) RETURNING id", values
    )
    rating.pk = row[0]
    rating._state.adding = False
    rating._state.db = connection.alias
    return rating


def setup():
    from django.contrib.auth import get_user_model

    from annotation import services
    from annotation.models import Session, Stimulus, Study

    owner = get_user_model().objects.create(username="bench")
    study = Study.objects.create(
        slug="bench",
        title="bench",
        owner=owner,
        protocol="perspectives",
        scale="continuous",
        ratings_per_stimulus=5,
        session_size=10_000,  # the most a study allows (STUDY_BOUNDS)
        break_every=10_000,
        gold_rate=0,
        min_view_seconds=0,
    )
    Stimulus.objects.bulk_create(
        Stimulus(
            study=study,
            image=f"stimuli/{i}.png",
            original_name=f"{i}.png",
            sha256=f"{i:064x}",
            width=16,
            height=16,
        )
        for i in range(2000)
    )
    raters = []
    for i in range(8):
        rater, _ = services.rater_enter(study=study, source="prolific", external_id=f"b{i}")
        rater.consented_at = rater.training_done_at = timezone.now()
        rater.save(update_fields=["consented_at", "training_done_at"])
        # Past admission (places are not what is measured): a session at the rating
        # stage whose size never ends the run.
        session = Session.objects.create(
            rater=rater, stage=Session.Stage.RATING, planned_items=study.session_size
        )
        raters.append((rater, session))
    # Some ratings so the tally, the variance and the claims have rows.
    from annotation import assignment

    for rater, session in raters:
        for _ in range(15):
            claim = assignment.claim_next(session=session)
            services.rating_submit(
                rater=rater,
                stimulus_id=claim.stimulus_id,
                scores={"overall": 50 + len(str(claim.pk)), "technical": 50, "rationality": 50},
                client_id=uuid.uuid4(),
                viewing_seconds=3.0,
            )
        assignment.claim_next(session=session)  # a live claim each
    return study, raters


def measure(fn, make_args, rollback=True):
    args = [make_args(i) for i in range(N)]
    with transaction.atomic():
        t0 = time.process_time()
        for a in args:
            fn(*a)
        t = (time.process_time() - t0) / N
        if rollback:
            transaction.set_rollback(True)
    return t


def count(fn, args):
    with transaction.atomic():
        with CaptureQueriesContext(connection) as ctx:
            fn(*args)
        transaction.set_rollback(True)
    return len(ctx.captured_queries)


def main():
    from annotation import assignment, statements
    from annotation.models import Claim, Rating, Stimulus

    study, raters = setup()
    rater, session = raters[0]
    now = timezone.now()
    stimuli = list(Stimulus.objects.filter(study=study).values_list("pk", flat=True))
    unrated = list(
        Stimulus.objects.filter(study=study)
        .exclude(ratings__rater=rater)
        .exclude(claims__rater=rater)
        .values_list("pk", flat=True)
    )
    held = Claim.objects.get(rater=rater)
    claim_ids = list(Claim.objects.values_list("pk", flat=True))

    def new_claim(i):
        return (
            Claim(
                rater=rater,
                stimulus_id=unrated[i],
                session=session,
                repetition=1,
                created_at=now,
                expires_at=now + timedelta(minutes=10),
            ),
        )

    def new_rating(i):
        return (
            Rating(
                stimulus_id=unrated[i],
                rater=rater,
                session=session,
                protocol="perspectives",
                scale="continuous",
                viewing_seconds=3.0,
                client_id=uuid.uuid4(),
                created_at=now,
                overall=50.0,
                technical=50.0,
                rationality=50.0,
            ),
        )

    pairs = {
        "filled (for_claim, under the lock)": (
            lambda pk: assignment.filled(pk, now=now, for_claim=True),
            lambda pk: orm_filled(pk, now, for_claim=True),
            lambda i: (stimuli[i % len(stimuli)],),
        ),
        "straight-lining check": (
            hand_straight,
            orm_straight,
            lambda i: (raters[i % len(raters)][0].pk,),
        ),
        "lock one stimulus (SKIP LOCKED)": (
            lambda pk: statements.lock_stimulus(pk, skip_locked=True),
            lambda pk: orm_lock_stimulus(pk, True),
            lambda i: (stimuli[i % len(stimuli)],),
        ),
        "tally read (count_test_ratings)": (
            statements.count_test_ratings,
            orm_count_test_ratings,
            lambda i: (stimuli[i % len(stimuli)],),
        ),
        "delete claim": (
            statements.delete_claim,
            orm_delete_claim,
            lambda i: (claim_ids[i % len(claim_ids)],),
        ),
        "claim upsert": (statements.upsert_claim, orm_upsert_claim, new_claim),
        "rating INSERT (now ORM)": (old_insert_rating, orm_insert_rating, new_rating),
        "live claim alone (now ORM)": (
            old_live_claim,
            orm_live_claim,
            lambda i: (raters[i % len(raters)][1], now),
        ),
        "lock 16 stimuli (now ORM)": (
            lambda ids: old_lock_stimuli(ids, False),
            lambda ids: orm_lock_stimuli(ids, False),
            lambda i: (stimuli[(i * 16) % 1984 : (i * 16) % 1984 + 16],),
        ),
        "lock claim for submit": (
            statements.lock_claim_for_submit,
            orm_lock_claim_for_submit,
            lambda i: (rater, held.stimulus_id),
        ),
        "rater by token": (
            statements.rater_by_token,
            orm_rater_by_token,
            lambda i: (study.slug, raters[i % len(raters)][0].token),
        ),
    }
    # Equal results first.
    assert assignment.filled(stimuli[0], now=now) == orm_filled(stimuli[0], now)
    for r, _ in raters:
        h, o = hand_straight(r.pk), orm_straight(r.pk)
        assert h == old_hand_straight(r.pk)
        assert h[1] == o[1] and abs((h[2] or 0) - (o[2] or 0)) < 1e-9, (h, o)
    print(f"{connection.vendor}, N={N} calls x {ROUNDS} rounds, median per call")
    print(f"{'statement':40s} {'hand ms':>8s} {'ORM ms':>8s} {'gain ms':>8s}  stmts hand/ORM")
    for name, (hand, orm, make) in pairs.items():
        th, to = [], []
        for _ in range(ROUNDS):
            th.append(measure(hand, make))
            to.append(measure(orm, make))
        h, o = statistics.median(th) * 1e3, statistics.median(to) * 1e3
        ch, co = count(hand, make(0)), count(orm, make(0))
        print(f"{name:40s} {h:8.3f} {o:8.3f} {o - h:8.3f}  {ch}/{co}")


if __name__ == "__main__":
    old = setup_databases(verbosity=0, interactive=False)
    try:
        main()
    finally:
        teardown_databases(old, verbosity=0)
