"""StimulusTally: the per-stimulus rating count that assignment ranks by, kept by
database triggers, so no path that writes or removes ratings can make it drift."""

from __future__ import annotations

import uuid

import pytest
from django.db.models import Count, Q

from annotation import assignment, services
from annotation.models import Rating, Stimulus, StimulusTally
from tests.annotation.helpers import rater_past_places
from tests.factories import StimulusFactory, StudyFactory
from tests.factories import rater_at_rating as enter

pytestmark = pytest.mark.sqlite_too
GOOD = {"overall": 50, "technical": 50, "rationality": 50}


def rate_next(rater, session):
    claim = assignment.claim_next(session=session)
    assert claim is not None
    services.rating_submit(
        rater=rater,
        stimulus_id=claim.stimulus_id,
        scores=GOOD,
        client_id=uuid.uuid4(),
        viewing_seconds=3.0,
    )
    return claim.stimulus_id


def tallies(study) -> dict[int, int]:
    return dict(
        StimulusTally.objects.filter(stimulus__study=study, ratings__gt=0).values_list(
            "stimulus_id", "ratings"
        )
    )


def counted(study) -> dict[int, int]:
    rows = (
        Stimulus.objects.filter(study=study)
        .annotate(n=Count("ratings", filter=Q(ratings__repetition=1)))
        .filter(n__gt=0)
        .values_list("id", "n")
    )
    return dict(rows)


@pytest.mark.django_db
def test_tally_follows_inserts_deletes_and_updates_from_any_path():
    study = StudyFactory(protocol="perspectives", ratings_per_stimulus=3)
    StimulusFactory.create_batch(3, study=study)
    raters = [enter(study, f"t-{i}") for i in range(3)]
    for rater, session in raters:
        for _ in range(2):
            rate_next(rater, session)
    assert sum(tallies(study).values()) == 6
    assert tallies(study) == counted(study)

    # The admin or a script deleting a rating: the tally goes down with it.
    victim = Rating.objects.filter(stimulus__study=study).first()
    victim.delete()
    assert tallies(study) == counted(study)
    assert sum(tallies(study).values()) == 5

    # A repetition-2 rating does not count; turning one into it (an update) uncounts it.
    moved = Rating.objects.filter(stimulus__study=study).first()
    Rating.objects.filter(pk=moved.pk).update(repetition=2)
    assert sum(tallies(study).values()) == 4
    assert tallies(study) == counted(study)

    # Bulk inserts (an import) are counted too.
    rater, session = raters[0]
    free = Stimulus.objects.filter(study=study).exclude(ratings__rater=rater).first()
    Rating.objects.bulk_create(
        [
            Rating(
                stimulus=free,
                rater=rater,
                session=session,
                protocol=study.protocol,
                scale=study.scale,
                viewing_seconds=1.0,
                overall=40,
                technical=40,
                rationality=40,
            )
        ]
    )
    assert tallies(study) == counted(study)


@pytest.mark.django_db
def test_a_deleted_rating_reopens_its_slot():
    study = StudyFactory(protocol="perspectives", ratings_per_stimulus=1)
    only = StimulusFactory(study=study)
    first, first_session = enter(study, "first")
    assert rate_next(first, first_session) == only.pk
    second, second_session = rater_past_places(study, "second")  # admission would refuse
    assert assignment.claim_next(session=second_session) is None  # full
    Rating.objects.filter(stimulus=only).delete()  # e.g. removed by the researcher
    claim = assignment.claim_next(session=second_session)
    assert claim is not None and claim.stimulus_id == only.pk


@pytest.mark.django_db
def test_recount_repairs_a_tally_loaded_past_the_triggers():
    """A data-only restore or loaddata can leave the tally wrong (counted twice):
    ``manage.py recount_tallies`` rebuilds it from the ratings."""
    import io

    from django.core.management import call_command

    study = StudyFactory(protocol="perspectives", ratings_per_stimulus=3)
    StimulusFactory.create_batch(2, study=study)
    for i in range(2):
        rater, session = enter(study, f"r-{i}")
        rate_next(rater, session)
    right = counted(study)
    StimulusTally.objects.update(ratings=7)  # what a restore on top of the triggers leaves
    out = io.StringIO()
    call_command("recount_tallies", stdout=out)
    assert tallies(study) == right
    assert "corrected" in out.getvalue() and f"{len(right)} corrected" in out.getvalue()
