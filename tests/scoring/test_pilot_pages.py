"""The study page's "Preview as rater" (scoring.workspace.pilot), and pilot ratings
left out of everything the scoring side reads: MOS (BT.500), every export format,
agreement (it reads the analyses) and the API's rating counts."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pyarrow.parquet as pq
import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation import assignment, rater_api, services
from annotation.models import Rater, Rating, Study, StudyShare
from scoring.analyses.selectors import ratings_frame
from scoring.analyses.services import analysis_create, analysis_run
from scoring.exports.formats import FORMATS, export_stream
from scoring.models import Analysis, StimulusResult
from tests.factories import (
    StimulusFactory,
    StudyFactory,
    UserFactory,
    pilot_at_rating,
    rater_at_rating,
)

pytestmark = pytest.mark.django_db
BANNER = "Pilot preview: your ratings are not counted."


def pilot_url(study: Study) -> str:
    return reverse("scoring:study-pilot", args=[study.slug])


@pytest.fixture
def draft():
    study = StudyFactory(slug="to-preview", status=Study.Status.DRAFT)
    StimulusFactory.create_batch(2, study=study)
    return study


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- The button -------------------------------------------------------------------


def test_the_owner_previews_a_draft_from_consent_with_the_banner(draft):
    client = signed_in(draft.owner)
    response = client.post(pilot_url(draft))
    assert response.status_code == 302 and response.url == f"/s/{draft.slug}/"
    rater = Rater.objects.get(study=draft)
    assert rater.source == Rater.Source.PILOT and rater.pilot_user == draft.owner
    cookie = response.cookies[rater_api.RATER_COOKIE]
    assert cookie.value == rater.token and cookie["path"] == f"/s/{draft.slug}/"
    assert cookie["httponly"]
    page = client.get(response.url)
    assert page.status_code == 200 and "Before you start" in page.text and BANNER in page.text

    # Each click is a fresh preview from consent; the earlier one is ended.
    again = client.post(pilot_url(draft))
    assert again.cookies[rater_api.RATER_COOKIE].value != rater.token
    assert Rater.objects.filter(study=draft, status=Rater.Status.ACTIVE).count() == 1


def test_a_view_only_shared_researcher_may_preview(draft):
    viewer = UserFactory()
    StudyShare.objects.create(study=draft, user=viewer, level=StudyShare.Level.VIEW)
    response = signed_in(viewer).post(pilot_url(draft))
    assert response.status_code == 302
    assert Rater.objects.get(study=draft).pilot_user == viewer


def test_who_may_not_preview_gets_no_pilot_rater(draft):
    stranger = UserFactory()
    StudyFactory(owner=stranger)  # a researcher of other studies only
    # Like a study that does not exist: whether another's slug is taken is not told.
    assert signed_in(stranger).post(pilot_url(draft)).status_code == 404
    assert signed_in(stranger).post("/studies/no-such-study/pilot/").status_code == 404
    anonymous = Client().post(pilot_url(draft))
    assert anonymous.status_code == 302 and anonymous.url.startswith("/accounts/login/")
    # A rater (no account, only a rater cookie, even a pilot's of another study) neither.
    other = StudyFactory(slug="other-study")
    StimulusFactory(study=other)
    rater_client = Client()
    rater_client.cookies[rater_api.RATER_COOKIE] = Rater.objects.create(study=other).token
    assert rater_client.post(pilot_url(draft)).url.startswith("/accounts/login/")
    assert not Rater.objects.filter(study=draft).exists()
    assert signed_in(draft.owner).get(pilot_url(draft)).status_code == 405
    assert (
        signed_in(draft.owner).post(reverse("scoring:study-pilot", args=["nope"])).status_code
        == 404
    )


def test_a_study_without_test_stimuli_says_so_on_the_study_page():
    study = StudyFactory(slug="empty", status=Study.Status.DRAFT)
    StimulusFactory(study=study, role="training")
    client = signed_in(study.owner)
    response = client.post(pilot_url(study))
    assert response.status_code == 302 and response.url == f"/studies/{study.slug}/"
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert messages == [
        "The preview did not start: the study has no test stimuli to preview: import some first."
    ]
    assert rater_api.RATER_COOKIE not in response.cookies
    assert not Rater.objects.exists()


# --- Nothing on the scoring side counts a pilot rating ------------------------------


REAL = [{"overall": 30 + i, "technical": 40 + i, "rationality": 50 + i} for i in range(3)]
PILOT = {"overall": 97, "technical": 97, "rationality": 97}


def rate_all(rater, session, scores_for):
    rated = []
    while (claim := assignment.claim_next(session=session)) is not None:
        services.rating_submit(
            rater=rater,
            stimulus_id=claim.stimulus_id,
            scores=scores_for(claim.stimulus_id),
            client_id=uuid.uuid4(),
            viewing_seconds=4.0,
        )
        rated.append(claim.stimulus_id)
    return rated


@pytest.fixture
def mixed():
    """An open study of 3 test images (K = 1) rated by one real rater and one pilot
    (whose scores, 97, appear nowhere in the real ones)."""
    study = StudyFactory(slug="mixed", protocol="perspectives", ratings_per_stimulus=1)
    stimuli = StimulusFactory.create_batch(3, study=study)
    index = {s.pk: i for i, s in enumerate(stimuli)}
    real, real_session = rater_at_rating(study, "real-1")
    assert len(rate_all(real, real_session, lambda pk: REAL[index[pk]])) == 3
    pilot, pilot_session = pilot_at_rating(study)
    assert len(rate_all(pilot, pilot_session, lambda pk: PILOT)) == 3  # a full study
    assert Rating.objects.filter(is_pilot=True).count() == 3
    return study, real, pilot, index


def test_mos_uses_only_the_real_rater(mixed):
    study, real, pilot, index = mixed
    assert set(ratings_frame(study)["rater"]) == {real.pk}
    analysis = analysis_run(analysis_id=analysis_create(study=study, method="bt500").pk)
    assert analysis.status == Analysis.Status.DONE, analysis.error
    assert (analysis.n_raters, analysis.n_ratings) == (1, 3)
    mos = {
        (r.stimulus_id, r.dimension): (r.mos, r.n)
        for r in StimulusResult.objects.filter(analysis=analysis)
    }
    for pk, i in index.items():
        for dim, score in REAL[i].items():
            assert mos[(pk, dim)] == (pytest.approx(score), 1)
    assert not analysis.rater_results.filter(rater=pilot).exists()


def test_no_export_format_carries_a_pilot_rating(mixed):
    study, real, pilot, index = mixed
    analysis_run(analysis_id=analysis_create(study=study, method="bt500").pk)
    assert set(FORMATS) == {"agin-csv", "json", "parquet", "ratings-csv", "ratings-parquet"}
    seen = {}
    for name in FORMATS:
        _, chunks = export_stream(study, name)
        data = b"".join(chunks)
        if name.endswith("parquet"):
            rows = pq.read_table(io.BytesIO(data)).to_pylist()
        elif name == "json":
            rows = json.loads(data)["stimuli"]
        else:
            rows = list(csv.DictReader(io.StringIO(data.decode())))
        values = {str(v) for row in rows for v in row.values()}
        assert pilot.pseudonym not in values, name
        assert not values & {"97", "97.0"}, name  # the pilot's score, in no row
        seen[name] = rows
    for name in ("ratings-csv", "ratings-parquet"):
        assert len(seen[name]) == 9  # 3 ratings x 3 dimensions, the real rater's
        assert {row["rater"] for row in seen[name]} == {real.pseudonym}
    assert len(seen["agin-csv"]) == len(seen["json"]) == len(seen["parquet"]) == 3
    for name in ("agin-csv", "json", "parquet"):  # MOS of the real rater alone, n = 1
        assert sorted(float(row["MOS_nat"]) for row in seen[name]) == [30, 31, 32], name
        assert {float(row["n_nat"]) for row in seen[name]} == {1}, name


def test_the_api_counts_no_pilot_rating(mixed):
    study, real, pilot, index = mixed
    client = APIClient()
    client.force_authenticate(study.owner)
    stimuli = client.get(f"/api/v1/studies/{study.slug}/stimuli/").json()["results"]
    assert [s["ratings"] for s in stimuli] == [1, 1, 1]
    progress = client.get(f"/api/v1/studies/{study.slug}/progress/").json()
    assert progress["n_ratings"] == 3 and progress["complete"] == 3
    # Both are active (neither finished a session); only the real one counts.
    assert Rater.objects.filter(study=study, status=Rater.Status.ACTIVE).count() == 2
    assert (progress["raters_active"], progress["raters_completed"]) == (1, 0)


def test_pilot_raters_are_not_raters_needing_attention(client):
    from annotation.models import Rater
    from tests.factories import RaterFactory, StimulusFactory, StudyFactory, UserFactory

    owner = UserFactory(username="attentive")
    study = StudyFactory(owner=owner)
    StimulusFactory(study=study)
    # Both need attention by their state (a failed gold question); only the real one is listed.
    real = RaterFactory(study=study, gold_failures=1)
    Rater.objects.create(study=study, source=Rater.Source.PILOT, pilot_user=owner, gold_failures=1)
    client.force_login(owner)
    response = client.get(reverse("scoring:study-detail", args=[study.slug]))
    assert [row["rater"].pk for row in response.context["raters"]] == [real.pk]
