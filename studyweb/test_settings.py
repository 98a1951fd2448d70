"""Settings for the test suite: PostgreSQL and Redis, Celery eager.

The real broker and worker are exercised by the tests that exist to prove them
(they start their own worker process against CELERY_BROKER_URL).

``TEST_DATABASE_URL`` picks the suite's database when set (else DATABASE_URL,
else the local PostgreSQL). The rating-path tests, marked ``sqlite_too``, also run
on SQLite, the database of ``make run``:
``TEST_DATABASE_URL=sqlite:///var/db.sqlite3 python -m pytest -m sqlite_too``
(the run creates and deletes var/test_db.sqlite3); there the other tests skip
(tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("TEST_DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "test-secret-key-that-is-long-enough-for-checks-0123456789")
os.environ.setdefault("MEDIA_ROOT", "/tmp/studyweb-test-media")

from studyweb.env import env_bool
from studyweb.settings import *  # noqa: F403

TEST_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/15"
# In-process tasks for ordinary tests; the worker processes that
# tests/test_celery_worker.py starts set CELERY_EAGER=0 and use TEST_BROKER_URL.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_EAGER", True)
CELERY_BROKER_URL = TEST_BROKER_URL
CELERY_RESULT_BACKEND = TEST_BROKER_URL
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = BASE_DIR / "var" / "test-static"  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_SSL_REDIRECT = False  # the test client and live server speak HTTP
# Browsers drop SameSite=None cookies that are not Secure (the live test server is HTTP).
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Rate limits are off for the suite (one address, thousands of requests a minute);
# tests/annotation/test_rater_api.py turns them on where they are the subject.
RATE_LIMIT_RATER_PER_MIN = 0
RATE_LIMIT_ADDRESS_PER_MIN = 0
RATE_LIMIT_NEW_RATERS_PER_HOUR = 0
# Several suites on one server (parallel checkouts, CI jobs, a worker's own run):
# each its own test database, so one run never drops another's.
if DATABASES["default"]["ENGINE"].endswith("postgresql"):  # noqa: F405
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get(  # noqa: F405
        "TEST_DB_NAME", f"test_studyweb_{os.getpid()}"
    )
elif DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    _sqlite = DATABASES["default"]  # noqa: F405
    if _sqlite["NAME"] != ":memory:":
        # test_<file> next to the URL's file, created and deleted by the run (the
        # file itself is never touched): a file, not Django's default in-memory
        # database, so that the race tests' threads, each on its own connection,
        # share it.
        _file = Path(_sqlite["NAME"])
        _sqlite["TEST"] = {"NAME": str(_file.with_name(f"test_{_file.name}"))}
    # A transaction takes the write lock at BEGIN, so writers wait for each other
    # (the busy timeout) instead of failing with "database is locked" when one that
    # has read turns to write while another writes: with BEGIN DEFERRED, SQLite's
    # default, 24 raters racing for claims fail within seconds.
    _sqlite.setdefault("OPTIONS", {}).setdefault("transaction_mode", "IMMEDIATE")
