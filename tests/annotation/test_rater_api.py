"""Scripted raters through /api/v1/rater/<slug>/: start, next, submit, finish; rate limits."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import cache
from django.test import Client

from annotation.models import Rater, Rating
from tests.factories import StimulusFactory, StudyFactory

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite_too]
GOOD = {"overall": 50, "technical": 40, "rationality": 60}


@pytest.fixture(autouse=True)
def _clear_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def study():
    study = StudyFactory(
        slug="scripted", protocol="perspectives", session_size=2, completion_code="CODE-9"
    )
    StimulusFactory.create_batch(3, study=study)
    return study


def post(client, url, body, token=None):
    headers = {"HTTP_X_RATER_TOKEN": token} if token else {}
    return client.post(url, body, content_type="application/json", **headers)


def test_full_scripted_session(study):
    client = Client()
    start = post(
        client,
        "/api/v1/rater/scripted/start",
        {
            "consent": True,
            "source": "prolific",
            "external_id": "P-77",
            "platform": {"study_id": "abc"},
        },
    )
    assert start.status_code == 201, start.content
    token = start.json()["token"]
    assert start.json()["protocol"]["dimensions"] == ["overall", "technical", "rationality"]
    again = post(
        client,
        "/api/v1/rater/scripted/start",
        {"consent": True, "source": "prolific", "external_id": "P-77"},
    )
    assert again.status_code == 200 and again.json()["token"] == token  # resumed
    for _ in range(2):
        step = client.get("/api/v1/rater/scripted/next", HTTP_X_RATER_TOKEN=token).json()
        assert step["next"]["step"] == "rate"
        stimulus = step["next"]["stimulus"]["id"]
        answer = post(
            client,
            "/api/v1/rater/scripted/submit",
            {
                "stimulus": stimulus,
                "scores": GOOD,
                "client_id": str(uuid.uuid4()),
                "viewing_seconds": 4,
            },
            token,
        )
        assert answer.status_code == 201
    done = post(client, "/api/v1/rater/scripted/finish", {}, token)
    assert done.status_code == 200 and done.json()["completion_code"] == "CODE-9"
    assert Rating.objects.filter(rater__external_id="P-77").count() == 2
    assert Rater.objects.get(external_id="P-77").status == "completed"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"source": "prolific", "external_id": "x"}, "consent"),
        ({"consent": "yes", "source": "anonymous"}, "consent"),
        ({"consent": True, "source": "facebook"}, "source"),
        ({"consent": True, "source": "prolific"}, "external_id"),
        ({"consent": True, "source": "prolific", "external_id": "x" * 500}, "external_id"),
        ({"consent": True, "platform": ["a"]}, "platform"),
        ({"consent": True, "platform": {"a": 1}}, "platform"),
    ],
)
def test_bad_start_requests(study, body, field):
    response = post(Client(), "/api/v1/rater/scripted/start", body)
    assert response.status_code == 400 and field in response.json()["fields"]
    assert Rater.objects.count() == 0


def test_start_refused_on_closed_study_and_unknown_study(study):
    study.status = "closed"
    study.save()
    assert post(Client(), "/api/v1/rater/scripted/start", {"consent": True}).status_code == 409
    assert post(Client(), "/api/v1/rater/nope/start", {"consent": True}).status_code == 404
    assert Client().get("/api/v1/rater/scripted/start").status_code == 405


def test_rate_limit_per_token_answers_429_with_retry_after(study, settings):
    settings.RATE_LIMIT_RATER_PER_MIN = 5
    token = post(Client(), "/api/v1/rater/scripted/start", {"consent": True}).json()["token"]
    client = Client()
    codes = [
        client.get("/api/v1/rater/scripted/next", HTTP_X_RATER_TOKEN=token).status_code
        for _ in range(7)
    ]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
    limited = client.get("/api/v1/rater/scripted/next", HTTP_X_RATER_TOKEN=token)
    assert 1 <= int(limited["Retry-After"]) <= 61
    assert limited.json()["error"] == "rate_limited"


def test_rate_limit_per_address(study, settings):
    settings.RATE_LIMIT_ADDRESS_PER_MIN = 3
    client = Client(REMOTE_ADDR="10.9.8.7")
    codes = [client.get("/s/scripted/next").status_code for _ in range(5)]
    assert codes[:3] == [403, 403, 403] and codes[3:] == [429, 429]
    other = Client(REMOTE_ADDR="10.9.8.8")
    assert other.get("/s/scripted/next").status_code == 403  # a different address


def test_new_raters_per_address_are_limited_and_returning_ones_are_not(study, settings):
    """One script inventing platform ids could otherwise hold all of a study's places
    (each new rater's, for an hour) and turn real raters away as "full"."""
    settings.RATE_LIMIT_NEW_RATERS_PER_HOUR = 2
    study.platforms = ["prolific", "anonymous"]
    study.save(update_fields=["platforms"])
    here = Client(REMOTE_ADDR="10.1.1.1")

    def enter(client, pid):
        return client.get(f"/s/scripted/?PROLIFIC_PID={pid}&STUDY_ID=s&SESSION_ID=x-{pid}")

    assert [enter(here, p).status_code for p in ("p-1", "p-2")] == [200, 200]
    limited = enter(here, "p-3")
    assert limited.status_code == 429 and 'id="too-many-new-raters"' in limited.text
    assert 1 <= int(limited["Retry-After"]) <= 3601
    assert enter(here, "p-1").status_code == 200  # back again: not a new rater
    # The anonymous link's consent and the scripted start count alike.
    agree = {"new_visitor": "1", "action": "agree", "items": "4"}
    assert Client(REMOTE_ADDR="10.1.1.1").post("/s/scripted/consent", agree).status_code == 429
    api = Client(REMOTE_ADDR="10.1.1.1")
    answer = post(api, "/api/v1/rater/scripted/start", {"consent": True})
    assert answer.status_code == 429 and answer.json()["error"] == "rate_limited"
    assert int(answer["Retry-After"]) >= 1
    assert sorted(Rater.objects.values_list("external_id", flat=True)) == ["p-1", "p-2"]
    again = post(
        api,
        "/api/v1/rater/scripted/start",
        {"consent": True, "source": "prolific", "external_id": "p-2"},
    )
    assert again.status_code == 200  # found again
    assert enter(Client(REMOTE_ADDR="10.1.1.2"), "p-4").status_code == 200  # another address
    assert Rater.objects.count() == 3


def test_submit_before_the_minimum_viewing_time_is_a_409_that_changes_nothing(study):
    study.min_view_seconds = 30.0
    study.save(update_fields=["min_view_seconds"])
    client = Client()
    token = post(client, "/api/v1/rater/scripted/start", {"consent": True}).json()["token"]
    step = client.get("/api/v1/rater/scripted/next", HTTP_X_RATER_TOKEN=token).json()
    body = {
        "stimulus": step["next"]["stimulus"]["id"],
        "scores": GOOD,
        "client_id": str(uuid.uuid4()),
        "viewing_seconds": 31,  # what the client says does not count: the claim's age does
    }
    answer = post(client, "/api/v1/rater/scripted/submit", body, token)
    assert answer.status_code == 409
    assert answer.json()["error"] == "too_fast" and "at least 30 s" in answer.json()["detail"]
    assert not Rating.objects.exists()
    # The claim is kept: the same image comes back on the next request.
    again = client.get("/api/v1/rater/scripted/next", HTTP_X_RATER_TOKEN=token).json()
    assert again["next"]["stimulus"]["id"] == body["stimulus"]


@pytest.mark.sqlite_too
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("way", ["replayed submit", "two tabs"])
def test_concurrent_requests_of_one_session_hold_one_claim(way):
    """Requests of one session at once: a submit retried several times (its answers
    lost on a bad line), or /next from several tabs while no claim is live. One
    rating, one next stimulus for all of them, and the session holds one claim, not
    one per request (which would end a small study's session early)."""
    from django.utils import timezone

    from annotation.models import Claim
    from tests.annotation.helpers import all_at_once

    study = StudyFactory(slug="replays", protocol="perspectives", session_size=4)
    StimulusFactory.create_batch(8, study=study)
    client = Client()
    token = post(
        client, "/api/v1/rater/replays/start", {"consent": True, "external_id": "R-1"}
    ).json()["token"]
    first = client.get("/api/v1/rater/replays/next", HTTP_X_RATER_TOKEN=token).json()
    body = {
        "stimulus": first["next"]["stimulus"]["id"],
        "scores": GOOD,
        "client_id": str(uuid.uuid4()),
        "viewing_seconds": 4,
    }
    if way == "two tabs":
        assert post(client, "/api/v1/rater/replays/submit", body, token).status_code == 201
        # The claim the answer handed out is dropped: no claim is live now.
        Claim.objects.filter(rater__external_id="R-1").delete()
    n = 8
    if way == "two tabs":
        answers = all_at_once(
            n, lambda: Client().get("/api/v1/rater/replays/next", HTTP_X_RATER_TOKEN=token)
        )
    else:
        answers = all_at_once(
            n, lambda: post(Client(), "/api/v1/rater/replays/submit", body, token)
        )
    if way == "replayed submit":
        assert sorted(a.status_code for a in answers) == [200] * (n - 1) + [201]
    assert {a.json()["next"]["step"] for a in answers} == {"rate"}
    assert len({a.json()["next"]["stimulus"]["id"] for a in answers}) == 1
    rater = Rater.objects.get(external_id="R-1")
    assert Rating.objects.filter(rater=rater).count() == 1
    assert Claim.objects.filter(rater=rater, expires_at__gt=timezone.now()).count() == 1


@pytest.mark.parametrize("status", ["closed", "paused"])
def test_next_on_a_study_closed_midway_carries_the_no_work_outcome(study, status):
    """Scripted clients get what the entry page shows: closed before the rater
    finished, the no-work code to be paid for the work done; paused, nothing yet."""
    from tests.factories import StudyOutcomeFactory

    StudyOutcomeFactory(study=study, kind="no_work", code="NW-9", platform="")
    token = post(
        Client(),
        "/api/v1/rater/scripted/start",
        {"consent": True, "source": "prolific", "external_id": "p-mid"},
    ).json()["token"]
    study.status = status
    study.save(update_fields=["status"])
    step = Client().get("/api/v1/rater/scripted/next", HTTP_X_RATER_TOKEN=token).json()["next"]
    assert step["step"] == "unavailable"
    if status == "closed":
        assert step["outcome"]["kind"] == "no_work" and step["outcome"]["code"] == "NW-9"
    else:
        assert "outcome" not in step
