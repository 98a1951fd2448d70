"""The rater's pages and JSON endpoints through Django's test client.

Entry links (Prolific, MTurk, anonymous), the token cookie, resuming, the stage
flow (consent, instructions, training, rating, completion), and every refused
submission answered with a clear JSON message and no change to the ratings.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from annotation import assignment, rater_api, rater_flow, services
from annotation.models import Claim, Rater, Rating, Session, Study
from tests.annotation.helpers import rater_past_places
from tests.factories import StimulusFactory, StudyFactory, entry

pytestmark = pytest.mark.django_db
GOOD = {"overall": 70, "technical": 60, "rationality": 80}
PROLIFIC_DONE = "https://app.prolific.com/submissions/complete"


@pytest.fixture
def study():
    study = StudyFactory(
        slug="vis",
        title="Visual study",
        protocol="perspectives",
        session_size=3,
        ratings_per_stimulus=2,
        min_view_seconds=0.5,
        completion_code="CODE42",
        completion_url=PROLIFIC_DONE,
    )
    StimulusFactory.create_batch(4, study=study)
    return study


def post_json(client: Client, url: str, body, **headers):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", headers=headers)


def submit(client: Client, study: Study, stimulus_id, scores=None, client_id=None, **headers):
    body = {
        "stimulus": stimulus_id,
        "scores": GOOD if scores is None else scores,
        "client_id": str(client_id or uuid.uuid4()),
        "viewing_seconds": 4.5,
    }
    return post_json(client, f"{entry(study)}submit", body, **headers)


def rating_rater(client: Client, study: Study, pid: str = "P-1") -> tuple[Rater, Claim]:
    """A Prolific rater past consent and training, holding a claim (via the page)."""
    assert client.get(entry(study), {"PROLIFIC_PID": pid}).status_code == 200
    rater = Rater.objects.get(study=study, external_id=pid)
    services.session_advance(session=rater.sessions.get(), stage=Session.Stage.RATING)
    response = client.get(entry(study))
    assert response.status_code == 200 and "annotation/rate.html" in _templates(response)
    return rater, Claim.objects.get(rater=rater)


def _templates(response) -> list[str]:
    return [t.name for t in response.templates]


# --- Entry -----------------------------------------------------------------------------


def test_prolific_entry_registers_the_rater_and_sets_a_study_cookie(client, study):
    response = client.get(
        entry(study), {"PROLIFIC_PID": "pp1", "STUDY_ID": "st9", "SESSION_ID": "se3"}
    )
    assert response.status_code == 200
    assert "annotation/consent.html" in _templates(response)
    rater = Rater.objects.get()
    assert (rater.source, rater.external_id) == ("prolific", "pp1")
    assert rater.platform == {"study_id": "st9", "session_id": "se3"}
    assert rater.sessions.get().platform_session_id == "se3"
    cookie = response.cookies[rater_api.RATER_COOKIE]
    assert cookie.value == rater.token
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert cookie["path"] == "/s/vis/"  # scoped to this study
    assert not cookie["secure"]  # test settings: SECURE_COOKIES off


def test_rater_cookie_is_secure_when_cookies_are(client, study, settings):
    settings.SESSION_COOKIE_SECURE = True  # production default (DEBUG off)
    response = client.get(entry(study), {"PROLIFIC_PID": "pp1"})
    assert response.cookies[rater_api.RATER_COOKIE]["secure"]


def test_mturk_entry_and_preview(client, study):
    preview = client.get(
        entry(study), {"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "H1"}
    )
    assert preview.status_code == 200 and "annotation/preview.html" in _templates(preview)
    assert "Accept the HIT" in preview.content.decode()
    assert not Rater.objects.exists() and rater_api.RATER_COOKIE not in preview.cookies

    params = {
        "workerId": "W7",
        "assignmentId": "A5",
        "hitId": "H1",
        "turkSubmitTo": "https://workersandbox.mturk.com",
    }
    response = client.get(entry(study), params)
    assert "annotation/consent.html" in _templates(response)
    rater = Rater.objects.get()
    assert (rater.source, rater.external_id) == ("mturk", "W7")
    assert rater.platform == {
        "assignment_id": "A5",
        "hit_id": "H1",
        "turk_submit_to": "https://workersandbox.mturk.com",
    }


def test_anonymous_link_registers_on_consent_and_resumes_by_cookie_only(client, study):
    # Opening the link (a person, or a link preview) writes nothing: the consent page.
    for _ in range(2):
        page = client.get(entry(study))
        assert "annotation/consent.html" in _templates(page)
    assert Rater.objects.count() == 0 and Session.objects.count() == 0
    # Declining leaves nothing behind either.
    declined = client.post(f"{entry(study)}consent", {"action": "decline", "new_visitor": "1"})
    assert "annotation/declined.html" in _templates(declined)
    assert Rater.objects.count() == 0
    # Agreeing registers the rater, with consent, and sets the study cookie.
    agreed = client.post(f"{entry(study)}consent", {"action": "agree", "new_visitor": "1"})
    assert agreed.status_code == 302 and rater_api.RATER_COOKIE in agreed.cookies
    rater = Rater.objects.get()
    assert rater.source == "anonymous" and rater.consented_at is not None
    assert Session.objects.get(rater=rater).stage == "instructions"
    assert "annotation/instructions.html" in _templates(client.get(entry(study)))
    assert Rater.objects.count() == 1  # the cookie brings them back
    other = Client()  # another browser without the cookie is another rater, once it agrees
    other.get(entry(study))
    other.post(f"{entry(study)}consent", {"action": "agree", "new_visitor": "1"})
    assert Rater.objects.count() == 2


def test_a_crowd_rater_without_their_cookie_is_not_turned_into_a_stranger(client, study):
    """A Prolific rater's consent page has no new-visitor mark: if their cookie is lost
    on the way, the consent post explains instead of registering an anonymous rater
    (which would lose their platform id and their payment)."""
    client.get(entry(study) + "?PROLIFIC_PID=P-1&STUDY_ID=S&SESSION_ID=X")
    cookieless = Client()
    response = cookieless.post(f"{entry(study)}consent", {"action": "agree"})
    assert response.status_code == 403 and "could not recognise you" in response.content.decode()
    assert list(Rater.objects.values_list("source", flat=True)) == ["prolific"]


def test_returning_rater_resumes_on_the_same_stimulus_by_id_and_by_cookie(client, study):
    rater, claim = rating_rater(client, study, "back")
    # The same Prolific id in a fresh browser (no cookie): same rater, session, image.
    other_browser = Client()
    response = other_browser.get(entry(study), {"PROLIFIC_PID": "back"})
    assert response.context["stimulus"].pk == claim.stimulus_id
    assert Rater.objects.count() == 1 and Session.objects.count() == 1
    # The cookie alone (plain link, e.g. after a reload without parameters).
    assert client.get(entry(study)).context["stimulus"].pk == claim.stimulus_id
    nxt = client.get(f"{entry(study)}next").json()
    assert nxt["next"]["step"] == "rate" and nxt["next"]["stimulus"]["id"] == claim.stimulus_id
    assert Claim.objects.count() == 1


@pytest.mark.parametrize(
    "status, text",
    [("draft", "not started yet"), ("paused", "paused"), ("closed", "closed")],
)
def test_unavailable_studies_show_a_clear_page(client, study, status, text):
    study.status = status
    study.save()
    response = client.get(entry(study), {"PROLIFIC_PID": "x"})
    assert response.status_code == 200 and text in response.content.decode()
    assert not Rater.objects.exists()


@pytest.mark.parametrize("status", ["closed", "paused"])
def test_a_rater_the_study_closes_on_midway_gets_the_no_work_code(client, study, status):
    """Closed before they finished, a crowd worker needs a code to be paid for what
    they did: the study's no-work code and the way back. Paused, they come back."""
    from tests.factories import StudyOutcomeFactory, client_at_rating

    StudyOutcomeFactory(study=study, kind="no_work", code="NW-77", platform="")
    client_at_rating(client, study, "midway")
    study.status = status
    study.save()
    html = client.get(entry(study), {"PROLIFIC_PID": "midway"}).content.decode()
    if status == "closed":
        assert 'id="stopped"' in html and "NW-77" in html
        assert "ratings you gave are kept" in html
    else:
        assert "paused" in html and "NW-77" not in html and 'id="stopped"' not in html
    # A visitor who never took part gets the plain page, with no code.
    stranger = client.__class__().get(entry(study), {"PROLIFIC_PID": "new"})
    assert "NW-77" not in stranger.content.decode()


def test_unknown_study_is_404(client):
    assert client.get("/s/nope/").status_code == 404
    assert post_json(client, "/s/nope/submit", {}).json()["error"] == "unknown_study"


# --- Stage flow --------------------------------------------------------------------------


def test_consent_instructions_training_rating_completion(client, study):
    StimulusFactory(study=study, role="training", expected_low=70, expected_high=90)
    StimulusFactory(study=study, role="training")  # no reference answer
    page = client.get(entry(study), {"PROLIFIC_PID": "flow", "SESSION_ID": "s1"})
    assert "annotation/consent.html" in _templates(page)
    assert "voluntary" in page.content.decode()  # the default consent text

    response = client.post(f"{entry(study)}consent", {"action": "agree"})
    assert response.status_code == 302 and response["Location"] == entry(study)
    page = client.get(entry(study))
    assert "annotation/instructions.html" in _templates(page)
    html = page.content.decode()
    for dim in study.dimensions:
        assert dim.label in html and dim.definition in html
    for word in ("Overall", "Technical perspective", "Rationality perspective", "Excellent"):
        assert word in html
    assert html.count('class="examples"') == 1 and "Experts: around 80" in html
    # One example has no reference answer: none is promised for all of them.
    assert "see how experts rated" not in html and "practice answers do not count" in html

    client.post(f"{entry(study)}instructions")
    page = client.get(entry(study))
    assert "annotation/rate.html" in _templates(page) and page.context["mode"] == "training"
    assert "Practice: this answer does not count" in page.content.decode()
    first = page.context["stimulus"]
    assert first.role == "training"
    answer = post_json(
        client,
        f"{entry(study)}training",
        {"stimulus": first.pk, "scores": GOOD, "client_id": str(uuid.uuid4())},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert "around 80" in body["feedback"]["message"] and body["feedback"]["yours"] == 70
    assert body["progress"] == {"done": 1, "planned": 2} and body["next"]["step"] == "train"
    second = body["next"]["stimulus"]["id"]
    answer = post_json(client, f"{entry(study)}training", {"stimulus": second, "scores": GOOD})
    assert "no reference answer" in answer.json()["feedback"]["message"]
    assert answer.json()["next"] == {"step": "page", "url": entry(study)}
    assert not Rating.objects.exists()  # training answers are not test data
    rater = Rater.objects.get()
    assert rater.training_done_at is not None
    assert client.session[f"training:{rater.pk}"]["answers"].keys() == {
        str(first.pk),
        str(second),
    }

    page = client.get(entry(study))
    assert page.context["mode"] == "rating"
    stimulus_id = page.context["stimulus"].pk
    steps = []
    for _ in range(3):
        response = submit(client, study, stimulus_id)
        assert response.status_code == 201
        steps.append(response.json())
        if response.json()["next"]["step"] == "rate":
            stimulus_id = response.json()["next"]["stimulus"]["id"]
    assert [s["progress"]["done"] for s in steps] == [1, 2, 3]
    assert steps[-1]["next"] == {"step": "done", "url": entry(study)}
    assert Rating.objects.filter(rater=rater).count() == 3

    done = client.get(entry(study))
    assert "annotation/completion.html" in _templates(done)
    html = done.content.decode()
    assert "CODE42" in html and f"{PROLIFIC_DONE}?cc=CODE42" in html
    rater.refresh_from_db()
    assert rater.status == "completed"
    # Coming back after the end shows the code again and starts nothing new.
    again = Client().get(entry(study), {"PROLIFIC_PID": "flow"})
    assert "annotation/completion.html" in _templates(again)
    assert Session.objects.count() == 1


def test_without_training_items_instructions_lead_to_rating(client, study):
    client.get(entry(study), {"PROLIFIC_PID": "nt"})
    client.post(f"{entry(study)}consent", {"action": "agree"})
    page = client.get(entry(study))
    assert "Start rating" in page.content.decode()
    client.post(f"{entry(study)}instructions")
    page = client.get(entry(study))
    assert page.context["mode"] == "rating"
    assert Rater.objects.get().sessions.get().stage == "rating"


def test_decline_records_no_consent_and_asks_again_later(client, study):
    client.get(entry(study), {"PROLIFIC_PID": "no"})
    response = client.post(f"{entry(study)}consent", {"action": "decline"})
    assert response.status_code == 200 and "annotation/declined.html" in _templates(response)
    assert Rater.objects.get().consented_at is None
    assert Session.objects.get().stage == "consent"
    assert "annotation/consent.html" in _templates(client.get(entry(study)))


def test_posts_without_the_cookie_explain_instead_of_failing(study):
    response = Client().post(f"{entry(study)}consent", {"action": "agree"})
    assert response.status_code == 403
    assert "could not recognise you" in response.content.decode()


def test_rate_page_sliders_start_untouched_and_read_the_protocol(client, study):
    rater, claim = rating_rater(client, study)
    html = client.get(entry(study)).content.decode()
    assert html.count('type="range"') == 3
    assert html.count('class="slider untouched"') == 3
    assert html.index("Overall naturalness") < html.index("Technical naturalness")
    assert html.index("Technical naturalness") < html.index("Rationality")
    assert 'aria-valuetext="not rated yet"' in html
    assert f'width="{claim.stimulus.width}" height="{claim.stimulus.height}"' in html
    assert '<script id="rate-config" type="application/json">' in html
    assert "<script>" not in html  # no inline script: a CSP will forbid them
    config = client.get(entry(study)).context["config"]
    assert config["min_view_seconds"] == 0.5 and config["dimensions"] == list(GOOD)
    assert config["stimulus"]["id"] == claim.stimulus_id
    assert "role" not in config["stimulus"]  # gold items must not give themselves away


def test_acr5_scale_has_five_integer_steps(client):
    study = StudyFactory(slug="acr", protocol="overall", scale="acr5")
    StimulusFactory(study=study)
    rating_rater(client, study)
    html = client.get(entry(study)).content.decode()
    assert 'min="1" max="5" step="1" value="3"' in html
    assert all(w in html for w in ("Bad", "Poor", "Fair", "Good", "Excellent"))
    claim = Claim.objects.get()
    assert submit(client, study, claim.stimulus_id, {"overall": 3.5}).status_code == 400
    assert submit(client, study, claim.stimulus_id, {"overall": 4}).status_code == 201


# --- Completion targets ------------------------------------------------------------------


def _finished_rater(study: Study, **rater_fields) -> Rater:
    rater = Rater.objects.create(study=study, status="completed", **rater_fields)
    return rater


@pytest.mark.parametrize(
    "url, source, expected",
    [
        (PROLIFIC_DONE, "prolific", f"{PROLIFIC_DONE}?cc=CODE42"),
        (f"{PROLIFIC_DONE}?cc=OWN", "prolific", f"{PROLIFIC_DONE}?cc=OWN"),
        (f"{PROLIFIC_DONE}?x=1", "prolific", f"{PROLIFIC_DONE}?x=1&cc=CODE42"),
        ("https://example.org/thanks", "anonymous", "https://example.org/thanks"),
    ],
)
def test_completion_links(study, url, source, expected):
    from annotation.rater_flow import completion_target

    study.completion_url = url
    target = completion_target(study, _finished_rater(study, source=source, external_id="e"))
    assert target == {"method": "get", "url": expected, "label": target["label"]}


def test_completion_without_url_has_no_link(client, study):
    study.completion_url = ""
    study.save()
    rater = _finished_rater(study)
    client.cookies[rater_api.RATER_COOKIE] = rater.token
    html = client.get(entry(study)).content.decode()
    assert "CODE42" in html and 'id="finish"' not in html


def test_mturk_completion_posts_to_external_submit(client, study):
    study.completion_url = ""
    study.save()
    platform = {"assignment_id": "A5", "turk_submit_to": "https://www.mturk.com"}
    rater = _finished_rater(study, source="mturk", external_id="W", platform=platform)
    client.cookies[rater_api.RATER_COOKIE] = rater.token
    html = client.get(entry(study)).content.decode()
    assert 'action="https://www.mturk.com/mturk/externalSubmit"' in html
    assert 'name="assignmentId" value="A5"' in html
    # A turkSubmitTo pointing elsewhere is never used as a form target.
    from annotation.rater_flow import completion_target

    rater.platform["turk_submit_to"] = "https://evil.example"
    assert completion_target(study, rater) is None


# --- Submissions ---------------------------------------------------------------------------


def test_submit_then_replay_answers_201_then_200(client, study):
    rater, claim = rating_rater(client, study)
    cid = uuid.uuid4()
    first = submit(client, study, claim.stimulus_id, client_id=cid)
    assert first.status_code == 201
    body = first.json()
    assert body["created"] is True and body["rating"]["client_id"] == str(cid)
    assert body["progress"] == {"done": 1, "planned": 3}
    nxt = body["next"]
    assert nxt["step"] == "rate" and nxt["stimulus"]["id"] != claim.stimulus_id
    assert set(nxt["stimulus"]) == {"id", "image_url", "width", "height"}
    again = submit(client, study, claim.stimulus_id, client_id=cid)
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["next"]["stimulus"]["id"] == nxt["stimulus"]["id"]  # same claim
    assert Rating.objects.count() == 1


RAW_NAN = '{"overall": NaN, "technical": 60, "rationality": 80}'
RAW_INF = '{"overall": Infinity, "technical": 60, "rationality": 80}'


@pytest.mark.parametrize(
    "scores, field, code",
    [
        ({"technical": 60, "rationality": 80}, "overall", "invalid_scores"),
        ({**GOOD, "overall": 101}, "overall", "invalid_scores"),
        ({**GOOD, "overall": -1}, "overall", "invalid_scores"),
        (
            {**GOOD, "overall": float("nan")},
            "overall",
            "not_finite",
        ),  # json.dumps writes the NaN token
        ({**GOOD, "overall": "NaN"}, "overall", "invalid_scores"),
        ({**GOOD, "overall": float("inf")}, "overall", "not_finite"),
        # Out of 8-byte range, or too long to convert: named like the others.
        ({**GOOD, "overall": 2**63}, "overall", "number_out_of_range"),
        ({**GOOD, "technical": 10**40}, "technical", "number_out_of_range"),
        ({**GOOD, "overall": "abc"}, "overall", "invalid_scores"),
        ({**GOOD, "sharpness": 50}, "sharpness", "invalid_scores"),
        ([70, 60, 80], "scores", "invalid_scores"),
        (None, "scores", "invalid_scores"),
    ],
)
def test_bad_scores_refused_with_a_message_and_nothing_written(client, study, scores, field, code):
    rater, claim = rating_rater(client, study)
    before = Rating.objects.count()
    body = {"stimulus": claim.stimulus_id, "scores": scores, "client_id": str(uuid.uuid4())}
    body["viewing_seconds"] = 3
    response = post_json(client, f"{entry(study)}submit", json.dumps(body))
    assert response.status_code == 400
    error = response.json()
    # NaN and infinities are refused by the JSON reader itself (studyweb.boundary).
    assert error["error"] == code and field in error["fields"]
    assert error["detail"]
    assert Rating.objects.count() == before
    assert Claim.objects.filter(pk=claim.pk).exists()  # kept for a corrected retry


@pytest.mark.parametrize("raw", [RAW_NAN, RAW_INF])
def test_nan_and_infinity_tokens_in_raw_json(client, study, raw):
    rater, claim = rating_rater(client, study)
    body = (
        f'{{"stimulus": {claim.stimulus_id}, "scores": {raw}, '
        f'"client_id": "{uuid.uuid4()}", "viewing_seconds": 3}}'
    )
    response = post_json(client, f"{entry(study)}submit", body)
    assert response.status_code == 400
    assert response.json()["fields"]["overall"] == "must be a finite number"
    assert not Rating.objects.exists()


@pytest.mark.parametrize(
    "raw, code",
    [
        ("{not json", "malformed_json"),
        ("", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        ("[1, 2, 3]", "not_an_object"),
        ('"a string"', "not_an_object"),
        ("42", "not_an_object"),
        ("null", "not_an_object"),
    ],
)
def test_malformed_or_non_object_bodies(client, study, raw, code):
    rating_rater(client, study)
    response = post_json(client, f"{entry(study)}submit", raw)
    assert response.status_code == 400 and response.json()["error"] == code
    assert not Rating.objects.exists()


@pytest.mark.parametrize(
    "stimulus, status, code",
    [("7", 400, "invalid_stimulus"), (None, 400, "invalid_stimulus"), (10**9, 404, None)],
)
def test_bad_stimulus_ids(client, study, stimulus, status, code):
    rating_rater(client, study)
    response = submit(client, study, stimulus)
    assert response.status_code == status
    assert response.json()["error"] == (code or "unknown_stimulus")
    assert not Rating.objects.exists()


def test_bad_client_id_and_viewing_time(client, study):
    rater, claim = rating_rater(client, study)
    assert submit(client, study, claim.stimulus_id, client_id="nope").status_code == 400
    body = {"stimulus": claim.stimulus_id, "scores": GOOD, "client_id": str(uuid.uuid4())}
    response = post_json(client, f"{entry(study)}submit", {**body, "viewing_seconds": "3"})
    assert response.status_code == 400 and "viewing_seconds" in response.json()["fields"]
    assert not Rating.objects.exists()


def test_replayed_id_with_different_scores_is_refused(client, study):
    rater, claim = rating_rater(client, study)
    cid = uuid.uuid4()
    assert submit(client, study, claim.stimulus_id, client_id=cid).status_code == 201
    response = submit(client, study, claim.stimulus_id, {**GOOD, "overall": 5}, client_id=cid)
    assert response.status_code == 409 and response.json()["error"] == "replay_mismatch"
    assert Rating.objects.get().overall == 70


def test_foreign_tokens_are_refused(client, study):
    study.ratings_per_stimulus = 1  # so the intruder below is never given the same image
    study.session_size = 2  # places for both: two sessions of 2 on 4 images
    study.save()
    rater, claim = rating_rater(client, study, "owner")
    before = Rating.objects.count()
    # A rater of another study: unknown here.
    elsewhere = Rater.objects.create(study=StudyFactory(slug="other"))
    stranger = Client()
    stranger.cookies[rater_api.RATER_COOKIE] = elsewhere.token
    response = submit(stranger, study, claim.stimulus_id)
    assert response.status_code == 403 and response.json()["error"] == "unknown_rater"
    # No token at all.
    assert submit(Client(), study, claim.stimulus_id).status_code == 403
    # Another rater of this study cannot rate the owner's claimed image.
    other = Client()
    rating_rater(other, study, "intruder")
    assert Claim.objects.get(rater__external_id="intruder").stimulus_id != claim.stimulus_id
    response = submit(other, study, claim.stimulus_id)
    assert response.status_code == 409 and response.json()["error"] == "no_claim"
    assert Rating.objects.count() == before


def test_expired_claim_given_away_is_refused(client, study):
    study.ratings_per_stimulus = 1
    # Room for every stimulus in one session: the fast rater must reach the freed one.
    study.session_size = study.stimuli.filter(role="test").count() + 1
    study.save()
    rater, claim = rating_rater(client, study, "slow")
    Claim.objects.filter(pk=claim.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    # The slow rater holds every place (admission would turn a second rater away):
    # a rater put past admission, as one whose places were freed would be.
    fast, session = rater_past_places(study, "fast")
    while (c := assignment.claim_next(session=session)) and c.stimulus_id != claim.stimulus_id:
        services.rating_submit(
            rater=fast,
            stimulus_id=c.stimulus_id,
            scores=GOOD,
            client_id=uuid.uuid4(),
            viewing_seconds=3,
        )
    assert c is not None  # the fast rater now holds the slow rater's old image
    before = Rating.objects.count()
    response = submit(client, study, claim.stimulus_id)
    assert response.status_code == 409 and response.json()["error"] == "claim_expired"
    assert "given to another rater" in response.json()["detail"]
    assert Rating.objects.count() == before


def test_excluded_rater_sees_a_polite_end(client, study):
    rater, claim = rating_rater(client, study)
    Rater.objects.filter(pk=rater.pk).update(status="excluded", status_reason="gold")
    response = client.get(entry(study))
    assert response.status_code == 200 and "annotation/ended.html" in _templates(response)
    assert "participation has ended" in response.content.decode()
    assert "gold" not in response.content.decode()  # the reason is for researchers
    refused = submit(client, study, claim.stimulus_id)
    assert refused.status_code == 403 and refused.json()["error"] == "rater_excluded"
    assert not Rating.objects.exists()


def test_gold_failure_ends_the_session_from_the_submit_answer(client, study):
    study.gold_rate = 0.5
    study.gold_fail_limit = 1
    study.save()
    StimulusFactory(study=study, role="gold", expected_low=80, expected_high=100)
    rater, claim = rating_rater(client, study)
    response = submit(client, study, claim.stimulus_id)
    gold_id = response.json()["next"]["stimulus"]["id"]  # every 2nd item is gold at 0.5
    response = submit(client, study, gold_id, {**GOOD, "overall": 10})
    assert response.status_code == 201
    assert response.json()["next"] == {"step": "ended", "url": entry(study)}
    assert Session.objects.get().stage == "stopped"
    assert "annotation/ended.html" in _templates(client.get(entry(study)))


def test_break_every_n_items_then_next_resumes(client, study):
    study.break_every = 2
    study.session_size = 3
    study.save()
    rater, claim = rating_rater(client, study)
    first = submit(client, study, claim.stimulus_id).json()
    assert first["next"]["step"] == "rate"
    second = submit(client, study, first["next"]["stimulus"]["id"]).json()
    assert second["next"]["step"] == "break" and not Claim.objects.exists()
    assert 0 < second["next"]["seconds_left"] <= rater_flow.BREAK_SECONDS
    nxt = client.get(f"{entry(study)}next").json()  # during the break: the break again
    assert nxt["next"]["step"] == "break" and not Claim.objects.exists()
    Session.objects.update(break_until=timezone.now())  # the break is over
    nxt = client.get(f"{entry(study)}next").json()
    assert nxt["progress"] == {"done": 2, "planned": 3} and nxt["next"]["step"] == "rate"


def test_header_token_works_without_cookie_or_csrf(client, study):
    rater, claim = rating_rater(client, study)
    script = Client(enforce_csrf_checks=True)
    response = submit(script, study, claim.stimulus_id, **{"X-Rater-Token": rater.token})
    assert response.status_code == 201


def test_cookie_authentication_needs_the_csrf_token(study):
    browser = Client(enforce_csrf_checks=True)
    browser.get(entry(study), {"PROLIFIC_PID": "csrf"})
    rater = Rater.objects.get()
    services.session_advance(session=rater.sessions.get(), stage=Session.Stage.RATING)
    page = browser.get(entry(study))
    stimulus_id = page.context["stimulus"].pk
    refused = submit(browser, study, stimulus_id)
    assert refused.status_code == 403 and refused.json()["error"] == "csrf_failed"
    token = page.context["csrf_token"]
    assert submit(browser, study, stimulus_id, **{"X-CSRFToken": str(token)}).status_code == 201


def test_endpoints_answer_json_for_wrong_methods_and_stages(client, study):
    rater, claim = rating_rater(client, study)
    response = client.get(f"{entry(study)}submit")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
    wrong = post_json(client, f"{entry(study)}training", {"stimulus": claim.stimulus_id})
    assert wrong.status_code == 409 and wrong.json()["error"] == "wrong_stage"


def test_training_answers_are_checked(client, study):
    item = StimulusFactory(study=study, role="training", expected_low=10, expected_high=30)
    client.get(entry(study), {"PROLIFIC_PID": "tr"})
    client.post(f"{entry(study)}consent", {"action": "agree"})
    client.post(f"{entry(study)}instructions")
    url = f"{entry(study)}training"
    bad = post_json(client, url, {"stimulus": item.pk, "scores": {**GOOD, "overall": 101}})
    assert bad.status_code == 400 and "overall" in bad.json()["fields"]
    test_item = study.stimuli.filter(role="test").first()
    unknown = post_json(client, url, {"stimulus": test_item.pk, "scores": GOOD})
    assert unknown.status_code == 404
    assert post_json(client, url, "[]").json()["error"] == "not_an_object"
    assert Session.objects.get().stage == "training"


def test_expert_answers_are_promised_when_every_example_has_one(client, study):
    StimulusFactory(study=study, role="training", expected_low=70, expected_high=90)
    client.get(entry(study), {"PROLIFIC_PID": "ref", "SESSION_ID": "s1"})
    client.post(f"{entry(study)}consent", {"action": "agree"})
    html = client.get(entry(study)).content.decode()
    assert "see how experts rated it" in html and "do not count" not in html
    client.post(f"{entry(study)}instructions")
    page = client.get(entry(study)).content.decode()
    assert "Practice: see how experts rated these" in page
