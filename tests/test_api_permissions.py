"""Every API endpoint for every persona: admin, researcher A (owner), researcher B,
a rater of A's study (rater token only), and anonymous."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import services
from scoring.jobs import model_version_register
from tests.factories import StimulusFactory

pytestmark = pytest.mark.django_db

DENIED = {401, 403}
PERSONAS = ("admin", "a", "b", "rater", "anonymous")


@pytest.fixture
def world(admin_user, researcher_a, researcher_b, study_a):
    StimulusFactory.create_batch(3, study=study_a)
    model_version_register(name="sharp", kind="baseline", baseline="sharpness")
    rater, _ = services.rater_enter(study=study_a, source="prolific", external_id="P1")
    clients = {}
    for name, user in (("admin", admin_user), ("a", researcher_a), ("b", researcher_b)):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        clients[name] = client
    rater_client = APIClient()
    rater_client.credentials(HTTP_X_RATER_TOKEN=rater.token)
    clients["rater"] = rater_client
    clients["anonymous"] = APIClient()
    return clients


# (method, path, body, {persona: expected status or set})
MATRIX = [
    ("get", "/api/v1/studies/", None, {"admin": 200, "a": 200, "b": 200}),
    ("get", "/api/v1/studies/study-a/", None, {"admin": 200, "a": 200, "b": 404}),
    ("patch", "/api/v1/studies/study-a/", {"title": "Renamed"}, {"admin": 200, "a": 200, "b": 404}),
    ("post", "/api/v1/studies/study-a/pause/", None, {"admin": 200, "a": 200, "b": 404}),
    ("get", "/api/v1/studies/study-a/progress/", None, {"admin": 200, "a": 200, "b": 404}),
    ("get", "/api/v1/studies/study-a/stimuli/", None, {"admin": 200, "a": 200, "b": 404}),
    (
        "post",
        "/api/v1/studies/",
        {"slug": "new-one", "title": "New"},
        {"admin": 201, "a": 201, "b": 201},
    ),
    ("get", "/api/v1/analyses/", None, {"admin": 200, "a": 200, "b": 200}),
    (
        "post",
        "/api/v1/analyses/",
        {"study": "study-a", "method": "mean"},
        {"admin": 201, "a": 201, "b": 403},
    ),
    ("get", "/api/v1/model-versions/", None, {"admin": 200, "a": 200, "b": 200}),
    (
        "post",
        "/api/v1/model-versions/",
        {"name": "lum", "kind": "baseline", "baseline": "luminance"},
        {"admin": 201, "a": 403, "b": 403},
    ),
    (
        "post",
        "/api/v1/scoring-jobs/",
        {"study": "study-a", "model_version": "sharp"},
        {"admin": {200, 201}, "a": {200, 201}, "b": 403},
    ),
    ("get", "/api/v1/scoring-jobs/", None, {"admin": 200, "a": 200, "b": 200}),
    ("get", "/api/v1/predictions/?study=study-a", None, {"admin": 200, "a": 200, "b": 200}),
    (
        "get",
        "/api/v1/studies/study-a/agreement/?model_version=sharp",
        None,
        {"admin": 409, "a": 409, "b": 403},
    ),
    (
        "get",
        "/api/v1/studies/study-a/export/ratings-csv/",
        None,
        {"admin": 200, "a": 200, "b": 403},
    ),
    ("get", "/api/v1/exports/formats/", None, {"admin": 200, "a": 200, "b": 200}),
]


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(
    "method, path, body, expected", MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX]
)
def test_endpoint_for_persona(
    world, persona, method, path, body, expected, django_capture_on_commit_callbacks
):
    client = world[persona]
    with django_capture_on_commit_callbacks(execute=True):
        response = getattr(client, method)(path, body, format="json")
    want = expected.get(persona, DENIED)
    want = want if isinstance(want, set) else {want}
    assert response.status_code in want, (persona, response.status_code, response.content[:300])


def test_other_researchers_never_see_foreign_rows(world):
    world["a"].post("/api/v1/analyses/", {"study": "study-a", "method": "mean"}, format="json")
    assert world["b"].get("/api/v1/analyses/").json()["count"] == 0
    assert world["b"].get("/api/v1/studies/").json()["count"] == 0
    assert world["b"].get("/api/v1/scoring-jobs/").json()["count"] == 0
    assert world["a"].get("/api/v1/studies/").json()["count"] == 1
    assert world["admin"].get("/api/v1/studies/").json()["count"] == 1


def test_rater_token_reaches_only_its_own_session(world, study_a):
    """The rater endpoints answer the token's rater; never scores of others or MOS."""
    rater_client = world["rater"]
    response = rater_client.get("/s/study-a/next")
    assert response.status_code in (200, 409)
    assert "mos" not in response.content.decode().lower()
    for persona in ("admin", "a", "b", "anonymous"):
        assert world[persona].get("/s/study-a/next").status_code in DENIED
