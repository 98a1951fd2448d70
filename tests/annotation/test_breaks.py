"""Breaks are kept on the server (Session.break_until): reloading the page or asking
the rater API for the next image during a break answers the break again, claims
nothing, and only its end gives the next image."""

from __future__ import annotations

import io
import json
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from annotation import rater_flow
from annotation.models import Claim, Rater, Session, Study
from tests.factories import StimulusFactory, StudyFactory, client_at_rating, entry

pytestmark = pytest.mark.django_db
GOOD = {"overall": 70, "technical": 60, "rationality": 80}


@pytest.fixture
def study():
    study = StudyFactory(
        slug="rest",
        protocol="perspectives",
        session_size=4,
        ratings_per_stimulus=2,
        min_view_seconds=0,
        break_every=2,
    )
    StimulusFactory.create_batch(5, study=study)
    return study


def at_rating(client: Client, study: Study) -> Rater:
    return client_at_rating(client, study, "rest-1")


def rate_current(client: Client, study: Study) -> dict:
    """Rate the image the rater holds (claiming it through next first)."""
    step = client.get(f"{entry(study)}next").json()["next"]
    assert step["step"] == "rate", step
    body = {
        "stimulus": step["stimulus"]["id"],
        "scores": GOOD,
        "client_id": str(uuid.uuid4()),
        "viewing_seconds": 3,
    }
    response = client.post(
        f"{entry(study)}submit", data=json.dumps(body), content_type="application/json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


def test_the_break_is_recorded_and_answered_until_it_is_over(client, study):
    rater = at_rating(client, study)
    assert rate_current(client, study)["next"]["step"] == "rate"
    before = timezone.now()
    answer = rate_current(client, study)
    session = Session.objects.get(rater=rater)

    # The break starts with the second rating, and its end is on the session.
    assert answer["next"]["step"] == "break"
    assert before + timedelta(seconds=rater_flow.BREAK_SECONDS) <= session.break_until
    assert session.break_until <= timezone.now() + timedelta(seconds=rater_flow.BREAK_SECONDS)
    assert 0 < answer["next"]["seconds_left"] <= rater_flow.BREAK_SECONDS
    assert answer["next"]["until"] == session.break_until.isoformat()

    # Asking for the next image during the break: the break, again, and no claim.
    for _ in range(2):
        again = client.get(f"{entry(study)}next").json()
        assert again["next"]["step"] == "break"
        assert again["next"]["until"] == session.break_until.isoformat()
        assert again["progress"] == {"done": 2, "planned": 4}
        assert not Claim.objects.exists()

    # The break is over: the next image.
    Session.objects.filter(pk=session.pk).update(break_until=timezone.now() - timedelta(seconds=1))
    after = client.get(f"{entry(study)}next").json()
    assert after["next"]["step"] == "rate" and Claim.objects.count() == 1
    assert after["next"]["claim"] == Claim.objects.get().pk


def test_reloading_the_page_during_a_break_shows_the_break(client, study):
    at_rating(client, study)
    rate_current(client, study)
    rate_current(client, study)

    page = client.get(entry(study))
    assert page.status_code == 200
    assert [t.name for t in page.templates][0] == "annotation/rate.html"
    config = page.context["config"]
    assert config["break"]["step"] == "break" and config["break"]["seconds_left"] > 0
    assert config["stimulus"] is None and config["claim"] is None
    html = page.content.decode()
    assert '<section id="break" class="panel break" aria-labelledby' in html  # not hidden
    assert '<div class="rate-layout" id="work" hidden>' in html
    assert not Claim.objects.exists()  # the reload claimed nothing

    Session.objects.update(break_until=timezone.now() - timedelta(seconds=1))
    page = client.get(entry(study))
    assert page.context["config"]["break"] is None
    assert page.context["config"]["claim"] == Claim.objects.get().pk
    assert '<section id="break" class="panel break" hidden' in page.content.decode()


def test_a_break_starts_only_after_every_nth_rating(client, study):
    rater = at_rating(client, study)
    rate_current(client, study)
    assert Session.objects.get(rater=rater).break_until is None
    client.get(f"{entry(study)}next")  # no rating in between: no break
    assert Session.objects.get(rater=rater).break_until is None


def test_the_header_token_client_gets_the_same_break(client, study):
    """A scripted client (X-Rater-Token, no cookie) cannot skip the break either."""
    rater = at_rating(client, study)
    rate_current(client, study)
    rate_current(client, study)
    script = Client()
    answer = script.get(f"{entry(study)}next", headers={"X-Rater-Token": rater.token}).json()
    assert answer["next"]["step"] == "break" and not Claim.objects.exists()


def test_a_break_of_no_length_goes_straight_on(client, study, monkeypatch):
    monkeypatch.setattr(rater_flow, "BREAK_SECONDS", 0)
    at_rating(client, study)
    rate_current(client, study)
    answer = rate_current(client, study)
    assert answer["next"]["step"] == "break" and answer["next"]["seconds_left"] == 0
    assert client.get(f"{entry(study)}next").json()["next"]["step"] == "rate"


def test_the_demo_study_has_a_break_within_one_session():
    from django.core.management import call_command

    call_command("seed_demo", stdout=io.StringIO())
    demo = Study.objects.get(slug="demo")
    assert demo.break_every < demo.session_size
    # A demo database seeded before: its study is brought within a session too.
    Study.objects.filter(pk=demo.pk).update(break_every=40)
    call_command("seed_demo", stdout=io.StringIO())
    demo.refresh_from_db()
    assert demo.break_every < demo.session_size


def test_asking_during_a_break_writes_nothing(client, study):
    """The break is read from the session the rater endpoints read anyway: asking
    during it writes nothing and costs no more than asking for the held image."""
    from django.db import connection

    def statements(url: str) -> tuple[dict, list[str]]:
        seen: list[str] = []

        def record(execute, sql, params, many, context):
            seen.append(sql)
            return execute(sql, params, many, context)

        # Recorded at the cursor: the request's own reset of connection.queries would
        # hide them from CaptureQueriesContext.
        with connection.execute_wrapper(record):
            body = client.get(url).json()
        return body, seen

    at_rating(client, study)
    _, holding = statements(f"{entry(study)}next")  # claims the first image
    held, resumed = statements(f"{entry(study)}next")  # the held one again
    assert held["next"]["step"] == "rate"
    rate_current(client, study)
    rate_current(client, study)  # the break starts
    resting_body, resting = statements(f"{entry(study)}next")
    assert resting_body["next"]["step"] == "break"
    assert [sql for sql in resting if not sql.lstrip().startswith("SELECT")] == []
    assert len(resting) <= len(resumed)
    assert any(sql.lstrip().startswith("INSERT") for sql in holding)  # a claim writes


def test_a_replayed_rating_starts_no_second_break(client, study):
    """The browser sends an answer again when the first reply was lost: during the
    break the replay is answered with the break; after it, with the next image."""
    rater = at_rating(client, study)
    rate_current(client, study)
    step = client.get(f"{entry(study)}next").json()["next"]
    body = json.dumps(
        {
            "stimulus": step["stimulus"]["id"],
            "scores": GOOD,
            "client_id": str(uuid.uuid4()),
            "viewing_seconds": 3,
        }
    )

    def send():
        return client.post(f"{entry(study)}submit", data=body, content_type="application/json")

    assert send().json()["next"]["step"] == "break"
    replay = send()
    assert replay.status_code == 200 and replay.json()["next"]["step"] == "break"
    Session.objects.filter(rater=rater).update(break_until=timezone.now() - timedelta(seconds=1))
    replay = send()
    assert replay.status_code == 200 and replay.json()["next"]["step"] == "rate"
