"""Invariants enforced by the database itself, bypassing every Python check: by
PostgreSQL, and by SQLite for `make run` (the same constraints, from the migrations)."""

from __future__ import annotations

import re
import uuid

import pytest
from django.db import IntegrityError, connection, transaction

from annotation.models import Rating, Stimulus
from tests.factories import RaterFactory, SessionFactory, StimulusFactory, StudyFactory

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_too]


def _rating(stimulus, rater, session, **overrides):
    values = dict(
        stimulus=stimulus,
        rater=rater,
        session=session,
        protocol="perspectives",
        scale="continuous",
        viewing_seconds=4.0,
        overall=50.0,
        technical=60.0,
        rationality=70.0,
    )
    values.update(overrides)
    return Rating.objects.create(**values)


@pytest.fixture
def setup():
    study = StudyFactory(protocol="perspectives", scale="continuous")
    stimulus = StimulusFactory(study=study)
    rater = RaterFactory(study=study)
    session = SessionFactory(rater=rater)
    return stimulus, rater, session


@pytest.mark.postgresql_only(reason="the suite's default database is PostgreSQL")
def test_database_is_postgresql():
    assert connection.vendor == "postgresql"


def test_valid_rating_is_stored(setup):
    rating = _rating(*setup)
    assert Rating.objects.get(pk=rating.pk).scores() == {
        "overall": 50.0,
        "technical": 60.0,
        "rationality": 70.0,
    }


def test_duplicate_rating_raises_integrity_error(setup):
    _rating(*setup)
    # PostgreSQL names the constraint, SQLite its columns.
    named = (
        "rating_once_per_repetition"
        if connection.vendor == "postgresql"
        else "UNIQUE constraint failed: "
        + ", ".join(f"annotation_rating.{c}" for c in ("rater_id", "stimulus_id", "repetition"))
    )
    with pytest.raises(IntegrityError, match=re.escape(named)), transaction.atomic():
        _rating(*setup)
    # A second repetition is a different row, allowed once.
    _rating(*setup, repetition=2)
    assert Rating.objects.count() == 2


def test_duplicate_client_id_raises(setup):
    stimulus, rater, session = setup
    cid = uuid.uuid4()
    _rating(stimulus, rater, session, client_id=cid)
    other = StimulusFactory(study=stimulus.study)
    with pytest.raises(IntegrityError), transaction.atomic():
        _rating(other, rater, session, client_id=cid)


@pytest.mark.parametrize(
    "overrides",
    [
        {"overall": 101.0},
        {"overall": -1.0},
        {"overall": float("nan")},
        {"overall": float("inf")},
        {"technical": None},  # a dimension of the preset missing
        {"luminance": 50.0},  # a dimension outside the preset
        {"scale": "acr5", "overall": 2.5, "technical": 3.0, "rationality": 3.0},
        {"scale": "acr5", "overall": 6.0, "technical": 3.0, "rationality": 3.0},
        {"repetition": 3},
        {"viewing_seconds": -0.5},
    ],
)
def test_scores_outside_the_scale_or_preset_are_refused(setup, overrides):
    with pytest.raises(IntegrityError), transaction.atomic():
        _rating(*setup, **overrides)
    assert Rating.objects.count() == 0


def test_acr5_integer_scores_accepted(setup):
    rating = _rating(*setup, scale="acr5", overall=1.0, technical=5.0, rationality=3.0)
    assert rating.pk


def test_unique_sha_per_study():
    study = StudyFactory()
    StimulusFactory(study=study, sha256="a" * 64)
    with pytest.raises(IntegrityError), transaction.atomic():
        StimulusFactory(study=study, sha256="a" * 64)
    # The same image may be used by another study.
    StimulusFactory(study=StudyFactory(), sha256="a" * 64)


def test_gold_needs_expected_range():
    with pytest.raises(IntegrityError), transaction.atomic():
        StimulusFactory(role=Stimulus.Role.GOLD)
    with pytest.raises(IntegrityError), transaction.atomic():
        StimulusFactory(role=Stimulus.Role.TRAINING, expected_low=80, expected_high=20)
    assert StimulusFactory(role=Stimulus.Role.GOLD, expected_low=60, expected_high=100).pk


def test_study_settings_checked():
    with pytest.raises(IntegrityError), transaction.atomic():
        StudyFactory(ratings_per_stimulus=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        StudyFactory(gold_rate=0.9)
    with pytest.raises(IntegrityError), transaction.atomic():
        StudyFactory(protocol="everything")


def test_rater_external_id_unique_per_source():
    study = StudyFactory()
    RaterFactory(study=study, source="prolific", external_id="P1")
    with pytest.raises(IntegrityError), transaction.atomic():
        RaterFactory(study=study, source="prolific", external_id="P1")
    RaterFactory(study=study, source="mturk", external_id="P1")
    # Anonymous raters have no external id: many of them are fine.
    RaterFactory(study=study)
    RaterFactory(study=study)
