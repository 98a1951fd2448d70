"""The study rules (annotation/studies.py), the same for the API, pages and admin."""

from __future__ import annotations

import pytest

from annotation.models import Study
from annotation.studies import (
    StudyRuleError,
    locked_fields,
    study_delete,
    study_set_status,
    study_update,
)
from tests.factories import StimulusFactory, StudyFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_open_needs_test_stimuli_and_changes_nothing_when_refused():
    study = StudyFactory(status="draft")
    StimulusFactory(study=study, role="training")
    with pytest.raises(StudyRuleError, match="import test stimuli") as refused:
        study_set_status(study=study, status="open")
    assert refused.value.field == "status" and refused.value.status == 409
    study.refresh_from_db()
    assert study.status == "draft"
    StimulusFactory(study=study)
    assert study_set_status(study=study, status="open").status == "open"


@pytest.mark.parametrize(
    ("start", "target", "allowed"),
    [
        ("draft", "paused", False),
        ("open", "draft", False),
        ("closed", "paused", False),
        ("open", "paused", True),
        ("paused", "open", True),
        ("paused", "closed", True),
        ("closed", "open", True),
    ],
)
def test_status_transitions(start, target, allowed):
    study = StudyFactory(status=start)
    StimulusFactory(study=study)
    if allowed:
        assert study_set_status(study=study, status=target).status == target
    else:
        with pytest.raises(StudyRuleError, match=f"cannot become {target}"):
            study_set_status(study=study, status=target)


def test_protocol_and_scale_lock_once_open_and_slug_never_changes():
    study = StudyFactory(status="draft", protocol="perspectives")
    assert locked_fields(study) == {}
    study_update(study=study, changes={"protocol": "agin", "title": "T"})
    assert (study.protocol, study.title) == ("agin", "T")
    StimulusFactory(study=study)
    study_set_status(study=study, status="open")
    assert set(locked_fields(study)) == {"protocol", "scale"}
    for field, value in (("protocol", "overall"), ("scale", "acr5"), ("slug", "other")):
        with pytest.raises(StudyRuleError) as refused:
            study_update(study=study, changes={field: value, "title": "changed"})
        assert refused.value.field == field
    study.refresh_from_db()
    assert (study.protocol, study.title, study.scale) == ("agin", "T", "continuous")
    # Sending the current value is no change, and is accepted.
    study_update(study=study, changes={"protocol": "agin", "title": "Same protocol"})
    assert study.title == "Same protocol"


def test_a_study_with_ratings_is_closed_not_deleted():
    from tests.factories import rater_at_rating

    study = StudyFactory(owner=UserFactory())
    StimulusFactory(study=study)
    empty = StudyFactory()
    study_delete(study=empty)
    rater, session = rater_at_rating(study)
    from annotation import assignment, services

    claim = assignment.claim_next(session=session)
    services.rating_submit(
        rater=rater,
        stimulus_id=claim.stimulus_id,
        scores={"overall": 50, "technical": 50, "rationality": 50},
        client_id="6f1c8a2e-4d5b-4c3a-9e1f-0a1b2c3d4e5f",
        viewing_seconds=4,
    )
    with pytest.raises(StudyRuleError, match="close it instead"):
        study_delete(study=study)


@pytest.mark.parametrize("bad", [[], ["prolific", "prolific"], ["fax"], "prolific", None])
def test_platforms_are_checked_by_the_service(bad):
    from annotation.studies import StudyRuleError, study_update

    study = StudyFactory()
    with pytest.raises(StudyRuleError) as refused:
        study_update(study=study, changes={"platforms": bad})
    assert refused.value.field == "platforms"
    study.refresh_from_db()
    assert study.platforms == ["prolific", "mturk", "anonymous"]


def test_a_draft_with_only_pilot_ratings_can_be_deleted():
    """Previews never count: a study only its researchers have rated is deleted with
    their pilot ratings (raters, sessions and claims go with it)."""
    from annotation.models import Rater, Rating, Session

    owner = UserFactory()
    study = StudyFactory(owner=owner, status="draft")
    StimulusFactory(study=study)
    pilot = Rater.objects.create(study=study, source=Rater.Source.PILOT, pilot_user=owner)
    session = Session.objects.create(rater=pilot, stage=Session.Stage.RATING)
    Rating.objects.create(
        stimulus=study.stimuli.get(),
        rater=pilot,
        session=session,
        protocol=study.protocol,
        scale=study.scale,
        is_pilot=True,
        viewing_seconds=3,
        overall=50,
        technical=50,
        rationality=50,
    )
    study_delete(study=study)
    assert not Study.objects.filter(pk=study.pk).exists()
    assert not Rating.objects.exists() and not Rater.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_of_one_slug_make_one_study_and_refuse_the_rest_plainly():
    """Eight requests create the same slug at once: one study; every other one gets
    the refusal a later request gets (400, on the slug), not an IntegrityError."""
    from rest_framework.test import APIClient

    from tests.annotation.helpers import all_at_once

    owner = UserFactory(is_staff=True)
    n = 8

    def create():
        client = APIClient()
        client.force_authenticate(owner)
        body = {"slug": "same", "title": "Same", "protocol": "overall"}
        return client.post("/api/v1/studies/", body, format="json")

    answers = all_at_once(n, create)
    assert sorted(a.status_code for a in answers) == [201] + [400] * (n - 1), [
        (a.status_code, a.content[:200]) for a in answers
    ]
    for refused in (a for a in answers if a.status_code == 400):
        assert "slug" in refused.json()["fields"], refused.json()
    assert Study.objects.filter(slug="same").count() == 1


def test_deleting_a_study_removes_its_files_but_not_those_a_clone_still_uses(
    django_capture_on_commit_callbacks,
):
    from django.core.files.base import ContentFile

    from scoring.models import ExportJob

    study = StudyFactory(status="draft")
    own, shared = StimulusFactory.create_batch(2, study=study)
    clone = StudyFactory(status="draft")
    StimulusFactory(study=clone, image=shared.image.name, sha256=shared.sha256)
    export = ExportJob(study=study, format="json")
    export.file.save("gone.json", ContentFile(b"{}"), save=True)
    names = {"own": own.image.name, "shared": shared.image.name, "export": export.file.name}
    storage = own.image.storage
    assert all(storage.exists(name) for name in names.values())
    with django_capture_on_commit_callbacks(execute=True):
        study_delete(study=study)
    assert not storage.exists(names["own"]) and not storage.exists(names["export"])
    assert storage.exists(names["shared"])  # the clone's stimulus still shows it
    assert not Study.objects.filter(pk=study.pk).exists()


def test_a_scale_change_rescales_the_expected_ranges():
    """A draft's gold ranges were checked on the old scale: left as they were, 1-2
    on a 0-100 slider would fail every honest answer."""
    study = StudyFactory(status="draft", scale="acr5")
    low = StimulusFactory(study=study, role="gold", expected_low=1, expected_high=2)
    high = StimulusFactory(study=study, role="training", expected_low=4, expected_high=5)
    plain = StimulusFactory(study=study)
    study_update(study=study, changes={"scale": "continuous"})
    ranges = {s.pk: (s.expected_low, s.expected_high) for s in study.stimuli.all()}
    assert ranges[low.pk] == (0, 25) and ranges[high.pk] == (75, 100)
    assert ranges[plain.pk] == (None, None)
    study_update(study=study, changes={"scale": "acr5"})
    assert study.stimuli.get(pk=low.pk).expected_high == 2
    # Onto whole-number answers a range is widened to whole numbers: 30-45 of 100
    # maps to 2.2-2.8, which no answer on 1-5 could fall in.
    study_update(study=study, changes={"scale": "continuous"})
    study.stimuli.filter(pk=low.pk).update(expected_low=30, expected_high=45)
    study_update(study=study, changes={"scale": "acr5"})
    narrow = study.stimuli.get(pk=low.pk)
    assert (narrow.expected_low, narrow.expected_high) == (2, 3)
    # No change of scale, no change of range.
    study_update(study=study, changes={"scale": "acr5", "title": "Renamed"})
    assert study.stimuli.get(pk=high.pk).expected_low == 4
