"""The rating path's SQL, written by hand: what GET next and POST submit run.

Every rating cycle runs these statements, and with the ORM the cycle spent
several times longer in Python building them (column lists, joins, compilers)
than PostgreSQL spent running them. Here each statement is a plain string whose
column lists come from the models' metadata (built once per process), so a new
column is picked up without editing SQL, and each function returns model
instances (``Model.from_db``, with the same value converters the ORM applies),
so callers work with ordinary objects.

Only the happy path lives here. Whatever goes wrong (an unknown image, a claim
that is missing or expired) is diagnosed by the plain ORM code in
``services`` and ``assignment``, which says precisely why.

The SQL runs on PostgreSQL and on SQLite (the embedded ``make run``); row locks
(``FOR UPDATE``) are PostgreSQL's only: SQLite serialises writers itself.
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


def _at(now: datetime):
    return connection.ops.adapt_datetimefield_value(now)


_RATER = _Columns(Rater, "r")
_STUDY = _Columns(Study, "st")
_SESSION = _Columns(Session, "se")
_CLAIM = _Columns(Claim, "c")
_STIMULUS = _Columns(Stimulus, "s")
# What showing a claimed stimulus needs (rater_api.stimulus_payload), and its role
# for the submit checks.
_STIMULUS_SHOWN = _Columns(Stimulus, "s", only=("id", "study_id", "image", "width", "height"))
_SESSION_STATE = _Columns(Session, "se", only=("stage", "finished_at"))
_UNFINISHED = (Session.Stage.DONE.value, Session.Stage.STOPPED.value)


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


def live_claim(session: Session, now: datetime) -> Claim | None:
    """The session's oldest unexpired claim, with its stimulus."""
    row = _fetchone(
        f"SELECT {_CLAIM.sql}, {_STIMULUS.sql} FROM {_table(Session)} se{_live_claim_join()}"
        " WHERE se.id = %s",
        [_at(now), session.pk],
    )
    return None if row is None else _claim_from(row, 0, session)


def lock_stimulus(pk: int, *, skip_locked: bool) -> Stimulus | None:
    """Lock one stimulus; None when it does not exist or (``skip_locked``) another
    transaction holds it."""
    found = lock_stimuli([pk], skip_locked=skip_locked)
    return found[0] if found else None


def lock_stimuli(ids: Sequence[int], *, skip_locked: bool) -> list[Stimulus]:
    """Lock candidate stimuli in primary-key order (two raters waiting cannot deadlock);
    with ``skip_locked``, rows other transactions hold are left out."""
    if not ids:
        return []
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_STIMULUS_SHOWN.sql} FROM {_table(Stimulus)} s WHERE s.id IN ({marks})"
            f" ORDER BY s.id{_for_update('s', skip_locked=skip_locked)}",
            list(ids),
        )
        return [_STIMULUS_SHOWN.build(row) for row in cursor.fetchall()]


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
    """Ratings (repetition 1) of a stimulus, from the trigger-kept tally; a statement
    of its own, after the stimulus lock (every rating is written under that lock)."""
    row = _fetchone(
        f"SELECT ratings FROM {_table(StimulusTally)} WHERE stimulus_id = %s", [stimulus_id]
    )
    return 0 if row is None else row[0]


_RATING_FIELDS = [f for f in Rating._meta.concrete_fields if not f.primary_key]


def insert_rating(rating: Rating) -> Rating:
    """INSERT one rating (values prepared as the ORM prepares them); sets its pk."""
    columns = ", ".join(_q(f.column) for f in _RATING_FIELDS)
    marks = ", ".join(["%s"] * len(_RATING_FIELDS))
    values = [f.get_db_prep_save(getattr(rating, f.attname), connection) for f in _RATING_FIELDS]
    row = _fetchone(
        f"INSERT INTO {_table(Rating)} ({columns}) VALUES ({marks}) RETURNING id", values
    )
    rating.pk = row[0]
    rating._state.adding = False
    rating._state.db = connection.alias
    return rating


def delete_claim(claim_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_table(Claim)} WHERE id = %s", [claim_id])
