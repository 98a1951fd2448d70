"""Settings, read from the environment with strict parsers (studyweb.env).

Every setting and its default is listed in README.md ("Settings"). A malformed
value stops start-up with a message that names the variable.
"""

from __future__ import annotations

from pathlib import Path

from studyweb.env import (
    EnvError,
    env_bool,
    env_int,
    env_list,
    env_path,
    env_str,
    media_storage,
    parse_database_url,
    parse_redis_url,
)
from studyweb.language_codes import LANGUAGES as LANGUAGE_CODES

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = env_path("VAR_DIR", BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise EnvError("SECRET_KEY is required when DEBUG is off (set DEBUG=1 for development)")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
elif not DEBUG and len(SECRET_KEY) < 32:
    raise EnvError("SECRET_KEY is too short for production (use at least 32 random characters)")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "annotation",
    "scoring",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything reads a cookie, a form field or the database: control characters
    # and oversized bodies are refused here, and JSON endpoints answer errors as JSON.
    "studyweb.boundary.BoundaryMiddleware",
    # Outside the session and CSRF middleware, so it sees the cookies they set.
    "studyweb.rater_cookies.RaterFrameCookiesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Rater pages in the rater's language; everything else in English.
    "studyweb.languages.RaterLanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Inside XFrameOptionsMiddleware, so its exemption of rater pages is seen there.
    "studyweb.middleware.SecurityHeadersMiddleware",
]

ROOT_URLCONF = "studyweb.urls"
WSGI_APPLICATION = "studyweb.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite is the embedded default of `make run` (the rating-path tests run on it too);
# the suite and production use PostgreSQL (row locks behave differently on SQLite).
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": parse_database_url(DATABASE_URL)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # IMMEDIATE: a transaction takes the write lock when it starts, so concurrent raters
    # wait for it (up to the timeout) instead of failing with "database is locked"
    # when a read lock cannot be upgraded.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    if DATABASES["default"]["NAME"] != ":memory:":
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
elif env_bool("DATABASE_PREPARED_STATEMENTS", True):
    # Server-side parameters let psycopg prepare a statement after its fifth run on
    # a connection, so PostgreSQL stops re-planning the rating path's queries on
    # every request (planning was about 40% of the database's time per rating). Turn
    # it off behind a transaction-mode PgBouncer that cannot keep prepared statements.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("server_side_binding", True)
    DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
# The languages raters may read a study in (studyweb.languages); catalogues in locale/.
LANGUAGES = LANGUAGE_CODES
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_path("STATIC_ROOT", VAR_DIR / "static")
MEDIA_URL = "/media/"
MEDIA_ROOT = env_path("MEDIA_ROOT", VAR_DIR / "media")
# WhiteNoise serves collected files in production; in development it reads the
# app folders directly so nothing has to be collected first.
WHITENOISE_USE_FINDERS = DEBUG
if DEBUG:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Media (stimuli, uploads, exports, checkpoints): MEDIA_ROOT on this machine, or an
# S3-compatible store shared by web servers and workers (studyweb.env.media_storage,
# docs/deployment.md). MEDIA_ORIGIN: where raters' browsers fetch images (the CSP).
_MEDIA = media_storage()
MEDIA_STORAGE = _MEDIA.kind
MEDIA_ORIGIN = _MEDIA.origin
# A GPU worker's copies of checkpoints registered in the media store, by sha256.
MODEL_CACHE_DIR = env_path("MODEL_CACHE_DIR", VAR_DIR / "model-cache")
STORAGES = {
    "default": _MEDIA.backend,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# The app's own sign-in (studyweb.accounts); the admin keeps its own for admins.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "scoring:study-list"
LOGOUT_REDIRECT_URL = "login"

# --- Upload limits -----------------------------------------------------------
# One stimulus file, in bytes; images above it are rejected before decoding.
MAX_IMAGE_BYTES = env_int("MAX_IMAGE_BYTES", 25 * 1024 * 1024, minimum=1024)
# Decoded pixel count (width x height): the guard against decompression bombs.
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 40_000_000, minimum=1)
# A zip of stimuli: its size on disk and the sum of its entries' sizes.
MAX_ARCHIVE_BYTES = env_int("MAX_ARCHIVE_BYTES", 2 * 1024**3, minimum=1024)
MAX_ARCHIVE_MEMBERS = env_int("MAX_ARCHIVE_MEMBERS", 100_000, minimum=1)
# Decoded pixels of one import, all its files together (duplicates, found by sha256
# before decoding, cost nothing): bounds the CPU one upload can take.
MAX_IMPORT_PIXELS = env_int("MAX_IMPORT_PIXELS", 5_000_000_000, minimum=1)
# The same for an import done inside one web request (the API's upload without
# ?background=1): decoding runs at about 1e8 pixels per CPU-second, so the default
# keeps a request to a few seconds; a larger import goes to a worker as a job.
MAX_REQUEST_IMPORT_PIXELS = env_int("MAX_REQUEST_IMPORT_PIXELS", 500_000_000, minimum=1)
# Request bodies held in memory (form fields, JSON) and file uploads.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_REQUEST_BYTES", 1024 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Files in one request: the stimuli page uploads many images at once (Django's default,
# 100, would answer a bare 400 before the view could say why on the field).
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("MAX_UPLOAD_FILES", 1000, minimum=1)

# A model checkpoint registered as a model version (JOINT or TorchScript): it is loaded
# once at registration (on the CPU) to prove it is a model, so its size is bounded.
MAX_MODEL_BYTES = env_int("MAX_MODEL_BYTES", 2 * 1024**3, minimum=1024)

# --- Celery ------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or None
if CELERY_BROKER_URL:
    parse_redis_url(CELERY_BROKER_URL, name="CELERY_BROKER_URL")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or CELERY_BROKER_URL
if CELERY_RESULT_BACKEND:
    parse_redis_url(CELERY_RESULT_BACKEND, name="CELERY_RESULT_BACKEND")
# No broker configured: run tasks in-process (the embedded default of `make run`).
CELERY_TASK_ALWAYS_EAGER = CELERY_BROKER_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# Model scoring goes to GPU workers; analyses and exports to the default queue.
CELERY_TASK_ROUTES = {
    "scoring.tasks.score_*": {"queue": "gpu"},
    "*": {"queue": "default"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_EXPIRES = 24 * 3600
# Redis redelivers a task that was taken but never acknowledged (its worker died)
# after this many seconds; scoring batches are idempotent, so a late duplicate is harmless.
# Workers sweep for such tasks every CELERY_RESTORE_SWEEP_SECONDS.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=5),
    "unacked_restore_interval": env_int("CELERY_RESTORE_SWEEP_SECONDS", 60, minimum=1),
    "unacked_restore_throttle": 1,
    # A broker that is down must not hold a web request: refuse fast, keep the job waiting.
    "socket_connect_timeout": 1,
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0.2,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL = 10
# Workers send the jobs that waited for the broker, and settle running jobs, this often.
JOB_TICK_SECONDS = env_int("JOB_TICK_SECONDS", 10, minimum=0)

# --- Cache and rate limits -----------------------------------------------------
CACHE_URL = env_str("CACHE_URL") or None
if CACHE_URL:
    parse_redis_url(CACHE_URL, name="CACHE_URL")
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Behind a proxy that terminates TLS: trust its X-Forwarded-Proto and X-Forwarded-For.
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
# How many proxies in front of the app append to X-Forwarded-For: the per-address rate
# limit keys on the entry the outermost of them appended (studyweb.ratelimit), never on
# entries the client sent. 0: REMOTE_ADDR (no proxy).
TRUSTED_PROXY_HOPS = env_int("TRUSTED_PROXY_HOPS", 1 if BEHIND_TLS_PROXY else 0, minimum=0)
# Requests per minute on the rater endpoints, per rater token and per client address.
RATE_LIMIT_RATER_PER_MIN = env_int("RATE_LIMIT_RATER_PER_MIN", 120, minimum=0)
RATE_LIMIT_ADDRESS_PER_MIN = env_int("RATE_LIMIT_ADDRESS_PER_MIN", 1200, minimum=0)
# New raters per hour per client address (studyweb.ratelimit.new_rater_wait).
RATE_LIMIT_NEW_RATERS_PER_HOUR = env_int("RATE_LIMIT_NEW_RATERS_PER_HOUR", 60, minimum=0)

# --- REST framework ----------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so that a missing or bad token answers 401 with "WWW-Authenticate: Token".
        # Named tokens (annotation.tokens), then the session, then DRF's one-per-account
        # tokens (older scripts), all with "Authorization: Token <key>".
        "annotation.auth.NamedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": env_str("API_RATE_LIMIT", "3000/min")},
    "EXCEPTION_HANDLER": "studyweb.api_errors.exception_handler",
    # JSON bodies are read with bounds (MAX_REQUEST_BYTES, depth, numbers, control
    # characters): studyweb.boundary.
    "DEFAULT_PARSER_CLASSES": [
        "studyweb.boundary.BoundedJSONParser",
        "studyweb.boundary.BoundedFormParser",
        "studyweb.boundary.BoundedMultiPartParser",
    ],
}
# drf-spectacular names two "platform" choice sets (a study's links; an outcome's row,
# which may be empty) PlatformEnum and warns; the schema it writes is correct.
SILENCED_SYSTEM_CHECKS = ["drf_spectacular.W001"]

SPECTACULAR_SETTINGS = {
    "TITLE": "studyweb API",
    "DESCRIPTION": "Subjective studies of AI-generated image naturalness: studies, stimuli, "
    "rater sessions, MOS analyses, exports, model scoring and agreement.",
    "VERSION": "1.0.0",
    # Swagger UI and ReDoc are served from static files (no CDN).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Request bodies get their own components: an upload's file is then binary, not
    # the URI a response shows, and read-only fields are not asked for.
    "COMPONENT_SPLIT_REQUEST": True,
    # One "tokenAuth" scheme (Authorization: Token <key>) stands for both kinds of token.
    "AUTHENTICATION_WHITELIST": [
        "annotation.auth.NamedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "studyweb.openapi.add_rater_endpoints",
        "studyweb.openapi.add_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        # Every kind of background job has one set of states (studyweb.jobs).
        "JobStatusEnum": "studyweb.jobs.Job.Status",
        "StudyStatusEnum": "annotation.models.Study.Status",
        # Where raters come from (a study's recruitment), and the platforms that pay.
        "RecruitmentPlatformEnum": "annotation.models.PLATFORM_CHOICES",
        "PaymentPlatformEnum": [("prolific", "Prolific"), ("mturk", "MTurk")],
    },
}

# --- Security ----------------------------------------------------------------
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Production is HTTPS only unless the operator says otherwise: plain HTTP is redirected
# and browsers are told (HSTS, a year) never to try it again.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# The proxy's or load balancer's health check may call /healthz over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_HSTS_SECONDS > 0)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", SECURE_HSTS_SECONDS > 0)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Crowd platforms that show rater pages inside a frame (MTurk's ExternalQuestion).
RATER_FRAME_ANCESTORS = env_list(
    "RATER_FRAME_ANCESTORS", ["https://www.mturk.com", "https://workersandbox.mturk.com"]
)
# Researchers' session and CSRF cookies stay SameSite=Lax (Django's default) whatever
# the framing. Inside a cross-site frame browsers send only SameSite=None cookies (over
# HTTPS), so when rater pages may be framed the rater's own cookies are None: the
# rater token cookie (annotation.rater_api), and on rater pages the session and CSRF
# cookies of a visitor who is not signed in (studyweb.rater_cookies; a rater's
# session holds training answers only). Signing in issues fresh Lax ones.
# (Browsers drop a SameSite=None cookie that is not Secure: both places use None only
# with SECURE_COOKIES on.)
RATER_COOKIE_SAMESITE = "None" if RATER_FRAME_ANCESTORS else "Lax"
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# JSON endpoints answer a CSRF failure as JSON; pages keep Django's page.
CSRF_FAILURE_VIEW = "studyweb.boundary.csrf_failure"

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise EnvError(f"LOG_LEVEL={LOG_LEVEL!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # A refused request (403: a view-only share, another's study) is logged as one
    # line, without the PermissionDenied traceback Django attaches: it is no fault.
    "filters": {"refusals_without_traceback": {"()": "studyweb.errors.RefusalLogFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["refusals_without_traceback"],
        }
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "studyweb": {"level": LOG_LEVEL},
        "annotation": {"level": LOG_LEVEL},
        "scoring": {"level": LOG_LEVEL},
    },
}
