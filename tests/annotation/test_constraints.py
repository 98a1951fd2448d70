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


# --- Study settings within their ranges; crowd-platform parameters bounded ------------


@pytest.mark.parametrize(
    "name", ["ratings_per_stimulus", "session_size", "gold_rate", "gold_fail_limit",
             "min_view_seconds", "break_every", "claim_ttl_seconds", "min_session_items",
             "max_items_per_rater"],
)  # fmt: skip
def test_study_settings_out_of_range_are_refused_by_the_database(name):
    from annotation.models import STUDY_BOUNDS, Study

    study = StudyFactory()
    low, high = STUDY_BOUNDS[name]
    step = 1 if isinstance(high, int) else 0.01
    for bad in (low - step, high + step):
        if bad < 0 and name not in ("gold_rate", "min_view_seconds"):
            continue  # a positive integer column refuses it on its own
        with pytest.raises(IntegrityError), transaction.atomic():
            Study.objects.filter(pk=study.pk).update(**{name: bad})
    for good in (low, high):
        Study.objects.filter(pk=study.pk).update(**{name: good})


def test_every_bound_is_one_number_in_model_database_and_api():
    """The serializer, the model's validators (form and admin) and the checks read
    one table: their ranges agree for every setting."""
    from django.core.validators import MaxValueValidator, MinValueValidator

    from annotation.api import StudySerializer
    from annotation.models import STUDY_BOUNDS, Study

    fields = StudySerializer().fields
    names = {c.name for c in Study._meta.constraints}
    for name, (low, high) in STUDY_BOUNDS.items():
        assert (fields[name].min_value, fields[name].max_value) == (low, high), name
        validators = Study._meta.get_field(name).validators
        assert any(isinstance(v, MinValueValidator) and v.limit_value == low for v in validators)
        assert any(isinstance(v, MaxValueValidator) and v.limit_value == high for v in validators)
        assert f"study_{name}_range" in names


def test_a_raters_platform_parameters_are_bounded_in_size():
    from annotation.models import MAX_PLATFORM_JSON_CHARS, Rater

    rater = RaterFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Rater.objects.filter(pk=rater.pk).update(platform={"k": "v" * MAX_PLATFORM_JSON_CHARS})
    Rater.objects.filter(pk=rater.pk).update(platform={"study_id": "S" * 200})


def test_platform_parameters_merged_over_many_entries_keep_at_most_ten_keys():
    """Each entry by the same link may add keys; they never grow past the bound."""
    from annotation import services
    from annotation.models import MAX_PLATFORM_KEYS

    study = StudyFactory()
    for i in range(30):
        rater, _ = services.rater_enter(
            study=study, source="prolific", external_id="P-1", platform={f"k{i}": "v" * 200}
        )
    rater.refresh_from_db()
    assert len(rater.platform) == MAX_PLATFORM_KEYS and rater.platform["k29"] == "v" * 200


def test_texts_over_their_length_are_refused_by_the_database():
    from annotation.models import MAX_PROMPT_CHARS, MAX_STUDY_TEXT_CHARS, Stimulus, Study

    study = StudyFactory()
    stimulus = StimulusFactory(study=study)
    for model, pk, name, chars in [
        (Study, study.pk, "instructions", MAX_STUDY_TEXT_CHARS),
        (Study, study.pk, "consent_text", MAX_STUDY_TEXT_CHARS),
        (Stimulus, stimulus.pk, "prompt", MAX_PROMPT_CHARS),
    ]:
        with pytest.raises(IntegrityError), transaction.atomic():
            model.objects.filter(pk=pk).update(**{name: "é" * (chars + 1)})
        model.objects.filter(pk=pk).update(**{name: "é" * chars})  # characters, not bytes


@pytest.mark.django_db(transaction=True)
def test_the_migration_brings_old_rows_within_the_bounds():
    """A database in use may hold values the new checks refuse (set through the admin
    before them): the migration clamps them first instead of failing."""
    from django.db.migrations.executor import MigrationExecutor

    target = ("annotation", "0010_study_bounds")
    executor = MigrationExecutor(connection)
    before = executor.loader.graph.node_map[target].parents
    executor.migrate([p.key for p in before])
    old = MigrationExecutor(connection).loader.project_state([p.key for p in before]).apps
    User = old.get_model("auth", "User")
    Study = old.get_model("annotation", "Study")
    Rater = old.get_model("annotation", "Rater")
    owner = User.objects.create(username="old-owner")
    study = Study.objects.create(
        slug="old", title="Old", owner=owner, session_size=50_000, instructions="y" * 30_000
    )
    rater = Rater.objects.create(
        study=study, token="t" * 32, platform={f"k{i}": "v" * 300 for i in range(40)}
    )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    from annotation.models import Rater as NewRater
    from annotation.models import Study as NewStudy

    study = NewStudy.objects.get(pk=study.pk)
    assert study.session_size == 10_000 and len(study.instructions) == 20_000
    assert NewRater.objects.get(pk=rater.pk).platform == {}  # every value was too long
