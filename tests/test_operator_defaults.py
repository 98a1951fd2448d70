"""The operator's side of issue 15: rate limits keyed on the proxy-appended address,
a health check that tells nobody where the database is, cookies per audience."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import OperationalError, connection
from django.test import Client, RequestFactory

from annotation.models import Rater
from studyweb.ratelimit import client_address
from tests.factories import StimulusFactory, StudyFactory, UserFactory

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clear_limits():
    cache.clear()
    yield
    cache.clear()


# --- 9. X-Forwarded-For -----------------------------------------------------------


@pytest.mark.parametrize(
    "hops, forwarded, expected",
    [
        (0, "6.6.6.6, 203.0.113.7", "10.0.0.1"),  # no proxy trusted: the peer
        (1, "", "10.0.0.1"),  # nothing forwarded: the peer
        (1, "203.0.113.7", "203.0.113.7"),
        (1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),  # the client's own entry is ignored
        (1, "6.6.6.6,7.7.7.7 ,  203.0.113.7", "203.0.113.7"),
        (2, "6.6.6.6, 203.0.113.7, 10.1.1.1", "203.0.113.7"),  # two proxies appended
        (2, "203.0.113.7", "203.0.113.7"),  # came through the inner proxy only
    ],
)
def test_client_address_is_the_entry_the_trusted_proxy_appended(
    settings, hops, forwarded, expected
):
    settings.TRUSTED_PROXY_HOPS = hops
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == expected


@pytest.mark.django_db
def test_spoofed_x_forwarded_for_still_hits_the_address_limit(settings):
    """8 `start` calls from one address, each with a different forged first entry:
    the limit of 5 holds (before the fix all 8 passed, each creating a rater)."""
    settings.TRUSTED_PROXY_HOPS = 1
    settings.RATE_LIMIT_ADDRESS_PER_MIN = 5
    # Places for every rater (admission would otherwise say the study is full).
    study = StudyFactory(slug="spoof", status="open", session_size=2, ratings_per_stimulus=20)
    StimulusFactory.create_batch(2, study=study)
    proxy = Client(REMOTE_ADDR="10.0.0.1")  # every request arrives from the proxy
    codes = []
    for i in range(8):
        response = proxy.post(
            "/api/v1/rater/spoof/start",
            {"consent": True},
            content_type="application/json",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{i}, 203.0.113.7",
        )
        codes.append(response.status_code)
    assert codes == [201] * 5 + [429] * 3, codes
    assert Rater.objects.filter(study=study).count() == 5
    # Another client behind the same proxy has its own budget.
    other = proxy.post(
        "/api/v1/rater/spoof/start",
        {"consent": True},
        content_type="application/json",
        HTTP_X_FORWARDED_FOR="198.51.100.1, 203.0.113.8",
    )
    assert other.status_code == 201


# --- 12. /healthz ---------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_answers_503_with_a_code_and_logs_the_detail(client, monkeypatch, caplog):
    assert client.get("/healthz").json() == {"ok": True}

    def down():
        raise OperationalError(
            'connection to server at "db.internal" (10.2.3.4), port 5432 failed: refused'
        )

    monkeypatch.setattr(connection, "cursor", down)
    with caplog.at_level(logging.ERROR, logger="studyweb"):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["ok"] is False and body["error"] == "database_unavailable"
    text = response.content.decode()
    assert "db.internal" not in text and "5432" not in text and "10.2.3.4" not in text
    assert "db.internal" in caplog.text  # the operator still finds out why


@pytest.mark.django_db
def test_ssl_redirect_spares_healthz_only(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    redirected = client.get("/accounts/login/")
    assert redirected.status_code == 301
    assert redirected["Location"].startswith("https://")


# --- 13. Cookies: researchers Lax, a framed rater's own cookies None -------------------


@pytest.fixture
def framed(settings):
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    settings.SESSION_COOKIE_SAMESITE = "Lax"
    settings.CSRF_COOKIE_SAMESITE = "Lax"
    settings.RATER_FRAME_ANCESTORS = ["https://www.mturk.com"]
    settings.RATER_COOKIE_SAMESITE = "None"


@pytest.mark.django_db
def test_a_framed_raters_cookies_are_samesite_none(framed):
    StudyFactory(slug="framed", status="open")
    rater = Client()
    entry = rater.get("/s/framed/?workerId=W1&assignmentId=A1&hitId=H1", secure=True)
    assert entry.cookies["rater_token"]["samesite"] == "None"
    assert entry.cookies["rater_token"]["secure"]
    # The consent form on that page posts with the CSRF cookie, inside the frame.
    assert entry.cookies["csrftoken"]["samesite"] == "None"


@pytest.mark.django_db
def test_researchers_session_and_csrf_cookies_stay_lax(framed):
    UserFactory(username="res", password="a-long-enough-pass-123")
    researcher = Client()
    login_page = researcher.get("/accounts/login/", secure=True)
    token = login_page.cookies["csrftoken"].value
    assert login_page.cookies["csrftoken"]["samesite"] == "Lax"
    signed_in = researcher.post(
        "/accounts/login/",
        {"username": "res", "password": "a-long-enough-pass-123", "csrfmiddlewaretoken": token},
        secure=True,
    )
    assert signed_in.status_code == 302, signed_in.content[:500]
    assert signed_in.cookies["sessionid"]["samesite"] == "Lax"
    assert signed_in.cookies["csrftoken"]["samesite"] == "Lax"
    # A signed-in researcher on a rater page (the pilot preview) keeps Lax cookies.
    framed_study = StudyFactory(slug="framed", status="open")
    StimulusFactory.create_batch(3, study=framed_study)  # places: the consent form shows
    researcher.cookies.pop("csrftoken")
    page = researcher.get("/s/framed/", secure=True)
    assert page.cookies["csrftoken"]["samesite"] == "Lax"


# --- Settings defaults, in a fresh process -------------------------------------------


def settings_under(env_overrides: dict, names: list[str]) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "CELERY_", "SECURE_", "DEBUG", "SECRET_KEY"))
        and k not in {"BEHIND_TLS_PROXY", "TRUSTED_PROXY_HOPS", "SECURE_COOKIES"}
    }
    env.update(DJANGO_SETTINGS_MODULE="studyweb.settings", **env_overrides)
    code = (
        "import json, django; from django.conf import settings; django.setup(); "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


PRODUCTION = {"DEBUG": "0", "SECRET_KEY": "k" * 20 + "-0123456789abcdefghijklmnopqrstuv"}
NAMES = [
    "TRUSTED_PROXY_HOPS",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SAMESITE",
    "RATER_COOKIE_SAMESITE",
]


def test_production_defaults(tmp_path):
    got = settings_under({**PRODUCTION, "BEHIND_TLS_PROXY": "1", "VAR_DIR": str(tmp_path)}, NAMES)
    assert got["TRUSTED_PROXY_HOPS"] == 1
    assert got["SECURE_SSL_REDIRECT"] is True and got["SECURE_HSTS_SECONDS"] == 31_536_000
    # The default frame ancestors (MTurk) leave researchers' cookies Lax.
    assert got["SESSION_COOKIE_SAMESITE"] == "Lax" and got["CSRF_COOKIE_SAMESITE"] == "Lax"
    assert got["RATER_COOKIE_SAMESITE"] == "None"


def test_defaults_can_be_turned_off_and_development_is_plain(tmp_path):
    off = settings_under(
        {
            **PRODUCTION,
            "SECURE_SSL_REDIRECT": "0",
            "SECURE_HSTS_SECONDS": "0",
            "TRUSTED_PROXY_HOPS": "2",
            "VAR_DIR": str(tmp_path),
        },
        NAMES,
    )
    assert off["SECURE_SSL_REDIRECT"] is False and off["SECURE_HSTS_SECONDS"] == 0
    assert off["TRUSTED_PROXY_HOPS"] == 2
    dev = settings_under({"DEBUG": "1", "VAR_DIR": str(tmp_path)}, NAMES)
    assert dev["TRUSTED_PROXY_HOPS"] == 0
    assert dev["SECURE_SSL_REDIRECT"] is False and dev["SECURE_HSTS_SECONDS"] == 0


def test_a_refused_request_is_logged_without_its_traceback():
    """The console handler's filter: a 403's PermissionDenied loses its traceback (one
    line per refusal); a real fault keeps it."""
    import io

    from django.conf import settings as django_settings

    handler_config = django_settings.LOGGING["handlers"]["console"]
    assert "refusals_without_traceback" in handler_config["filters"]
    from studyweb.errors import RefusalLogFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RefusalLogFilter())
    logger = logging.getLogger("test.refusals")
    logger.addHandler(handler)
    try:
        from django.core.exceptions import PermissionDenied

        for exc in (PermissionDenied("view-only"), RuntimeError("a real fault")):
            try:
                raise exc
            except Exception:
                logger.warning("Forbidden (Permission denied): /studies/x/", exc_info=True)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert text.count("Traceback") == 1 and "RuntimeError: a real fault" in text
    assert "PermissionDenied" not in text
