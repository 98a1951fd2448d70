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
    ("a", "post", "/api/v1/studies/", {**STUDY, "slug": "Bad"}, "json", "slug"),
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
        {**STUDY, "outcomes": [{"kind": "no_work", "code": "N", "redirect_url": "javascript:x"}]},
        "json",
        "outcomes",
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
    (
        "a",
        "get",
        "/api/v1/studies/bad/agreement/?model_version=sharp&n_boot=10000",
        None,
        "json",
        "n_boot",
    ),
    (
        "a",
        "get",
        "/api/v1/studies/bad/agreement/?model_version=sharp&analysis=abc",
        None,
        "json",
        "analysis",
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


# --- The hostile-input catalogue, generated (issue 15) ----------------------------------
# Over every operation of the OpenAPI schema and every rater endpoint: control
# characters in paths, query parameters, headers, cookies, form fields and JSON strings;
# JSON nested too deep; integers of thousands of digits and 1e400 written out; NaN;
# a list where a string is expected; strings over their maximum length; integers that
# would wrap PostgreSQL's 4-byte integers; bodies over MAX_REQUEST_BYTES. Every case
# answers a JSON 4xx with a code, and no table changes.

import json as _json  # noqa: E402
from urllib.parse import quote  # noqa: E402

from drf_spectacular.generators import SchemaGenerator  # noqa: E402
from drf_spectacular.renderers import OpenApiJsonRenderer  # noqa: E402

from annotation import services  # noqa: E402

SCHEMA = _json.loads(
    OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True))
)
NUL = "a\x00b"
DEEP = "[" * 100_000 + "]" * 100_000
HUGE_INT = "1" + "0" * 5000
INT_1E400 = "1" + "0" * 400 + ".0"
# What each path parameter names in the fixture (an existing object where there is one,
# so the hostile value reaches the body's validation, not a 404).
PATH_VALUES = {
    "slug": "bad",
    "study_slug": "bad",
    "name": "sharp",
    "fmt": "json",
    "id": "1",
    "job_id": "1",
}


def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        schema = SCHEMA["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _path(template: str, hostile: str | None = None) -> str:
    path = template
    first = True
    for name, value in PATH_VALUES.items():
        token = "{" + name + "}"
        if token in path:
            if hostile is not None and first:
                value, first = hostile, False
            path = path.replace(token, quote(value, safe=""))
    return path


def _operations():
    for template, item in SCHEMA["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield template, method, op


def _generated_api_cases():
    """(id, method, path, raw body or None, content type, extra headers, status or None)."""
    cases = []
    for template, method, op in _operations():
        oid = op["operationId"]
        if "{" in template:
            cases.append((f"{oid}-path-nul", method, _path(template, NUL), None, None, {}, 400))
        for param in op.get("parameters", []):
            if param["in"] == "query":
                path = f"{_path(template)}?{param['name']}={quote(NUL)}"
                cases.append(
                    (f"{oid}-query-{param['name']}-nul", method, path, None, None, {}, 400)
                )
        cases.append(
            (f"{oid}-header-nul", method, _path(template), None, None, {"HTTP_X_TRACE": NUL}, 400)
        )
        content = op.get("requestBody", {}).get("content", {})
        path = _path(template)
        if "multipart/form-data" in content:
            form = _resolve(content["multipart/form-data"]["schema"]).get("properties", {})
            text = next(
                k
                for k, v in form.items()
                if _resolve(v).get("type") == "string" and not _resolve(v).get("readOnly")
            )
            cases.append((f"{oid}-form-nul", method, path, {text: NUL}, "multipart", {}, 400))
        if "application/json" not in content:
            continue
        body = _resolve(content["application/json"]["schema"])
        props = {
            k: _resolve(v) for k, v in body.get("properties", {}).items() if not v.get("readOnly")
        }
        first = next(iter(props), "x")
        for label, raw, expected in (
            ("deep", f'{{"{first}": {DEEP}}}', 400),
            ("huge-int", f'{{"{first}": {HUGE_INT}}}', 400),
            ("1e400", f'{{"{first}": {INT_1E400}}}', 400),
            ("nan", f'{{"{first}": NaN}}', 400),
            ("nul-key", _json.dumps({NUL: 1}), 400),
            ("not-utf8", b'{"x": "\xff"}', 400),
        ):
            cases.append((f"{oid}-{label}", method, path, raw, "json", {}, expected))
        for name, prop in props.items():
            kind = prop.get("type")
            if kind == "string" and "enum" not in prop:
                cases.append(
                    (f"{oid}-{name}-nul", method, path, _json.dumps({name: NUL}), "json", {}, 400)
                )
                cases.append(
                    (f"{oid}-{name}-list", method, path, _json.dumps({name: []}), "json", {}, 400)
                )
                if "maxLength" in prop:
                    long = "x" * (prop["maxLength"] + 1)
                    cases.append(
                        (
                            f"{oid}-{name}-long",
                            method,
                            path,
                            _json.dumps({name: long}),
                            "json",
                            {},
                            400,
                        )
                    )
            if kind == "integer":
                for value in (2**31, 2**32 + 5, 2**40, 2**64):
                    raw = _json.dumps({name: value})
                    cases.append((f"{oid}-{name}-{value}", method, path, raw, "json", {}, 400))
            if kind == "object":
                raw = _json.dumps({name: {"ci": []}})
                cases.append((f"{oid}-{name}-object-list", method, path, raw, "json", {}, 400))
    return cases


RATER_POST = ("start", "submit", "training")
RATER_BODIES = [
    ("deep", DEEP),
    ("huge-int", f'{{"consent": true, "stimulus": {HUGE_INT}}}'),
    ("1e400", f'{{"consent": true, "stimulus": 1, "viewing_seconds": {INT_1E400}}}'),
    ("nan", '{"consent": true, "stimulus": 1, "viewing_seconds": NaN}'),
    ("source-list", '{"consent": true, "source": []}'),
    ("source-object", '{"consent": true, "source": {}}'),
    ("external-id-nul", _json.dumps({"consent": True, "source": "prolific", "external_id": NUL})),
    ("platform-long-key", _json.dumps({"consent": True, "platform": {"k" * 500_000: "v"}})),
    ("platform-nul", _json.dumps({"consent": True, "platform": {"study_id": NUL}})),
    ("scores-nul-key", _json.dumps({"stimulus": 1, "scores": {NUL: 50}})),
    ("client-id-nul", _json.dumps({"stimulus": 1, "client_id": NUL, "scores": {}})),
    ("not-utf8", b'{"consent": true, "source": "\xff"}'),
]


def _generated_rater_cases():
    """(id, method, path, raw body or None, token where, extra, status or None)."""
    cases = []
    for name in ("start", "submit", "training", "next", "finish"):
        method = "get" if name == "next" else "post"
        prefixes = [("api", f"/api/v1/rater/{{slug}}/{name}")]
        if name in ("submit", "training", "next"):
            prefixes.append(("page", f"/s/{{slug}}/{name}"))
        for where, template in prefixes:
            path = template.replace("{slug}", "bad")
            tag = f"{where}-{name}"
            cases.append(
                (
                    f"{tag}-path-nul",
                    method,
                    template.replace("{slug}", quote(NUL)),
                    None,
                    "ok",
                    {},
                    400,
                )
            )
            cases.append(
                (
                    f"{tag}-query-nul",
                    method,
                    f"{path}?PROLIFIC_PID={quote(NUL)}",
                    None,
                    "ok",
                    {},
                    400,
                )
            )
            cases.append((f"{tag}-token-nul", method, path, None, "nul", {}, 400))
            cases.append(
                (f"{tag}-agent-nul", method, path, None, "ok", {"HTTP_USER_AGENT": NUL}, 400)
            )
            if name in RATER_POST:
                for label, raw in RATER_BODIES:
                    cases.append((f"{tag}-{label}", method, path, raw, "ok", {}, None))
                big = _json.dumps({"consent": True, "pad": "y" * (1024 * 1024)})
                cases.append((f"{tag}-too-large", method, path, big, "ok", {}, 413))
    return cases


GENERATED_API = _generated_api_cases()
GENERATED_RATER = _generated_rater_cases()


def _assert_json_refusal(response, expected):
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    if expected is not None:
        assert response.status_code == expected, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    data = response.json()
    assert set(data) >= {"error", "detail", "fields"}, data
    assert isinstance(data["error"], str) and data["error"], data


@pytest.mark.parametrize(
    "case_id, method, path, body, fmt, extra, expected",
    GENERATED_API,
    ids=[c[0] for c in GENERATED_API],
)
def test_generated_hostile_api_input(
    ctx, rater_token, case_id, method, path, body, fmt, extra, expected
):
    before = counts()
    client = ctx["admin"]
    if path.startswith("/api/v1/rater/"):  # the rater endpoints take a rater's token
        extra = {"HTTP_X_RATER_TOKEN": rater_token, **extra}
    if fmt == "multipart":
        response = getattr(client, method)(path, body, format="multipart", **extra)
    elif body is not None:
        response = getattr(client, method)(path, body, content_type="application/json", **extra)
    else:
        response = getattr(client, method)(path, **extra)
    _assert_json_refusal(response, expected)
    assert counts() == before


@pytest.fixture
def rater_token(ctx):
    from annotation.models import Study

    rater, _ = services.rater_enter(study=Study.objects.get(slug="bad"), source="anonymous")
    return rater.token


@pytest.mark.parametrize(
    "case_id, method, path, body, token, extra, expected",
    GENERATED_RATER,
    ids=[c[0] for c in GENERATED_RATER],
)
def test_generated_hostile_rater_input(
    rater_token, case_id, method, path, body, token, extra, expected
):
    before = counts()
    value = rater_token if token == "ok" else NUL
    client = APIClient()
    if path.startswith("/s/"):
        client.cookies["rater_token"] = value
        headers = {}
    else:
        headers = {"HTTP_X_RATER_TOKEN": value}
    kwargs = {**headers, **extra}
    if body is not None:
        response = getattr(client, method)(path, body, content_type="application/json", **kwargs)
    else:
        response = getattr(client, method)(path, **kwargs)
    _assert_json_refusal(response, expected)
    assert counts() == before


def test_generated_catalogue_covers_every_operation_and_class():
    operations = {(t, m) for t, m, _ in _operations()}
    assert len(operations) >= 25
    covered = {c[0].rsplit("-path-nul", 1)[0].rsplit("-header-nul", 1)[0] for c in GENERATED_API}
    assert {op["operationId"] for _, _, op in _operations()} <= covered
    ids = " ".join(c[0] for c in GENERATED_API + GENERATED_RATER)
    for kind in (
        "path-nul",
        "query",
        "header-nul",
        "token-nul",
        "form-nul",
        "deep",
        "huge-int",
        "1e400",
        "nan",
        "-list",
        "-long",
        "2147483648",
        "object-list",
        "too-large",
    ):
        assert kind in ids, kind
    assert len(GENERATED_API) + len(GENERATED_RATER) >= 300


def test_form_bodies_that_are_not_utf8_are_refused_not_mangled(ctx, researcher_a):
    """A latin-1 form body sent as UTF-8 (%E9 for é): Django would save U+FFFD in
    its place. Refused on the API (JSON, field "form") and on pages (400), nothing
    changed; the same text in UTF-8, or with its charset named, is taken as meant."""
    from django.test import Client

    from annotation.models import Study

    url = "/api/v1/studies/bad/"
    before = counts()
    refused = ctx["a"].generic(
        "PATCH", url, b"title=%E9t%E9", content_type="application/x-www-form-urlencoded"
    )
    assert refused.status_code == 400 and "form" in refused.json()["fields"], refused.content
    page = Client()
    page.force_login(researcher_a)
    on_page = page.generic(
        "POST",
        "/studies/bad/edit/",
        b"title=%E9t%E9",
        content_type="application/x-www-form-urlencoded",
    )
    assert on_page.status_code == 400 and b"UTF-8" in on_page.content
    assert counts() == before
    utf8 = ctx["a"].generic(
        "PATCH", url, b"title=%C3%A9t%C3%A9", content_type="application/x-www-form-urlencoded"
    )
    assert utf8.status_code == 200 and Study.objects.get(slug="bad").title == "été"
    latin1 = ctx["a"].generic(
        "PATCH",
        url,
        b"title=%E9t%E9!",
        content_type="application/x-www-form-urlencoded; charset=latin-1",
    )
    assert latin1.status_code == 200, latin1.content
    assert Study.objects.get(slug="bad").title == "été!"
