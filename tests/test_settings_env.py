"""Strict parsing of settings from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from studyweb.env import EnvError, env_bool, env_int, env_list, parse_database_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "value, expected", [("1", True), ("true", True), ("Off", False), ("", False)]
)
def test_env_bool(value, expected):
    assert env_bool("DEBUG", False, environ={"DEBUG": value}) is expected


def test_env_bool_bad_value_names_the_variable():
    with pytest.raises(EnvError, match="DEBUG='ture'"):
        env_bool("DEBUG", False, environ={"DEBUG": "ture"})


def test_env_int():
    assert env_int("N", 5, environ={}) == 5
    assert env_int("N", 5, environ={"N": "1_000"}) == 1000
    with pytest.raises(EnvError, match="MAX_IMAGE_BYTES='10MB' is not an integer"):
        env_int("MAX_IMAGE_BYTES", 5, environ={"MAX_IMAGE_BYTES": "10MB"})
    with pytest.raises(EnvError, match="below the minimum"):
        env_int("N", 5, minimum=10, environ={"N": "3"})


def test_env_list():
    assert env_list("ALLOWED_HOSTS", [], environ={"ALLOWED_HOSTS": "a.org, b.org"}) == [
        "a.org",
        "b.org",
    ]
    with pytest.raises(EnvError, match="ALLOWED_HOSTS"):
        env_list("ALLOWED_HOSTS", [], environ={"ALLOWED_HOSTS": "a.org,,b.org"})


def test_database_urls():
    pg = parse_database_url("postgres://u:p%40ss@db.example:6543/studies?sslmode=require")
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "u",
        "p@ss",
        "db.example",
        "6543",
        "studies",
    )
    assert pg["OPTIONS"] == {"sslmode": "require"}
    # psycopg's prepare_threshold arrives as text in a URL and is handed over as a number
    assert parse_database_url("postgres://h/db?prepare_threshold=3")["OPTIONS"] == {
        "prepare_threshold": 3
    }
    assert parse_database_url("postgres://h/db?prepare_threshold=none")["OPTIONS"] == {
        "prepare_threshold": None
    }
    with pytest.raises(EnvError, match="prepare_threshold"):
        parse_database_url("postgres://h/db?prepare_threshold=soon")
    lite = parse_database_url("sqlite:////var/lib/app/db.sqlite3")
    assert lite == {"ENGINE": "django.db.backends.sqlite3", "NAME": "/var/lib/app/db.sqlite3"}
    for bad, message in [
        ("mysql://localhost/db", "unsupported scheme"),
        ("postgres://localhost:port/db", "port is not a number"),
        ("postgres://localhost:5432/", "names no database"),
        ("sqlite://", "names no file"),
    ]:
        with pytest.raises(EnvError, match=message):
            parse_database_url(bad)


def _start(env_overrides: dict) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DEBUG",
            "SECRET_KEY",
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "DJANGO_SETTINGS_MODULE",
        }
    }
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "env, message",
    [
        ({"DEBUG": "0"}, "SECRET_KEY is required when DEBUG is off"),
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"DEBUG": "1", "DATABASE_URL": "oracle://x/y"}, "DATABASE_URL='oracle://x/y'"),
        ({"DEBUG": "1", "CELERY_BROKER_URL": "http://x"}, "CELERY_BROKER_URL='http://x'"),
        ({"DEBUG": "1", "MAX_IMAGE_PIXELS": "lots"}, "MAX_IMAGE_PIXELS='lots' is not an integer"),
        ({"DEBUG": "1", "LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        # An inline comment in a systemd EnvironmentFile is part of the value.
        (
            {"DEBUG": "1", "BEHIND_TLS_PROXY": "1 # trust the proxy"},
            "BEHIND_TLS_PROXY='1 # trust the proxy' is not a boolean",
        ),
        ({"DEBUG": "1", "TRUSTED_PROXY_HOPS": "-1"}, "TRUSTED_PROXY_HOPS"),
        ({"DEBUG": "1", "MAX_MODEL_BYTES": "2GB"}, "MAX_MODEL_BYTES='2GB' is not an integer"),
    ],
)
def test_bad_environment_stops_startup_with_a_message(env, message, tmp_path):
    result = _start({"VAR_DIR": str(tmp_path), **env})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_good_environment_starts(tmp_path):
    result = _start({"DEBUG": "1", "VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
