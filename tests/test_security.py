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


# --- The documented production set-ups pass `check --deploy` as written ----------------


def _clean_env() -> dict:
    """The test's environment without any setting the documents are meant to supply."""
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV"}
    return {k: v for k, v in os.environ.items() if k in keep}


def _sh_block(document: Path, after: str, containing: str) -> str:
    """The first ```sh block of ``document`` after the heading ``after`` that holds
    ``containing``: what a reader copies."""
    text = document.read_text()
    text = text[text.index(after) :]
    for chunk in text.split("```sh\n")[1:]:
        block = chunk.split("```", 1)[0]
        if containing in block:
            return block
    raise AssertionError(f"no sh block with {containing!r} after {after!r} in {document}")


def _check_deploy(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_readme_production_block_passes_check_deploy():
    block = _sh_block(ROOT / "README.md", "## Production set-up", "export DEBUG=0")
    exports = [line for line in block.splitlines() if line.startswith("export ")]
    assert any("SECRET_KEY=" in line for line in exports)
    # The reader's shell runs the exports (drawing the SECRET_KEY), then the check.
    script = "set -e\n" + "\n".join(exports) + "\nenv -0\n"
    shell = subprocess.run(
        ["bash", "-c", script], env=_clean_env(), capture_output=True, text=True, timeout=60
    )
    assert shell.returncode == 0, shell.stderr
    env = dict(item.split("=", 1) for item in shell.stdout.split("\0") if "=" in item)
    assert len(env["SECRET_KEY"]) >= 50 and env["DEBUG"] == "0"
    result = _check_deploy(env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_deployment_environment_file_passes_check_deploy(tmp_path):
    block = _sh_block(ROOT / "docs" / "deployment.md", "## One machine", "/etc/studyweb.env <<")
    env_file = tmp_path / "studyweb.env"
    shell = subprocess.run(
        ["bash", "-c", "set -e\n" + block.replace("/etc/studyweb.env", str(env_file))],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.returncode == 0, shell.stderr
    # Read as systemd's EnvironmentFile does: "#" starts a comment only at the start of
    # a line, so anything after "=" is the value, an inline comment included.
    values = {}
    for number, line in enumerate(env_file.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        name, sep, value = line.partition("=")
        assert sep and name == name.strip(), f"line {number}: {line!r}"
        assert "#" not in value and value == value.strip(), f"line {number}: {line!r}"
        values[name] = value
    assert values["DEBUG"] == "0" and len(values["SECRET_KEY"]) >= 50
    assert (env_file.stat().st_mode & 0o077) == 0  # the secret is readable by its owner only
    result = _check_deploy({**_clean_env(), **values})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_passes_on_the_defaults_of_debug_0():
    """HSTS and the SSL redirect need no variable: on by default with DEBUG=0."""
    env = {
        **_clean_env(),
        "DEBUG": "0",
        "SECRET_KEY": "prod-secret-key-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFG",
        "ALLOWED_HOSTS": "studies.example.org",
    }
    assert _check_deploy(env).returncode == 0
    off = _check_deploy({**env, "SECURE_SSL_REDIRECT": "0", "SECURE_HSTS_SECONDS": "0"})
    assert off.returncode != 0
    assert "security.W008" in off.stderr and "security.W004" in off.stderr
