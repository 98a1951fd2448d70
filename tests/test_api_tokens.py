"""Researchers' named API tokens: the page (create, list, revoke) and the API's
authentication with them, beside DRF's one-per-account tokens."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation import tokens
from annotation.models import ApiToken
from studyweb.errors import ServiceError

pytestmark = pytest.mark.django_db

KEY = re.compile(r'id="new-token-key"[^>]*value="(swt_[0-9a-f]{40})"')


def _create(client, name):
    response = client.post("/accounts/tokens/", {"name": name})
    match = KEY.search(response.content.decode())
    return response, (match.group(1) if match else None)


def _api(key):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api


def test_create_shows_the_key_once_and_stores_only_its_hash(client, researcher_a):
    client.force_login(researcher_a)
    empty = client.get("/accounts/tokens/")
    assert empty.status_code == 200 and 'id="no-tokens"' in empty.content.decode()
    response, key = _create(client, "laptop script")
    assert response.status_code == 201 and key
    assert "shown only this once" in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(user=researcher_a)
    assert token.name == "laptop script"
    assert token.key_hash == tokens.key_hash(key) and key not in token.key_hash
    assert key.startswith(token.key_prefix)
    listing = client.get("/accounts/tokens/").content.decode()
    assert "laptop script" in listing and token.key_prefix in listing
    assert key not in listing  # never shown again


def test_the_key_authenticates_the_api_and_revoke_stops_it(client, researcher_a, study_a):
    client.force_login(researcher_a)
    _, key = _create(client, "ci")
    response = _api(key).get("/api/v1/studies/")
    assert response.status_code == 200
    assert [s["slug"] for s in response.json()["results"]] == ["study-a"]
    token = ApiToken.objects.get(user=researcher_a)
    revoked = client.post(f"/accounts/tokens/{token.pk}/revoke/")
    assert revoked.status_code == 302 and revoked["Location"] == "/accounts/tokens/"
    assert "revoked" in client.get("/accounts/tokens/").content.decode()
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    denied = _api(key).get("/api/v1/studies/")
    assert denied.status_code == 401
    assert denied["WWW-Authenticate"] == "Token"


def test_unknown_named_key_and_anonymous_are_401(db):
    assert _api("swt_" + "0" * 40).get("/api/v1/studies/").status_code == 401
    assert APIClient().get("/api/v1/studies/").status_code == 401


def test_drf_tokens_keep_working(researcher_a, study_a):
    key = Token.objects.create(user=researcher_a).key
    assert _api(key).get("/api/v1/studies/").status_code == 200
    assert _api("f" * 40).get("/api/v1/studies/").status_code == 401


def test_inactive_users_key_is_refused(client, researcher_a):
    client.force_login(researcher_a)
    _, key = _create(client, "ci")
    researcher_a.is_active = False
    researcher_a.save()
    assert _api(key).get("/api/v1/studies/").status_code == 401


def test_another_user_cannot_revoke_or_see_your_token(client, researcher_a, researcher_b):
    token, _ = tokens.token_create(researcher_a, "mine")
    client.force_login(researcher_b)
    assert client.post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()
    assert "mine" not in client.get("/accounts/tokens/").content.decode()
    assert client.get(f"/accounts/tokens/{token.pk}/revoke/").status_code == 405


def test_revoke_and_create_need_sign_in(client, researcher_a):
    token, _ = tokens.token_create(researcher_a, "mine")
    response = client.post(f"/accounts/tokens/{token.pk}/revoke/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.post("/accounts/tokens/", {"name": "x"}).status_code == 302
    assert ApiToken.objects.count() == 1


@pytest.mark.parametrize(
    "name, error",
    [
        ("", "This field is required."),
        ("   ", "This field is required."),
        ("bad\x00name", "Null characters are not allowed."),
        ("line\nbreak", "control characters"),
        ("x" * 101, "at most 100 characters"),
    ],
)
def test_bad_names_are_refused_and_nothing_is_created(client, researcher_a, name, error):
    client.force_login(researcher_a)
    response, key = _create(client, name)
    assert response.status_code == 400
    assert key is None
    assert error in response.content.decode()
    assert 'id="new-token"' not in response.content.decode()
    assert ApiToken.objects.count() == 0


def test_names_are_unique_per_user(client, researcher_a, researcher_b):
    client.force_login(researcher_a)
    assert _create(client, "ci")[0].status_code == 201
    response, key = _create(client, " ci ")
    assert response.status_code == 400 and key is None
    assert "already have a token named" in response.content.decode()
    assert ApiToken.objects.filter(user=researcher_a).count() == 1
    tokens.token_create(researcher_b, "ci")  # another user may use the same name
    assert ApiToken.objects.count() == 2


def test_name_of_exactly_the_maximum_length_is_accepted(researcher_a):
    token, key = tokens.token_create(researcher_a, "x" * tokens.NAME_MAX_LENGTH)
    assert token.name == "x" * 100 and len(key) == 44


def test_service_refuses_what_the_form_would_not_see(researcher_a):
    for name in ("tab\there", "del\x7f", "x" * 101, ""):
        with pytest.raises(ServiceError) as caught:
            tokens.token_create(researcher_a, name)
        assert caught.value.field == "name"
    with pytest.raises(ServiceError) as caught:
        tokens.token_revoke(researcher_a, 999999)
    assert caught.value.status == 404
    assert ApiToken.objects.count() == 0


def test_last_used_at_is_updated_at_most_once_a_minute(researcher_a):
    token, key = tokens.token_create(researcher_a, "ci")
    assert token.last_used_at is None
    assert _api(key).get("/api/v1/studies/").status_code == 200
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None and timezone.now() - first < timedelta(seconds=30)
    assert _api(key).get("/api/v1/studies/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at == first  # not rewritten on every request
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=5))
    assert _api(key).get("/api/v1/studies/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at > first - timedelta(minutes=5)


def test_tokens_are_listed_newest_first_with_last_use(client, researcher_a):
    old, key = tokens.token_create(researcher_a, "old one")
    tokens.token_create(researcher_a, "new one")
    ApiToken.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    _api(key).get("/api/v1/studies/")
    client.force_login(researcher_a)
    html = client.get("/accounts/tokens/").content.decode()
    assert html.index("new one") < html.index("old one")
    assert html.count(">never<") == 1
