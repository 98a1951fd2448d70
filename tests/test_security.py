"""Security headers and the production check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import StudyFactory

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_csp_without_inline_scripts_everywhere(client):
    StudyFactory(slug="sec", status="paused")
    for url in ("/", "/s/sec/", "/admin/login/", "/api/schema/swagger/", "/api/schema/redoc/"):
        response = client.get(url)
        csp = response["Content-Security-Policy"]
        assert (
            "script-src 'self'" in csp
            and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        )
        body = response.content.decode()
        # No inline <script> blocks on our pages (JSON data blocks are not scripts).
        for chunk in body.split("<script")[1:]:
            tag = chunk.split(">", 1)[0]
            assert "src=" in tag or 'type="application/json"' in tag, (url, tag)
        assert response["Referrer-Policy"] == "same-origin"
        assert "googleapis" not in body and "cdn" not in body.lower()


@pytest.mark.django_db
def test_rater_pages_may_be_framed_by_mturk_only(client):
    StudyFactory(slug="frame", status="paused")
    rater = client.get("/s/frame/")
    assert "frame-ancestors 'self' https://www.mturk.com" in rater["Content-Security-Policy"]
    assert "X-Frame-Options" not in rater
    home = client.get("/")
    assert "frame-ancestors 'none'" in home["Content-Security-Policy"]
    assert home["X-Frame-Options"] == "DENY"


def test_check_deploy_is_clean_under_production_settings():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.update(
        DEBUG="0",
        SECRET_KEY="prod-secret-key-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFG",
        ALLOWED_HOSTS="studies.example.org",
        DATABASE_URL=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
        SECURE_SSL_REDIRECT="1",
        SECURE_HSTS_SECONDS="31536000",
        BEHIND_TLS_PROXY="1",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
