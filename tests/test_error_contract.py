"""The error contract, case by case (issue 15's class 7 and the edges of class 3):
every JSON endpoint refuses as ``{"error", "detail", "fields"}`` with the right status,
never an HTML page, and a refused request changes nothing."""

from __future__ import annotations

import json
import math
import uuid

import pytest
from django.apps import apps
from django.core.cache import cache
from django.test import Client
from rest_framework.authtoken.models import Token

from annotation.models import Rating, Study
from tests.factories import StimulusFactory, StudyFactory, UserFactory

pytestmark = pytest.mark.django_db
GOOD = {"overall": 50, "technical": 40, "rationality": 60}


def counts() -> dict[str, int]:
    return {
        m._meta.label: m.objects.count()
        for m in apps.get_models()
        if m._meta.app_label in ("annotation", "scoring", "auth", "authtoken")
    }


def assert_contract(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error", "detail", "fields"}, body
    assert body["error"] and isinstance(body["detail"], str) and body["detail"]
    if code is not None:
        assert body["error"] == code, body
    return body


@pytest.fixture(autouse=True)
def _clear_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def owner():
    return UserFactory(username="contract-owner", is_staff=True)


@pytest.fixture
def study(owner):
    study = StudyFactory(slug="contract", owner=owner, protocol="perspectives", status="open")
    StimulusFactory.create_batch(3, study=study)
    return study


@pytest.fixture
def api(owner):
    client = Client()
    token = Token.objects.create(user=owner).key
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token}"
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/api/nothing-here/",
        "/api/v1/no-such-resource/",
        "/api/v1/studies/a b/x/y/",
        "/api/%E2%98%83/",
    ],
)
def test_unknown_paths_under_api_answer_json_404(api, path):
    assert_contract(api.get(path), 404)


def test_a_method_the_endpoint_lacks_answers_json_405(api, study):
    body = assert_contract(api.put("/api/v1/studies/", "{}", content_type="application/json"), 405)
    assert "PUT" in body["detail"]


def test_an_unsupported_content_type_answers_json_415_and_changes_nothing(api, study):
    before = counts()
    answer = api.post("/api/v1/studies/", "<study slug='x'/>", content_type="application/xml")
    assert_contract(answer, 415)
    answer = api.patch(
        f"/api/v1/studies/{study.slug}/", "title=x", content_type="text/plain; charset=utf-8"
    )
    assert_contract(answer, 415)
    assert counts() == before
    assert Study.objects.get(pk=study.pk).title == study.title


def test_a_30_mb_patch_answers_json_413_and_changes_nothing(api, study):
    """The REST API applies MAX_REQUEST_BYTES (1 MiB by default) as the rater endpoints do."""
    before = counts()
    huge = json.dumps({"instructions": "x" * (30 * 1024 * 1024)})
    answer = api.patch(f"/api/v1/studies/{study.slug}/", huge, content_type="application/json")
    assert_contract(answer, 413)
    assert counts() == before
    assert Study.objects.get(pk=study.pk).instructions == study.instructions


def test_a_session_without_its_csrf_token_answers_json_403(owner, study):
    """Researchers' session-authenticated writes need the CSRF token; without it the
    API answers in JSON (not Django's HTML page) and nothing changes."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    answer = client.patch(
        f"/api/v1/studies/{study.slug}/", {"title": "changed"}, content_type="application/json"
    )
    assert_contract(answer, 403)
    assert Study.objects.get(pk=study.pk).title == study.title


def test_the_rater_consent_form_without_csrf_answers_a_page_not_a_500(study):
    """Pages keep Django's CSRF page (a form a person reloads); JSON endpoints answer JSON."""
    client = Client(enforce_csrf_checks=True)
    answer = client.post(f"/s/{study.slug}/consent", {"consent": "yes"})
    assert answer.status_code == 403
    assert not answer["Content-Type"].startswith("application/json")


def start_rater(client: Client, slug: str) -> str:
    answer = client.post(
        f"/api/v1/rater/{slug}/start",
        {"consent": True, "source": "prolific", "external_id": f"P-{uuid.uuid4().hex[:8]}"},
        content_type="application/json",
    )
    assert answer.status_code == 201, answer.content
    return answer.json()["token"]


def test_rater_endpoints_refuse_other_content_types_in_json(study):
    client = Client()
    answer = client.post(
        f"/api/v1/rater/{study.slug}/start", "consent=true", content_type="text/plain"
    )
    body = assert_contract(answer, 415)
    assert "application/json" in body["detail"]


def test_negative_zero_is_stored_as_zero(study):
    """-0.0 is a valid score on a scale from 0, but stored as 0.0: a negative zero would
    print as "-0" in exports and compare unequal in JSON fields."""
    client = Client()
    token = start_rater(client, study.slug)
    step = client.get(f"/api/v1/rater/{study.slug}/next", HTTP_X_RATER_TOKEN=token).json()
    stimulus = step["next"]["stimulus"]["id"]
    raw = (
        f'{{"stimulus": {stimulus}, "scores": {{"overall": -0.0, "technical": -0.0,'
        f' "rationality": 60}}, "client_id": "{uuid.uuid4()}", "viewing_seconds": -0.0}}'
    )
    answer = client.post(
        f"/api/v1/rater/{study.slug}/submit",
        raw,
        content_type="application/json",
        HTTP_X_RATER_TOKEN=token,
    )
    assert answer.status_code == 201, answer.content
    rating = Rating.objects.get(stimulus_id=stimulus)
    for value in (rating.overall, rating.technical, rating.viewing_seconds):
        assert value == 0 and math.copysign(1.0, value) == 1.0, rating.scores()


def test_a_database_error_on_a_json_endpoint_answers_json_503(api, study, monkeypatch):
    """A database that drops mid-request answers JSON 503 (retry later), not an HTML 500."""
    from django.db import OperationalError
    from django.db.models.query import QuerySet

    def down(*args, **kwargs):
        raise OperationalError("connection to server at 127.0.0.1 failed")

    monkeypatch.setattr(QuerySet, "_fetch_all", down)
    body = assert_contract(api.get("/api/v1/studies/"), 503)
    assert "127.0.0.1" not in json.dumps(body)  # no host or port to anyone


@pytest.mark.parametrize("method", ["post", "put", "patch"])
@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f"])
def test_form_bodies_with_control_characters_are_refused_by_every_method(api, study, method, char):
    """Form-encoded and multipart bodies (PUT and PATCH included, which Django's
    request.POST never reads) refuse control characters like JSON bodies do."""
    from django.test.client import encode_multipart

    before = counts()
    url = "/api/v1/studies/" if method == "post" else f"/api/v1/studies/{study.slug}/"
    from urllib.parse import urlencode

    fields = {"slug": "ctl", "title": f"bad{char}title"}
    for content_type, body in (
        ("application/x-www-form-urlencoded", urlencode(fields)),
        ("multipart/form-data; boundary=BoUnDaRy", encode_multipart("BoUnDaRy", fields)),
    ):
        answer = getattr(api, method)(url, body, content_type=content_type)
        payload = assert_contract(answer, 400, "control_character")
        assert "title" in payload["fields"], payload
    assert counts() == before
    assert Study.objects.get(pk=study.pk).title == study.title


def test_tab_and_newline_stay_allowed_in_free_text_forms(api, study):
    answer = api.patch(
        f"/api/v1/studies/{study.slug}/",
        "instructions=line%20one%0D%0A%09line%20two",
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 200, answer.content
    assert Study.objects.get(pk=study.pk).instructions == "line one\r\n\tline two"


@pytest.mark.parametrize("char", ["\x01", "\x1b", "\x7f"])
def test_page_forms_refuse_control_characters_on_the_field(owner, study, char):
    """The study form: a message on the field, nothing saved (Django's own check stops
    NUL only)."""
    client = Client()
    client.force_login(owner)
    page = client.post("/accounts/tokens/", {"name": f"ci{char}token"})
    assert page.status_code == 400 and "Remove the control characters" in page.text
    from annotation.models import ApiToken

    assert not ApiToken.objects.exists()
    share = client.post(
        f"/studies/{study.slug}/sharing/", {"username": f"x{char}", "level": "view"}
    )
    assert share.status_code in (200, 400) and "Remove the control characters" in share.text
