"""A study takes raters only through the links of its crowd platforms (Study.platforms):
a new rater by another link gets a page (or JSON) saying so and nothing is written;
raters who started before a platform was turned off finish."""

from __future__ import annotations

import pytest

from annotation.models import Rater
from tests.factories import StimulusFactory, StudyFactory

pytestmark = pytest.mark.django_db

PROLIFIC = "?PROLIFIC_PID=p-1&STUDY_ID=s&SESSION_ID=x"
MTURK = "?workerId=W1&assignmentId=A1&hitId=H1"


@pytest.fixture
def study():
    study = StudyFactory(slug="only-prolific", platforms=["prolific"])
    StimulusFactory.create_batch(3, study=study)
    return study


@pytest.mark.parametrize("query", [MTURK, ""], ids=["mturk", "anonymous"])
def test_a_link_the_study_does_not_take_writes_nothing(client, study, query):
    response = client.get(f"/s/{study.slug}/{query}")
    assert response.status_code == 403
    assert 'id="link-not-accepted"' in response.content.decode()
    assert not Rater.objects.exists()


def test_the_accepted_link_enters(client, study):
    response = client.get(f"/s/{study.slug}/{PROLIFIC}")
    assert response.status_code == 200
    assert Rater.objects.get().source == Rater.Source.PROLIFIC


def test_the_anonymous_consent_form_cannot_register_either(client, study):
    response = client.post(f"/s/{study.slug}/consent", {"new_visitor": "1", "action": "agree"})
    assert response.status_code == 403
    assert not Rater.objects.exists()


def test_raters_who_started_finish_after_their_platform_is_turned_off(client, study):
    study.platforms = ["prolific", "mturk"]
    study.save()
    assert client.get(f"/s/{study.slug}/{MTURK}").status_code == 200
    study.platforms = ["prolific"]
    study.save()
    # Back by the MTurk link, and by the plain link with their cookie: still in.
    assert client.get(f"/s/{study.slug}/{MTURK}").status_code == 200
    assert client.get(f"/s/{study.slug}/").status_code == 200
    assert Rater.objects.count() == 1


def test_the_rater_api_start_refuses_with_json(client, study):
    response = client.post(
        f"/api/v1/rater/{study.slug}/start",
        {"consent": True, "source": "anonymous"},
        content_type="application/json",
    )
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "link_not_accepted" and "source" in body["fields"]
    assert not Rater.objects.exists()


@pytest.mark.parametrize(
    "query",
    [
        "?PROLIFIC_PID=" + "p" * 129 + "&STUDY_ID=s&SESSION_ID=x",
        "?PROLIFIC_PID=p-2&STUDY_ID=s&SESSION_ID=" + "x" * 129,
        "?workerId=" + "W" * 129 + "&assignmentId=A1&hitId=H1",
    ],
    ids=["pid", "session", "worker"],
)
def test_a_platform_id_too_long_to_keep_is_refused_not_cut(client, query):
    """Cut to 128 characters, two ids that differ after it would be one rater."""
    study = StudyFactory(slug="any-link")
    StimulusFactory.create_batch(3, study=study)
    response = client.get(f"/s/{study.slug}/{query}")
    assert response.status_code == 400
    assert 'id="bad-link"' in response.content.decode()
    assert "longer than 128 characters" in response.content.decode()
    assert not Rater.objects.exists()
    longest = client.get(f"/s/{study.slug}/?PROLIFIC_PID={'p' * 128}&STUDY_ID=s&SESSION_ID=x")
    assert longest.status_code == 200
    assert Rater.objects.get().external_id == "p" * 128
