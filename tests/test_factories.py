"""The factories themselves: one per model, and each row passes the database's checks."""

from __future__ import annotations

import factory
import pytest
from django.apps import apps

from annotation.models import Rater, Rating, StimulusTally
from tests import factories

pytestmark = pytest.mark.django_db

# Written by database triggers only (annotation migration 0002), never by Django.
WITHOUT_FACTORY = {StimulusTally}


def _factories() -> dict[type, type[factory.django.DjangoModelFactory]]:
    found = {}
    for value in vars(factories).values():
        if (
            isinstance(value, type)
            and issubclass(value, factory.django.DjangoModelFactory)
            and not value._meta.abstract
        ):
            found[value._meta.model] = value
    return found


def test_every_model_has_a_factory():
    models = {
        m for label in ("annotation", "scoring") for m in apps.get_app_config(label).get_models()
    }
    assert models - WITHOUT_FACTORY - set(_factories()) == set()


@pytest.mark.parametrize("name", sorted(f.__name__ for f in _factories().values()))
def test_each_factory_saves_a_valid_row(name):
    made = getattr(factories, name)()
    assert made.pk is not None
    made.full_clean(exclude=["image", "password"])


def test_rating_scores_follow_the_study_preset_and_scale():
    study = factories.StudyFactory(protocol="overall", scale="acr5")
    rating = factories.RatingFactory(stimulus=factories.StimulusFactory(study=study), overall=5)
    assert rating.scores() == {"overall": 5.0}
    assert factories.RatingFactory(stimulus__study=study).scores() == {"overall": 3.0}
    agin = factories.RatingFactory(score=70)
    assert len(agin.scores()) == 3 and set(agin.scores().values()) == {70.0}  # perspectives


def test_rated_study_has_careless_raters_excluded_and_a_truth():
    study = factories.rated_study(n_raters=6, n_scenes=2, items_per_rater=6)
    assert study.stimuli.filter(role="test").count() == 12
    careless = Rater.objects.filter(study=study, platform__careless=True)
    assert careless.count() == 1 and {r.status for r in careless} == {"excluded"}
    assert Rating.objects.filter(stimulus__study=study, is_gold=True).count() == 12
    assert Rating.objects.filter(stimulus__study=study).count() == 6 * (6 + 2)
    assert all("overall" in s.metadata["truth"] for s in study.stimuli.all())
