"""The bad-input catalogue: every case answered 4xx with a JSON error naming the
field, and the database unchanged (row counts of every table asserted)."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.apps import apps
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from scoring.model_scoring.services import model_version_register
from tests.factories import StimulusFactory, StudyFactory, png_bytes

pytestmark = pytest.mark.django_db


def counts() -> dict[str, int]:
    return {
        m._meta.label: m.objects.count()
        for m in apps.get_models()
        if m._meta.app_label in ("annotation", "scoring")
    }


@pytest.fixture
def ctx(admin_user, researcher_a):
    study = StudyFactory(slug="bad", owner=researcher_a, status="open")
    StimulusFactory.create_batch(2, study=study)
    StudyFactory(slug="draft-empty", owner=researcher_a, status="draft")
    model_version_register(name="sharp", kind="baseline", baseline="sharpness")
    clients = {}
    for name, user in (("a", researcher_a), ("admin", admin_user)):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        clients[name] = client
    return clients


def upload(name: str, payload: bytes, **extra):
    file = io.BytesIO(payload)
    file.name = name
    return {"file": file, **extra}


def zip_with(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


STUDY = {"slug": "fresh", "title": "Fresh"}
# (who, method, path, body, format, expected field)
CASES = [
    ("a", "post", "/api/v1/studies/", {**STUDY, "slug": "has spaces"}, "json", "slug"),
    ("a", "post", "/api/v1/studies/", {**STUDY, "slug": "bad"}, "json", "slug"),
    ("a", "post", "/api/v1/studies/", {"slug": "no-title"}, "json", "title"),
    ("a", "post", "/api/v1/studies/", {**STUDY, "protocol": "everything"}, "json", "protocol"),
    ("a", "post", "/api/v1/studies/", {**STUDY, "scale": "acr7"}, "json", "scale"),
    (
        "a",
        "post",
        "/api/v1/studies/",
        {**STUDY, "ratings_per_stimulus": 0},
        "json",
        "ratings_per_stimulus",
    ),
    (
        "a",
        "post",
        "/api/v1/studies/",
        {**STUDY, "ratings_per_stimulus": "many"},
        "json",
        "ratings_per_stimulus",
    ),
    ("a", "post", "/api/v1/studies/", {**STUDY, "gold_rate": 0.9}, "json", "gold_rate"),
    ("a", "post", "/api/v1/studies/", {**STUDY, "gold_rate": "NaN"}, "json", "gold_rate"),
    ("a", "post", "/api/v1/studies/", {**STUDY, "session_size": -1}, "json", "session_size"),
    (
        "a",
        "post",
        "/api/v1/studies/",
        {**STUDY, "min_view_seconds": -3},
        "json",
        "min_view_seconds",
    ),
    (
        "a",
        "post",
        "/api/v1/studies/",
        {**STUDY, "completion_url": "not a url"},
        "json",
        "completion_url",
    ),
    (
        "a",
        "post",
        "/api/v1/studies/",
        {**STUDY, "claim_ttl_seconds": 1},
        "json",
        "claim_ttl_seconds",
    ),
    ("a", "post", "/api/v1/studies/", "[1, 2, 3]", "raw-json", "non_field_errors"),
    ("a", "post", "/api/v1/studies/", "{not json", "raw-json", None),
    ("a", "patch", "/api/v1/studies/bad/", {"protocol": "overall"}, "json", "protocol"),
    ("a", "patch", "/api/v1/studies/bad/", {"slug": "renamed"}, "json", "slug"),
    ("a", "patch", "/api/v1/studies/bad/", {"title": ""}, "json", "title"),
    ("a", "post", "/api/v1/studies/draft-empty/open/", None, "json", "status"),
    ("a", "post", "/api/v1/studies/bad/stimuli/", {}, "multipart", "file"),
    ("a", "post", "/api/v1/studies/bad/stimuli/", "text.png", "upload-text", "file"),
    ("a", "post", "/api/v1/studies/bad/stimuli/", "truncated.png", "upload-truncated", "file"),
    ("a", "post", "/api/v1/studies/bad/stimuli/", "slip.zip", "upload-slip", "file"),
    ("a", "post", "/api/v1/studies/bad/stimuli/", "broken.zip", "upload-broken", "file"),
    ("a", "post", "/api/v1/studies/bad/stimuli/", "x.png", "upload-badrole", "role"),
    ("a", "post", "/api/v1/studies/bad/stimuli/", "x.png", "upload-badcsv", "metadata"),
    ("a", "post", "/api/v1/studies/bad/stimuli/", "big.png", "upload-huge", "file"),
    ("a", "post", "/api/v1/analyses/", {"study": "bad", "method": "median"}, "json", "method"),
    ("a", "post", "/api/v1/analyses/", {"study": "nope", "method": "mean"}, "json", "study"),
    (
        "a",
        "post",
        "/api/v1/analyses/",
        {"study": "bad", "method": "mean", "reject_on": "sometimes"},
        "json",
        "reject_on",
    ),
    (
        "a",
        "post",
        "/api/v1/analyses/",
        {"study": "bad", "method": "mean", "options": {"ci": "wide"}},
        "json",
        "options",
    ),
    (
        "a",
        "post",
        "/api/v1/analyses/",
        {"study": "bad", "method": "mean", "options": ["x"]},
        "json",
        "options",
    ),
    (
        "admin",
        "post",
        "/api/v1/model-versions/",
        {"name": "x", "kind": "baseline", "baseline": "beauty"},
        "json",
        "baseline",
    ),
    (
        "admin",
        "post",
        "/api/v1/model-versions/",
        {"name": "y", "kind": "joint", "checkpoint_path": "/no/such.pth"},
        "json",
        "checkpoint_path",
    ),
    ("admin", "post", "/api/v1/model-versions/", {"name": "z", "kind": "onnx"}, "json", "kind"),
    (
        "admin",
        "post",
        "/api/v1/model-versions/",
        {"name": "sharp", "kind": "baseline", "baseline": "sharpness"},
        "json",
        "name",
    ),
    (
        "admin",
        "post",
        "/api/v1/model-versions/",
        {"name": "bad name!", "kind": "baseline", "baseline": "contrast"},
        "json",
        "name",
    ),
    (
        "a",
        "post",
        "/api/v1/scoring-jobs/",
        {"study": "bad", "model_version": "nope"},
        "json",
        "model_version",
    ),
    (
        "a",
        "post",
        "/api/v1/scoring-jobs/",
        {"study": "nope", "model_version": "sharp"},
        "json",
        "study",
    ),
    (
        "a",
        "post",
        "/api/v1/scoring-jobs/",
        {"study": "bad", "model_version": "sharp", "batch_size": 0},
        "json",
        "batch_size",
    ),
    (
        "a",
        "post",
        "/api/v1/scoring-jobs/",
        {"study": "bad", "model_version": "sharp", "batch_size": 5000},
        "json",
        "batch_size",
    ),
    (
        "a",
        "post",
        "/api/v1/scoring-jobs/",
        {"study": "draft-empty", "model_version": "sharp"},
        "json",
        "study",
    ),
    ("a", "get", "/api/v1/studies/bad/agreement/", None, "json", "model_version"),
    (
        "a",
        "get",
        "/api/v1/studies/bad/agreement/?model_version=nope",
        None,
        "json",
        "model_version",
    ),
    (
        "a",
        "get",
        "/api/v1/studies/bad/agreement/?model_version=sharp&n_boot=lots",
        None,
        "json",
        "n_boot",
    ),
    (
        "a",
        "get",
        "/api/v1/studies/bad/agreement/?model_version=sharp&n_boot=-5",
        None,
        "json",
        "n_boot",
    ),
    ("a", "get", "/api/v1/studies/bad/export/xlsx/", None, "json", "format"),
]


def _request(client, method, path, body, fmt, settings):
    if fmt == "json":
        return getattr(client, method)(path, body, format="json")
    if fmt == "raw-json":
        return getattr(client, method)(path, body, content_type="application/json")
    if fmt == "multipart":
        return client.post(path, body, format="multipart")
    kind = fmt.split("-", 1)[1]
    png = png_bytes()
    payloads = {
        "text": upload("text.png", b"not an image"),
        "truncated": upload("t.png", png_bytes(size=(300, 300))[:-40]),
        "slip": upload("slip.zip", zip_with({"../evil.png": png})),
        "broken": upload("broken.zip", b"PK\x03\x04garbage"),
        "badrole": upload("x.png", png, role="boss"),
        "badcsv": {
            **upload("x.png", png),
            "metadata": _named(b"filename,role\nx.png,teacher\n", "m.csv"),
        },
        "huge": upload("big.png", png + b"\0" * 5000),
    }
    if kind == "huge":
        settings.MAX_IMAGE_BYTES = 2000
    return client.post(path, payloads[kind], format="multipart")


def _named(data: bytes, name: str):
    handle = io.BytesIO(data)
    handle.name = name
    return handle


@pytest.mark.parametrize(
    "who, method, path, body, fmt, field",
    CASES,
    ids=[f"{i:02d}-{c[2]}-{c[5]}" for i, c in enumerate(CASES)],
)
def test_bad_input_is_refused_and_changes_nothing(
    ctx, settings, who, method, path, body, fmt, field
):
    before = counts()
    response = _request(ctx[who], method, path, body, fmt, settings)
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    data = response.json()
    assert set(data) >= {"error", "detail", "fields"}, data
    if field is not None:
        assert field in data["fields"] or field in data["detail"], data
    assert counts() == before


def test_catalogue_has_at_least_forty_cases():
    assert len(CASES) >= 40


def test_oversized_bodies_are_refused(ctx, settings):
    """Request bodies over MAX_REQUEST_BYTES: 4xx, nothing written (API and rater endpoint)."""
    import json

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    before = counts()
    big = {"slug": "huge", "title": "x" * 50_000}
    response = ctx["a"].post("/api/v1/studies/", big, format="json")
    assert 400 <= response.status_code < 500
    rater = APIClient()
    response = rater.post(
        "/api/v1/rater/bad/start",
        json.dumps({"consent": True, "pad": "y" * 50_000}),
        content_type="application/json",
    )
    assert 400 <= response.status_code < 500
    assert counts() == before
