"""Every API endpoint for every persona: admin, researcher A (owner), researcher B,
a rater of A's study (rater token only), and anonymous."""

from __future__ import annotations

import io
import json
import re

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import services
from scoring.model_scoring.services import model_version_register
from tests.factories import StimulusFactory, StudyFactory, png_bytes

pytestmark = pytest.mark.django_db

DENIED = {401, 403}
PERSONAS = ("admin", "a", "b", "rater", "anonymous")


@pytest.fixture
def world(admin_user, researcher_a, researcher_b, study_a):
    from scoring.models import Analysis, ExportJob, ScoringJob

    stimuli = StimulusFactory.create_batch(3, study=study_a)
    StudyFactory(slug="deleteme", owner=researcher_a, status="draft")
    version = model_version_register(name="sharp", kind="baseline", baseline="sharpness")
    rater, _ = services.rater_enter(study=study_a, source="prolific", external_id="P1")
    ids = {
        "analysis": Analysis.objects.create(study=study_a, method="mean", status="done").pk,
        "job": ScoringJob.objects.create(model_version=version, study=study_a, total=3).pk,
        "export": ExportJob.objects.create(study=study_a, format="ratings-csv").pk,
        "stimulus": stimuli[0].pk,
        "rater": rater.pk,
    }
    clients = {}
    for name, user in (("admin", admin_user), ("a", researcher_a), ("b", researcher_b)):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        clients[name] = client
    rater_client = APIClient()
    rater_client.credentials(HTTP_X_RATER_TOKEN=rater.token)
    clients["rater"] = rater_client
    clients["anonymous"] = APIClient()
    clients["ids"] = ids
    return clients


# (method, path, body, {persona: expected status or set})
MATRIX = [
    ("get", "/api/v1/studies/", None, {"admin": 200, "a": 200, "b": 200}),
    ("get", "/api/v1/studies/study-a/", None, {"admin": 200, "a": 200, "b": 404}),
    ("patch", "/api/v1/studies/study-a/", {"title": "Renamed"}, {"admin": 200, "a": 200, "b": 404}),
    ("post", "/api/v1/studies/study-a/pause/", None, {"admin": 200, "a": 200, "b": 404}),
    ("get", "/api/v1/studies/study-a/progress/", None, {"admin": 200, "a": 200, "b": 404}),
    ("get", "/api/v1/studies/study-a/raters/", None, {"admin": 200, "a": 200, "b": 404}),
    ("get", "/api/v1/studies/study-a/shares/", None, {"admin": 200, "a": 200, "b": 404}),
    ("get", "/api/v1/studies/study-a/payment-files/", None, {"admin": 200, "a": 200, "b": 404}),
    (
        "post",
        "/api/v1/studies/study-a/payment-files/",
        {"platform": "prolific", "kind": "approve"},
        {"admin": 201, "a": 201, "b": 404},
    ),
    (
        "post",
        "/api/v1/studies/study-a/shares/",
        {"username": "researcher_b", "level": "view"},
        {"admin": 200, "a": 200, "b": 404},
    ),
    (
        "post",
        "/api/v1/studies/study-a/rater-decisions/",
        {"rater": "{rater}", "action": "exclude", "reason": "bot"},
        {"admin": 201, "a": 201, "b": 404},
    ),
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
        # Another researcher's study is answered as a missing one (no existence oracle).
        {"admin": 201, "a": 201, "b": 400},
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
        {"admin": {200, 201}, "a": {200, 201}, "b": 400},
    ),
    ("get", "/api/v1/scoring-jobs/", None, {"admin": 200, "a": 200, "b": 200}),
    ("get", "/api/v1/predictions/?study=study-a", None, {"admin": 200, "a": 200, "b": 200}),
    (
        "get",
        "/api/v1/studies/study-a/agreement/?model_version=sharp",
        None,
        {"admin": 409, "a": 409, "b": 404},
    ),
    (
        "get",
        "/api/v1/studies/study-a/export/ratings-csv/",
        None,
        {"admin": 200, "a": 200, "b": 404},
    ),
    ("get", "/api/v1/exports/formats/", None, {"admin": 200, "a": 200, "b": 200}),
    (
        "put",
        "/api/v1/studies/study-a/",
        {"slug": "study-a", "title": "Again"},
        {"admin": 200, "a": 200, "b": 404},
    ),
    ("post", "/api/v1/studies/study-a/open/", None, {"admin": 200, "a": 200, "b": 404}),
    ("post", "/api/v1/studies/study-a/close/", None, {"admin": 200, "a": 200, "b": 404}),
    ("delete", "/api/v1/studies/deleteme/", None, {"admin": 204, "a": 204, "b": 404}),
    (
        "get",
        "/api/v1/studies/study-a/stimuli/{stimulus}/",
        None,
        {"admin": 200, "a": 200, "b": 404},
    ),
    ("post", "/api/v1/studies/study-a/stimuli/", "UPLOAD", {"admin": 201, "a": 201, "b": 404}),
    ("get", "/api/v1/analyses/{analysis}/", None, {"admin": 200, "a": 200, "b": 404}),
    ("get", "/api/v1/analyses/{analysis}/results/", None, {"admin": 200, "a": 200, "b": 404}),
    ("get", "/api/v1/analyses/{analysis}/raters/", None, {"admin": 200, "a": 200, "b": 404}),
    ("get", "/api/v1/model-versions/sharp/", None, {"admin": 200, "a": 200, "b": 200}),
    ("get", "/api/v1/scoring-jobs/{job}/", None, {"admin": 200, "a": 200, "b": 404}),
    ("post", "/api/v1/scoring-jobs/{job}/cancel/", None, {"admin": 200, "a": 200, "b": 404}),
    ("get", "/api/v1/exports/", None, {"admin": 200, "a": 200, "b": 200}),
    (
        "post",
        "/api/v1/exports/",
        {"study": "study-a", "format": "ratings-csv"},
        {"admin": 202, "a": 202, "b": 400},
    ),
    ("get", "/api/v1/exports/{export}/", None, {"admin": 200, "a": 200, "b": 404}),
    ("get", "/api/v1/exports/{export}/download/", None, {"admin": 409, "a": 409, "b": 404}),
    # Rater endpoints: only the rater's token opens them (start is the public entry).
    ("get", "/api/v1/rater/study-a/next", None, {"rater": 200}),
    # The token opens finish; with no session started there is nothing to finish (409).
    ("post", "/api/v1/rater/study-a/finish", {}, {"rater": 409}),
    ("post", "/api/v1/rater/study-a/submit", {"stimulus": 0}, {"rater": {400, 404, 409}}),
    ("post", "/api/v1/rater/study-a/training", {}, {"rater": 409}),
    (
        "post",
        "/api/v1/rater/study-a/start",
        {"consent": True},
        {p: 201 for p in ("admin", "a", "b", "rater", "anonymous")} | {"rater": {200, 201}},
    ),
]


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(
    "method, path, body, expected", MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX]
)
def test_endpoint_for_persona(
    world, persona, method, path, body, expected, django_capture_on_commit_callbacks
):
    client = world[persona]
    path = path.format(**world["ids"])
    if isinstance(body, dict):
        body = {k: v.format(**world["ids"]) if isinstance(v, str) else v for k, v in body.items()}
    with django_capture_on_commit_callbacks(execute=True):
        if body == "UPLOAD":
            upload = io.BytesIO(png_bytes((persona.__len__() * 20, 1, 2)))
            upload.name = f"{persona}.png"
            response = client.post(path, {"file": upload}, format="multipart")
        elif path.startswith("/api/v1/rater/") and method == "get":
            response = client.get(path)
        elif path.startswith("/api/v1/rater/"):
            response = getattr(client, method)(
                path, json.dumps(body), content_type="application/json"
            )
        else:
            response = getattr(client, method)(path, body, format="json")
    want = expected.get(persona, DENIED)
    want = want if isinstance(want, set) else {want}
    assert response.status_code in want, (persona, response.status_code, response.content[:300])
    # The schema documents the answer: a client generated from it expects this status.
    documented = _documented(method, path)
    assert str(response.status_code) in documented, (method, path, response.status_code)


_SCHEMA_PATHS = SchemaGenerator().get_schema(request=None, public=True)["paths"]


def _documented(method: str, path: str) -> set[str]:
    """The statuses the OpenAPI schema documents for the operation ``path`` falls under."""
    bare = path.split("?", 1)[0]
    for template, item in _SCHEMA_PATHS.items():
        if re.fullmatch(re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)), bare):
            return set(item[method]["responses"])
    raise AssertionError(f"{method} {path} is not in the schema")


def test_other_researchers_never_see_foreign_rows(world):
    world["a"].post("/api/v1/analyses/", {"study": "study-a", "method": "mean"}, format="json")
    assert world["b"].get("/api/v1/analyses/").json()["count"] == 0
    assert world["b"].get("/api/v1/studies/").json()["count"] == 0
    assert world["b"].get("/api/v1/scoring-jobs/").json()["count"] == 0
    assert world["a"].get("/api/v1/studies/").json()["count"] == 2
    assert world["admin"].get("/api/v1/studies/").json()["count"] == 2


def test_rater_token_reaches_only_its_own_session(world, study_a):
    """The rater endpoints answer the token's rater; never scores of others or MOS."""
    rater_client = world["rater"]
    response = rater_client.get("/s/study-a/next")
    assert response.status_code in (200, 409)
    assert "mos" not in response.content.decode().lower()
    for persona in ("admin", "a", "b", "anonymous"):
        assert world[persona].get("/s/study-a/next").status_code in DENIED


def test_list_filters_narrow_and_refuse_unknown_choices(world, study_a, researcher_a):
    """?study= narrows every job list (exports too); a role or dimension outside its
    set is a 400 on that parameter, not an empty list that reads as "none"."""
    from scoring.models import ExportJob

    other = StudyFactory(slug="other-a", owner=researcher_a)
    ExportJob.objects.create(study=other, format="json")
    a = world["a"]
    assert a.get("/api/v1/exports/").json()["count"] == 2
    narrowed = a.get("/api/v1/exports/?study=other-a").json()
    assert [row["study"] for row in narrowed["results"]] == ["other-a"]
    for url, field in (
        ("/api/v1/studies/study-a/stimuli/?role=tset", "role"),
        (f"/api/v1/analyses/{world['ids']['analysis']}/results/?dimension=overal", "dimension"),
    ):
        refused = a.get(url)
        assert refused.status_code == 400 and field in refused.json()["fields"], refused.content
    assert a.get("/api/v1/studies/study-a/stimuli/?role=test").json()["count"] == 3
