"""The rating path's hand-written SQL: the one module of the project that has any.

Everything else uses the ORM. A statement is written by hand only where a
measurement shows that it pays for itself: the ORM cannot say it in as few
statements, or it runs on every rating cycle and the ORM form of the same single
statement costs at least 0.1 ms more Python a run (2% of the cycle's 4.5-5.2 ms
of Django CPU). Figures from docs/benchmarks.md, "Rating path", "Hand-written
statements" (Python CPU a run saved against the ORM form, on PostgreSQL):

=========================  =====================  ===================================
function                   runs                   why by hand
=========================  =====================  ===================================
``rater_by_token``         every rater request    1.2-1.4 ms saved
``current_session``        GET next               one statement where the ORM needs
                                                  two; with ``session_states`` and the
                                                  fill's commit setting, 20 -> 17
                                                  statements a cycle
``session_states``         after a submit         the same
``candidate_ids``          every claim            a MATERIALIZED CTE the ORM cannot
                                                  write (first round: 49 -> 22
                                                  statements, 43 -> 17-19 ms CPU per
                                                  rating with that round's changes)
``lock_session``,          every claim attempt    an advisory lock the ORM cannot
``live_claim_id``                                 take; the re-read beside it
``lock_stimulus``          every candidate tried  0.3-0.5 ms saved
``stimulus_fill``          every candidate tried  1.8-2.0 ms saved
``upsert_claim``           every claim            0.13-0.19 ms saved (and the ORM's
                                                  bulk_create would overwrite
                                                  created_at, an auto_now_add field)
``lock_claim_for_submit``  every submit           1.5-1.8 ms saved
``count_test_ratings``     every submit           0.23-0.27 ms saved
``delete_claim``           every submit           0.18-0.24 ms saved
``straight_lining``        every rating           3.3-4.0 ms saved
=========================  =====================  ===================================

Measured not to pay, so ORM again: the rating's INSERT (``Model.save``, 0.03-0.06
ms), a session's live claim on its own (``assignment._live_claim``: seed_demo and
tests; the request path reads it with the session, above) and locking all the
candidates at once (assignment's fallback after eight contended tries).

Each statement is a plain string whose column lists come from the models'
metadata (built once per process), so a new column is picked up without editing
SQL, and functions return model instances (``Model.from_db``, with the same value
converters the ORM applies), so callers work with ordinary objects.

Only the happy path lives here. Whatever goes wrong (an unknown image, a claim
that is missing or expired) is diagnosed by the plain ORM code in ``services``
and ``assignment``, which says precisely why.

The SQL runs on PostgreSQL and on SQLite (the embedded ``make run``); row locks
(``FOR UPDATE``) are PostgreSQL's only. SQLite has one writer at a time: with
``"transaction_mode": "IMMEDIATE"`` (the test settings) each transaction takes
the write lock at BEGIN, so what is read under the "lock" stays true until COMMIT.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from django.db import connection
from django.db.models import Model

from annotation.models import Claim, Rater, Rating, Session, Stimulus, StimulusTally, Study


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


class _Columns:
    """The concrete columns of a model under a table alias, and rows back into instances."""

    def __init__(self, model: type[Model], alias: str, only: Iterable[str] | None = None):
        wanted = set(only) if only is not None else None
        self.model, self.alias = model, alias
        self.fields = [
            f
            for f in model._meta.concrete_fields
            if wanted is None or f.attname in wanted or f.name in wanted
        ]
        self.attnames = [f.attname for f in self.fields]
        self._sql: str | None = None
        self._converters: list | None = None

    def __len__(self) -> int:
        return len(self.fields)

    @property
    def sql(self) -> str:
        if self._sql is None:
            self._sql = ", ".join(f"{self.alias}.{_q(f.column)}" for f in self.fields)
        return self._sql

    def _converters_for_row(self) -> list:
        # What SQLCompiler.get_converters does: backend converters (e.g. SQLite's
        # text to datetime) and then the field's own (from_db_value, e.g. JSON).
        if self._converters is None:
            converters = []
            for i, f in enumerate(self.fields):
                col = f.get_col(self.alias)
                found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
                if found:
                    converters.append((i, col, found))
            self._converters = converters
        return self._converters

    def build(self, row: Sequence, start: int = 0) -> Model:
        values = list(row[start : start + len(self.fields)])
        for i, col, converters in self._converters_for_row():
            value = values[i]
            for convert in converters:
                value = convert(value, col, connection)
            values[i] = value
        return self.model.from_db(connection.alias, self.attnames, values)


def _table(model: type[Model]) -> str:
    return _q(model._meta.db_table)


def _for_update(of: str, *, skip_locked: bool = False) -> str:
    if connection.vendor != "postgresql":
        return ""
    return f" FOR UPDATE OF {of}" + (" SKIP LOCKED" if skip_locked else "")


def _fetchone(sql: str, params: Sequence) -> tuple | None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _fetchall(sql: str, params: Sequence) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _at(now: datetime):
    return connection.ops.adapt_datetimefield_value(now)


_RATER = _Columns(Rater, "r")
_STUDY = _Columns(Study, "st")
_SESSION = _Columns(Session, "se")
_CLAIM = _Columns(Claim, "c")
_STIMULUS = _Columns(Stimulus, "s")
# What showing a claimed stimulus needs (the rater page's stimulus payload); the
# ORM fallback in assignment locks the same fields.
STIMULUS_SHOWN_FIELDS = ("id", "study", "image", "width", "height")
_STIMULUS_SHOWN = _Columns(Stimulus, "s", only=STIMULUS_SHOWN_FIELDS)
_SESSION_STATE = _Columns(Session, "se", only=("stage", "finished_at"))
_RATER_FLAGS = _Columns(Rater, "r", only=("flags",))
_UNFINISHED = (Session.Stage.DONE.value, Session.Stage.STOPPED.value)


# --- Reading (the rater endpoints) -----------------------------------------------


def rater_by_token(slug: str, token: str) -> Rater | None:
    """The rater of the study ``slug`` behind ``token``, with ``rater.study`` loaded."""
    row = _fetchone(
        f"SELECT {_RATER.sql}, {_STUDY.sql} FROM {_table(Rater)} r"
        f" JOIN {_table(Study)} st ON st.id = r.study_id"
        " WHERE st.slug = %s AND r.token = %s",
        [slug, token],
    )
    if row is None:
        return None
    rater = _RATER.build(row)
    rater.study = _STUDY.build(row, len(_RATER))
    return rater


# The session's oldest unexpired claim and its stimulus, joined to a session row
# ``se`` (a correlated subquery in ON: portable, and one index probe per session).
def _live_claim_join() -> str:
    return (
        f" LEFT JOIN {_table(Claim)} c ON c.id = (SELECT c2.id FROM {_table(Claim)} c2"
        "  WHERE c2.session_id = se.id AND c2.expires_at > %s"
        "  ORDER BY c2.created_at, c2.id LIMIT 1)"
        f" LEFT JOIN {_table(Stimulus)} s ON s.id = c.stimulus_id"
    )


def _claim_from(row: Sequence, start: int, session: Session) -> Claim | None:
    if row[start] is None:  # c.id: no live claim
        return None
    claim = _CLAIM.build(row, start)
    claim.stimulus = _STIMULUS.build(row, start + len(_CLAIM))
    claim.session = session
    return claim


def current_session(rater: Rater, now: datetime) -> tuple[Session | None, int, Claim | None]:
    """The rater's unfinished session (the newest), its rating count and its live claim."""
    row = _fetchone(
        f"SELECT {_SESSION.sql},"
        f" (SELECT COUNT(*) FROM {_table(Rating)} x WHERE x.session_id = se.id),"
        f" {_CLAIM.sql}, {_STIMULUS.sql}"
        f" FROM {_table(Session)} se{_live_claim_join()}"
        " WHERE se.rater_id = %s AND se.finished_at IS NULL AND se.stage NOT IN (%s, %s)"
        " ORDER BY se.started_at DESC LIMIT 1",
        [_at(now), rater.pk, *_UNFINISHED],
    )
    if row is None:
        return None, 0, None
    session = _SESSION.build(row)
    session.rater = rater
    n = len(_SESSION)
    return session, row[n], _claim_from(row, n + 1, session)


def session_states(
    session: Session, now: datetime
) -> tuple[str, datetime | None, str, str, int, Claim | None]:
    """(stage, finished_at, rater status, study status, ratings in the session, live
    claim), fresh, in one statement."""
    row = _fetchone(
        f"SELECT {_SESSION_STATE.sql}, r.status, st.status,"
        f" (SELECT COUNT(*) FROM {_table(Rating)} x WHERE x.session_id = se.id),"
        f" {_CLAIM.sql}, {_STIMULUS.sql}"
        f" FROM {_table(Session)} se{_live_claim_join()}"
        f" JOIN {_table(Rater)} r ON r.id = se.rater_id"
        f" JOIN {_table(Study)} st ON st.id = r.study_id WHERE se.id = %s",
        [_at(now), session.pk],
    )
    state = _SESSION_STATE.build(row)  # converts finished_at as the ORM would (SQLite: text)
    n = len(_SESSION_STATE)
    return (
        state.stage,
        state.finished_at,
        row[n],
        row[n + 1],
        row[n + 2],
        _claim_from(row, n + 3, session),
    )


# --- Claiming (assignment.claim_next) -----------------------------------------

# The candidates of a claim: test stimuli of the study that the rater has neither
# rated nor holds a live claim on, with fill = ratings (repetition 1) + live claims
# (repetition 1) below K, closest to done first, ties at random. A pilot's claim
# (a researcher's preview, annotation.pilot) reserves nothing: it is not counted
# (_REAL_CLAIM; the tally leaves pilot ratings out too).
#
# By hand because it runs on every claim and dominated the rating path, and because
# the ORM cannot write a CTE. Ratings come from StimulusTally (kept by triggers), so
# ranking a study's stimuli reads one narrow row each instead of counting each one's
# ratings; the CTE is MATERIALIZED on PostgreSQL so the planner cannot inline it and
# compute the fill twice. Live claims, a small set, are counted only for the stimuli
# found in it (a hashed IN), and the rater's own ratings and claims are read once
# into a hashed NOT IN. This shape keeps its plan with or without fresh statistics
# and as a prepared (generic) plan. The cost grows with the study's test stimuli
# still short of K. Plain SQL that SQLite runs too.
#
# Pilots' claims are left out by a NOT IN over the pilot raters' ids: an uncorrelated
# subquery, read once per statement (hashed) from a partial index that holds pilot
# raters only (migration 0005), so it costs next to nothing however many raters a
# study has, and keeps the plan without statistics. (Measured against the counts
# without it: no difference above the noise at 400 and 20,000 raters, 2,000 stimuli,
# 400 live claims, with or without ANALYZE. A correlated NOT EXISTS, or a rater
# lookup per counted claim, changed the plan: the statement ran 2-6 times slower.)
_REAL_CLAIM = (
    "c.rater_id NOT IN (SELECT pr.id FROM {rater} pr WHERE pr.source = '"
    + Rater.Source.PILOT.value
    + "')"
)
_CANDIDATES_SQL = """
WITH counted AS {materialized} (
    SELECT s.id,
        COALESCE(t.ratings, 0)
        + CASE WHEN s.id IN (SELECT stimulus_id FROM {claim} WHERE expires_at > %s)
          THEN (SELECT COUNT(*) FROM {claim} c
                WHERE c.stimulus_id = s.id AND c.repetition = 1 AND c.expires_at > %s
                    AND {real_claim})
          ELSE 0 END AS fill
    FROM {stimulus} s LEFT JOIN {tally} t ON t.stimulus_id = s.id
    WHERE s.study_id = %s AND s.role = %s AND COALESCE(t.ratings, 0) < %s
        AND s.id NOT IN (SELECT stimulus_id FROM {rating} WHERE rater_id = %s)
        AND s.id NOT IN (SELECT stimulus_id FROM {claim} WHERE rater_id = %s AND expires_at > %s)
)
SELECT id FROM counted WHERE fill < %s ORDER BY fill DESC, RANDOM() LIMIT %s
"""


def candidate_ids(study: Study, rater: Rater, now: datetime, limit: int) -> list[int]:
    """Up to ``limit`` test stimuli the rater may claim, closest to done first."""
    sql = _CANDIDATES_SQL.format(
        materialized="MATERIALIZED" if connection.vendor == "postgresql" else "",
        rating=_table(Rating),
        stimulus=_table(Stimulus),
        claim=_table(Claim),
        tally=_table(StimulusTally),
        real_claim=_REAL_CLAIM.format(rater=_table(Rater)),
    )
    at = _at(now)
    k = study.ratings_per_stimulus
    params = [at, at, study.pk, Stimulus.Role.TEST.value, k, rater.pk, rater.pk, at, k, limit]
    return [row[0] for row in _fetchall(sql, params)]


# pg_advisory_xact_lock's first key: the claims of one rating session (its second
# key is the session's id folded into int4; two sessions folding alike would only
# wait for each other, never claim wrongly).
_CLAIMING_SESSION = 0x53455353


def lock_session(session_id: int) -> None:
    """Take the session's claiming lock, at the start of each transaction that makes
    a claim for it, held until that transaction ends (PostgreSQL; SQLite's one
    writer at a time already serialises them).

    Two requests of one session at once (a replayed submit, two tabs) both read "no
    live claim" before either claims; the second now waits here for the first's
    commit and then (``live_claim_id``, a statement of its own, so its snapshot is
    taken after the wait) finds that claim instead of making a second one.

    An advisory lock rather than the session's row lock: a submit locks its
    stimulus and may then update the session row (its viewing conditions), while a
    claim, holding this lock, may wait for that stimulus; with the row lock the two
    would wait for each other."""
    if connection.vendor != "postgresql":
        return
    _fetchone(
        "SELECT pg_advisory_xact_lock(%s, %s)",
        [_CLAIMING_SESSION, session_id % 2_147_483_647],
    )


def live_claim_id(session_id: int, now: datetime) -> int | None:
    """The id of the session's oldest live claim, or None: read after
    ``lock_session`` in the same transaction."""
    row = _fetchone(
        f"SELECT id FROM {_table(Claim)} WHERE session_id = %s AND expires_at > %s"
        " ORDER BY created_at, id LIMIT 1",
        [session_id, _at(now)],
    )
    return None if row is None else row[0]


def lock_stimulus(pk: int, *, skip_locked: bool) -> Stimulus | None:
    """Lock one candidate stimulus (what showing it needs); None when it does not
    exist or (``skip_locked``) another transaction holds it."""
    row = _fetchone(
        f"SELECT {_STIMULUS_SHOWN.sql} FROM {_table(Stimulus)} s WHERE s.id = %s"
        f"{_for_update('s', skip_locked=skip_locked)}",
        [pk],
    )
    return None if row is None else _STIMULUS_SHOWN.build(row)


def stimulus_fill(
    stimulus_id: int,
    now: datetime,
    *,
    exclude_rater_id: int | None = None,
    for_claim: bool = False,
) -> int:
    """Ratings (repetition 1) from the tally plus live claims (repetition 1, other
    than ``exclude_rater_id``'s, never a pilot's) on a stimulus, in one statement;
    with ``for_claim`` it also relaxes the claim's commit
    (``_commit_without_waiting_for_disk``)."""
    sql = (
        f"SELECT COALESCE((SELECT ratings FROM {_table(StimulusTally)}"
        "                  WHERE stimulus_id = %s), 0)"
        f"     + (SELECT COUNT(*) FROM {_table(Claim)} c"
        "         WHERE c.stimulus_id = %s AND c.repetition = 1 AND c.expires_at > %s"
        f"         AND {_REAL_CLAIM.format(rater=_table(Rater))}"
        + (" AND c.rater_id <> %s)" if exclude_rater_id is not None else ")")
        + (_commit_without_waiting_for_disk() if for_claim else "")
    )
    params: list = [stimulus_id, stimulus_id, _at(now)]
    if exclude_rater_id is not None:
        params.append(exclude_rater_id)
    return _fetchone(sql, params)[0]


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


def upsert_claim(claim: Claim) -> Claim:
    """INSERT the claim, or renew the rater's old claim on the stimulus (same
    rater, stimulus and repetition): session and expiry updated, created_at kept."""
    row = _fetchone(
        f"INSERT INTO {_table(Claim)} (stimulus_id, rater_id, session_id, repetition,"
        " created_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (rater_id, stimulus_id, repetition)"
        " DO UPDATE SET session_id = excluded.session_id, expires_at = excluded.expires_at"
        " RETURNING id",
        [
            claim.stimulus_id,
            claim.rater_id,
            claim.session_id,
            claim.repetition,
            _at(claim.created_at),
            _at(claim.expires_at),
        ],
    )
    claim.pk = row[0]
    claim._state.adding = False
    return claim


# --- Submitting (services.rating_submit) ----------------------------------------


def lock_claim_for_submit(rater: Rater, stimulus_id: int) -> tuple[Stimulus, Claim, str] | None:
    """For a submission: the stimulus (of the rater's study), the rater's claim on it
    (the highest repetition, with its session) and the rater's status, all three rows
    locked, in one statement. None when any of them is missing (the caller finds out
    which, to say so)."""
    row = _fetchone(
        f"SELECT {_STIMULUS.sql}, {_CLAIM.sql}, {_SESSION.sql}, r.status"
        f" FROM {_table(Stimulus)} s"
        f" JOIN {_table(Claim)} c ON c.stimulus_id = s.id"
        f" JOIN {_table(Rater)} r ON r.id = c.rater_id"
        f" JOIN {_table(Session)} se ON se.id = c.session_id"
        " WHERE s.id = %s AND s.study_id = %s AND c.rater_id = %s"
        f" ORDER BY c.repetition DESC LIMIT 1{_for_update('s, r, c')}",
        [stimulus_id, rater.study_id, rater.pk],
    )
    if row is None:
        return None
    stimulus = _STIMULUS.build(row)
    claim = _CLAIM.build(row, len(_STIMULUS))
    session = _SESSION.build(row, len(_STIMULUS) + len(_CLAIM))
    session.rater = rater
    claim.stimulus, claim.session = stimulus, session
    return stimulus, claim, row[-1]


def count_test_ratings(stimulus_id: int) -> int:
    """Ratings (repetition 1, not pilot) of a stimulus, from the trigger-kept tally; a statement
    of its own, after the stimulus lock (every rating is written under that lock)."""
    row = _fetchone(
        f"SELECT ratings FROM {_table(StimulusTally)} WHERE stimulus_id = %s", [stimulus_id]
    )
    return 0 if row is None else row[0]


def delete_claim(claim_id: int) -> None:
    """The submit's last statement before COMMIT (tests/test_faults.py drops the
    connection here)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_table(Claim)} WHERE id = %s", [claim_id])


# --- After a rating (quality.after_rating) ---------------------------------------


def straight_lining(rater_id: int) -> tuple[dict, int, float | None] | None:
    """(the rater's flags, how many overall scores of test items at repetition 1, their
    sample variance or None below two), in one statement; None for no such rater.

    The database counts the scores and takes their variance next to the rater's
    flags, instead of sending every score back and reading the rater again. The
    variance is the two-pass sum of squares over n - 1, as statistics.variance
    computes it, not VAR_SAMP: Django's VAR_SAMP on SQLite raises below two values.
    """
    where = "rater_id = %s AND repetition = 1 AND NOT is_gold"
    row = _fetchone(
        f"SELECT {_RATER_FLAGS.sql}, s.n, s.v FROM {_table(Rater)} r, ("
        "    SELECT COUNT(*) AS n,"
        "        SUM((x.overall - a.m) * (x.overall - a.m)) / NULLIF(COUNT(*) - 1, 0) AS v"
        f"   FROM {_table(Rating)} x,"
        f"       (SELECT AVG(overall) AS m FROM {_table(Rating)} WHERE {where}) a"
        f"   WHERE {where}"
        ") s WHERE r.id = %s",
        [rater_id, rater_id, rater_id],
    )
    if row is None:
        return None
    n = len(_RATER_FLAGS)
    return _RATER_FLAGS.build(row).flags or {}, row[n], row[n + 1]
