"""Viewing conditions (annotation.viewing): the size each image was shown at is kept
with its rating, the rater's window, screen and browser with the session (written only
when they change); bad values are refused naming the field, conditions the study's
options rule out are refused (409), and either refusal writes nothing."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client

from annotation.models import Claim, Rater, Rating, Session, Study
from tests.factories import (
    RatingFactory,
    SessionFactory,
    StimulusFactory,
    StudyFactory,
    client_at_rating,
    entry,
)

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_too]
GOOD = {"overall": 70, "technical": 60, "rationality": 80}
DISPLAY = {"css_width": 800, "css_height": 600, "device_width": 1600, "device_height": 1200}
VIEWING = {
    "viewport_width": 1280,
    "viewport_height": 720,
    "screen_width": 1920,
    "screen_height": 1080,
    "device_pixel_ratio": 2,
    "zoom": 1.25,
    "browser": "Firefox",
    "touch": False,
}


@pytest.fixture
def study():
    study = StudyFactory(slug="seen", protocol="perspectives", session_size=6)
    StimulusFactory.create_batch(6, study=study)
    return study


def at_rating(client: Client, study: Study) -> Rater:
    return client_at_rating(client, study, "seen-1")


def submit(client: Client, study: Study, **extra):
    """Claim the next image and submit a rating of it with ``extra`` in the body."""
    step = client.get(f"{entry(study)}next").json()["next"]
    assert step["step"] == "rate", step
    body = {
        "stimulus": step["stimulus"]["id"],
        "scores": GOOD,
        "client_id": str(uuid.uuid4()),
        "viewing_seconds": 3,
        **extra,
    }
    return client.post(
        f"{entry(study)}submit", data=json.dumps(body), content_type="application/json"
    )


def recorded(client: Client, study: Study, **extra) -> tuple[int, list[str]]:
    """Submit as ``submit`` does (after claiming), recording the submit's statements."""
    step = client.get(f"{entry(study)}next").json()["next"]
    body = {
        "stimulus": step["stimulus"]["id"],
        "scores": GOOD,
        "client_id": str(uuid.uuid4()),
        "viewing_seconds": 3,
        **extra,
    }
    seen: list[str] = []

    def record(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    # At the cursor: the request resets connection.queries.
    with connection.execute_wrapper(record):
        response = client.post(
            f"{entry(study)}submit", data=json.dumps(body), content_type="application/json"
        )
    assert response.status_code == 201, response.content
    return response.status_code, seen


def session_updates(statements: list[str]) -> list[str]:
    table = Session._meta.db_table
    return [s for s in statements if s.lstrip().upper().startswith("UPDATE") and table in s]


# --- Stored with each rating and session ---------------------------------------------


def test_viewing_condition_fields_stored_with_each_rating(client, study):
    rater = at_rating(client, study)
    response = submit(client, study, display=DISPLAY, viewing=VIEWING)
    assert response.status_code == 201, response.content
    rating = Rating.objects.get(pk=response.json()["rating"]["id"])
    assert (rating.shown_css_width, rating.shown_css_height) == (800, 600)
    assert (rating.shown_device_width, rating.shown_device_height) == (1600, 1200)
    session = rater.sessions.get()
    assert (session.viewport_width, session.viewport_height) == (1280, 720)
    assert (session.screen_width, session.screen_height) == (1920, 1080)
    assert session.device_pixel_ratio == 2.0 and session.zoom == 1.25
    assert session.browser == "firefox" and session.touch is False
    # The next image, shown smaller in a window made narrower: its own size, and the
    # session's window follows; what was not reported again is kept.
    smaller = {"css_width": 400, "css_height": 300}
    response = submit(client, study, display=smaller, viewing={"viewport_width": 1000})
    assert response.status_code == 201, response.content
    second = Rating.objects.get(pk=response.json()["rating"]["id"])
    assert (second.shown_css_width, second.shown_device_width) == (400, None)
    assert Rating.objects.get(pk=rating.pk).shown_css_width == 800
    session.refresh_from_db()
    assert (session.viewport_width, session.viewport_height, session.browser) == (
        1000,
        720,
        "firefox",
    )


def test_scripted_clients_report_nothing_and_are_taken(client, study):
    study.min_viewport_width, study.refuse_touch = 1024, True
    study.save()
    rater = at_rating(client, study)
    response = submit(client, study)
    assert response.status_code == 201, response.content
    rating = Rating.objects.get(pk=response.json()["rating"]["id"])
    assert rating.shown_css_width is None and rating.shown_device_height is None
    session = rater.sessions.get()
    assert session.viewport_width is None and session.browser == "" and session.touch is None
    # Nulls are "not reported" as well.
    nulls = {"display": {"css_width": None}, "viewing": {"zoom": None, "touch": None}}
    assert submit(client, study, **nulls).status_code == 201


def test_unchanged_conditions_cost_no_statement_and_a_change_one(client, study):
    at_rating(client, study)
    _, plain = recorded(client, study)
    _, first = recorded(client, study, display=DISPLAY, viewing=VIEWING)
    _, same = recorded(client, study, display=DISPLAY, viewing=VIEWING)
    _, changed = recorded(client, study, display=DISPLAY, viewing={**VIEWING, "zoom": 1.5})
    assert len(session_updates(first)) == 1 and len(first) == len(plain) + 1
    assert session_updates(same) == [] and len(same) == len(plain)
    assert len(session_updates(changed)) == 1 and len(changed) == len(plain) + 1


# --- Refused at the boundary: 400 naming the field, nothing written -------------------

BAD = [
    ({"display": [800, 600]}, "display"),
    ({"display": "800x600"}, "display"),
    ({"display": {"css_width": -1}}, "display.css_width"),
    ({"display": {"css_width": 0}}, "display.css_width"),
    ({"display": {"css_height": 100_001}}, "display.css_height"),
    ({"display": {"device_width": 12.5}}, "display.device_width"),
    ({"display": {"device_height": "1200"}}, "display.device_height"),
    ({"display": {"device_height": True}}, "display.device_height"),
    ({"display": {"width": 800}}, "display.width"),
    ({"viewing": 5}, "viewing"),
    ({"viewing": {"viewport_width": -800}}, "viewing.viewport_width"),
    ({"viewing": {"viewport_height": 2**40}}, "viewing.viewport_height"),
    ({"viewing": {"screen_width": "wide"}}, "viewing.screen_width"),
    ({"viewing": {"screen_height": 1080.5}}, "viewing.screen_height"),
    ({"viewing": {"device_pixel_ratio": 0}}, "viewing.device_pixel_ratio"),
    ({"viewing": {"device_pixel_ratio": -2}}, "viewing.device_pixel_ratio"),
    ({"viewing": {"device_pixel_ratio": 1e9}}, "viewing.device_pixel_ratio"),
    ({"viewing": {"device_pixel_ratio": "2"}}, "viewing.device_pixel_ratio"),
    ({"viewing": {"zoom": 400}}, "viewing.zoom"),
    ({"viewing": {"zoom": False}}, "viewing.zoom"),
    ({"viewing": {"browser": "Netscape"}}, "viewing.browser"),
    ({"viewing": {"browser": 7}}, "viewing.browser"),
    ({"viewing": {"browser": "chrome" * 10}}, "viewing.browser"),
    ({"viewing": {"touch": "yes"}}, "viewing.touch"),
    ({"viewing": {"touch": 1}}, "viewing.touch"),
    ({"viewing": {"pixel_ratio": 2}}, "viewing.pixel_ratio"),
]


@pytest.mark.parametrize(("extra", "field"), BAD, ids=[f for _, f in BAD])
def test_bad_conditions_are_refused_naming_the_field(client, study, extra, field):
    rater = at_rating(client, study)
    response = submit(client, study, **{"display": DISPLAY, "viewing": VIEWING, **extra})
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid_viewing_conditions"
    assert list(body["fields"]) == [field], body
    assert Rating.objects.count() == 0
    assert Claim.objects.filter(rater=rater).count() == 1  # the claim is kept
    session = rater.sessions.get()
    assert session.viewport_width is None and session.browser == ""


def test_bad_conditions_through_the_scripted_api(client, study):
    start = client.post(
        f"/api/v1/rater/{study.slug}/start",
        {"consent": True},
        content_type="application/json",
    ).json()
    token = start["token"]
    step = client.get(f"/api/v1/rater/{study.slug}/next", HTTP_X_RATER_TOKEN=token).json()
    body = {
        "stimulus": step["next"]["stimulus"]["id"],
        "scores": GOOD,
        "client_id": str(uuid.uuid4()),
        "viewing_seconds": 3,
    }
    url = f"/api/v1/rater/{study.slug}/submit"
    bad = {**body, "viewing": {"browser": "lynx"}}
    response = client.post(url, bad, content_type="application/json", HTTP_X_RATER_TOKEN=token)
    assert response.status_code == 400 and "viewing.browser" in response.json()["fields"]
    good = {**body, "display": DISPLAY, "viewing": {**VIEWING, "browser": "edge"}}
    response = client.post(url, good, content_type="application/json", HTTP_X_RATER_TOKEN=token)
    assert response.status_code == 201, response.content
    assert Session.objects.get(pk=start["session"]).browser == "edge"
    assert Rating.objects.get().shown_device_width == 1600


# --- The study's options: 409 naming the condition, nothing written -------------------


@pytest.mark.parametrize(
    ("options", "viewing", "condition"),
    [
        ({"min_viewport_width": 1024}, {"viewport_width": 800}, "viewing.viewport_width"),
        ({"min_viewport_height": 600}, {"viewport_height": 599}, "viewing.viewport_height"),
        ({"refuse_touch": True}, {"touch": True}, "viewing.touch"),
    ],
)
def test_conditions_the_study_rules_out_are_refused(client, study, options, viewing, condition):
    Study.objects.filter(pk=study.pk).update(**options)
    rater = at_rating(client, study)
    response = submit(client, study, display=DISPLAY, viewing={**VIEWING, **viewing})
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["error"] == "viewing_conditions" and list(body["fields"]) == [condition]
    assert Rating.objects.count() == 0
    assert rater.sessions.get().viewport_width is None  # the session is not written either
    # Within the options (the window made larger, a mouse): taken.
    fine = {**VIEWING, "viewport_width": 1280, "viewport_height": 720, "touch": False}
    response = submit(client, study, display=DISPLAY, viewing=fine)
    assert response.status_code == 201, response.content


def test_a_replay_is_answered_as_before_whatever_the_conditions(client, study):
    """A retry of a rating already written is answered with it, not refused anew."""
    at_rating(client, study)
    step = client.get(f"{entry(study)}next").json()["next"]
    body = {
        "stimulus": step["stimulus"]["id"],
        "scores": GOOD,
        "client_id": str(uuid.uuid4()),
        "viewing_seconds": 3,
        "viewing": VIEWING,
    }
    url = f"{entry(study)}submit"
    first = client.post(url, data=json.dumps(body), content_type="application/json")
    assert first.status_code == 201
    Study.objects.filter(pk=study.pk).update(min_viewport_width=5000)
    again = client.post(url, data=json.dumps(body), content_type="application/json")
    assert again.status_code == 200 and again.json()["rating"] == first.json()["rating"]


# --- The study's options: API, page config, database ---------------------------------


def test_study_options_through_the_api(researcher_a):
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(researcher_a)
    made = api.post(
        "/api/v1/studies/",
        {
            "slug": "vc",
            "title": "VC",
            "min_viewport_width": 1024,
            "min_viewport_height": 700,
            "refuse_touch": True,
            "native_pixels": True,
        },
        format="json",
    )
    assert made.status_code == 201, made.content
    study = Study.objects.get(slug="vc")
    assert (study.min_viewport_width, study.min_viewport_height) == (1024, 700)
    assert study.refuse_touch and study.native_pixels
    assert made.json()["min_viewport_width"] == 1024 and made.json()["native_pixels"] is True
    for value in (0, -5, 100_001, "wide"):
        refused = api.patch("/api/v1/studies/vc/", {"min_viewport_width": value}, format="json")
        assert refused.status_code == 400 and "min_viewport_width" in refused.json()["fields"]
    cleared = api.patch("/api/v1/studies/vc/", {"min_viewport_width": None}, format="json")
    assert cleared.status_code == 200, cleared.content
    assert Study.objects.get(slug="vc").min_viewport_width is None


def test_the_rate_page_is_given_the_options(client, study):
    Study.objects.filter(pk=study.pk).update(
        min_viewport_width=900, refuse_touch=True, native_pixels=True
    )
    at_rating(client, study)
    page = client.get(entry(study))
    assert page.status_code == 200
    assert page.context["config"]["viewing"] == {
        "min_viewport_width": 900,
        "min_viewport_height": None,
        "refuse_touch": True,
        "native_pixels": True,
    }
    assert 'id="rate-config"' in page.content.decode()


@pytest.mark.parametrize(
    ("model", "values"),
    [
        ("study", {"min_viewport_width": 0}),
        ("study", {"min_viewport_height": 100_001}),
        ("session", {"viewport_width": 0}),
        ("session", {"screen_height": 100_001}),
        ("session", {"device_pixel_ratio": 0.0}),
        ("session", {"zoom": 21.0}),
        ("session", {"browser": "lynx"}),
        ("rating", {"shown_css_width": 0}),
        ("rating", {"shown_device_height": 100_001}),
    ],
)
def test_the_database_keeps_the_bounds(study, model, values):
    """Writes that bypass the services (bulk loads, the admin's raw paths) are refused too."""
    rating = RatingFactory(stimulus=study.stimuli.first())
    target = {
        "study": Study.objects.filter(pk=study.pk),
        "session": Session.objects.filter(pk=rating.session_id),
        "rating": Rating.objects.filter(pk=rating.pk),
    }[model]
    with pytest.raises(IntegrityError), transaction.atomic():
        target.update(**values)


def test_the_database_takes_values_within_bounds(study):
    session = SessionFactory(rater__study=study)
    Session.objects.filter(pk=session.pk).update(
        viewport_width=1, screen_height=100_000, device_pixel_ratio=0.5, browser="safari"
    )
    session.refresh_from_db()
    assert session.get_browser_display() == "Safari"
