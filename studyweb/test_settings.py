"""Settings for the test suite: PostgreSQL and Redis, Celery eager.

The real broker and worker are exercised by the tests that exist to prove them
(they start their own worker process against CELERY_BROKER_URL).
"""

from __future__ import annotations

import os

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
# Browsers drop SameSite=None cookies that are not Secure (the live test server is HTTP).
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Rate limits are off for the suite (one address, thousands of requests a minute);
# tests/annotation/test_rater_api.py turns them on where they are the subject.
RATE_LIMIT_RATER_PER_MIN = 0
RATE_LIMIT_ADDRESS_PER_MIN = 0
