"""Strict environment parsing for settings.

Every reader names the variable in its error, so a typo such as ``DEBUG=ture``
stops start-up with a message instead of silently meaning something else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_UNSET = object()


class EnvError(ImproperlyConfigured):
    """A setting from the environment is missing or malformed."""


def _raw(name: str, environ: dict | None) -> str | None:
    env = os.environ if environ is None else environ
    return env.get(name)


def env_str(name: str, default: str | None = None, *, environ: dict | None = None) -> str | None:
    value = _raw(name, environ)
    return default if value is None else value


def env_bool(name: str, default: bool, *, environ: dict | None = None) -> bool:
    value = _raw(name, environ)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise EnvError(
        f"{name}={value!r} is not a boolean (use one of: 1/0, true/false, yes/no, on/off)"
    )


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: dict | None = None,
) -> int:
    value = _raw(name, environ)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value.strip().replace("_", ""))
    except ValueError:
        raise EnvError(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise EnvError(f"{name}={number} is below the minimum {minimum}")
    if maximum is not None and number > maximum:
        raise EnvError(f"{name}={number} is above the maximum {maximum}")
    return number


def env_list(name: str, default: list[str], *, environ: dict | None = None) -> list[str]:
    value = _raw(name, environ)
    if value is None:
        return list(default)
    items = [item.strip() for item in value.split(",")]
    if any(not item for item in items):
        raise EnvError(f"{name}={value!r} has an empty entry (use a comma-separated list)")
    return items


def env_path(name: str, default: Path, *, environ: dict | None = None) -> Path:
    value = _raw(name, environ)
    if value is None or value.strip() == "":
        return default
    return Path(value).expanduser().resolve()


@dataclass(frozen=True)
class _Scheme:
    engine: str


_DB_SCHEMES = {
    "postgres": _Scheme("django.db.backends.postgresql"),
    "postgresql": _Scheme("django.db.backends.postgresql"),
    "sqlite": _Scheme("django.db.backends.sqlite3"),
}


def parse_database_url(url: str, *, name: str = "DATABASE_URL") -> dict:
    """Turn ``postgres://user:pw@host:port/db?opt=v`` or ``sqlite:///path`` into a
    Django DATABASES entry."""
    parts = urlsplit(url)
    scheme = _DB_SCHEMES.get(parts.scheme)
    if scheme is None:
        raise EnvError(
            f"{name}={url!r}: unsupported scheme {parts.scheme!r} (use postgres:// or sqlite://)"
        )
    if scheme.engine.endswith("sqlite3"):
        # sqlite:///relative.db and sqlite:////absolute/path.db, as dj-database-url reads them.
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc:
            raise EnvError(f"{name}={url!r}: a sqlite URL has no host (use sqlite:///file.db)")
        if not path:
            raise EnvError(f"{name}={url!r}: the sqlite URL names no file")
        return {"ENGINE": scheme.engine, "NAME": path if path == ":memory:" else path}
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise EnvError(f"{name}={url!r}: the URL names no database (postgres://host:5432/NAME)")
    try:
        port = parts.port
    except ValueError:
        raise EnvError(f"{name}={url!r}: the port is not a number") from None
    options: dict = dict(parse_qsl(parts.query))
    if "prepare_threshold" in options:
        # psycopg wants an int (or None: never prepare); a URL carries text.
        raw = options["prepare_threshold"].strip().lower()
        if raw in ("none", ""):
            options["prepare_threshold"] = None
        elif raw.isdigit():
            options["prepare_threshold"] = int(raw)
        else:
            raise EnvError(f"{name}: prepare_threshold={raw!r} is not a whole number or 'none'")
    config = {
        "ENGINE": scheme.engine,
        "NAME": dbname,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
    if options:
        config["OPTIONS"] = options
    return config


def parse_redis_url(url: str, *, name: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss", "memory", "amqp", "pyamqp"}:
        raise EnvError(
            f"{name}={url!r}: unsupported scheme {parts.scheme!r} (use redis://host:6379/0)"
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise EnvError(f"{name}={url!r}: the port is not a number") from None
    return url


# --- Media storage -------------------------------------------------------------

MEDIA_STORAGES = ("filesystem", "s3")
# S3's bucket naming rules (the subset every S3-compatible store accepts).
_BUCKET_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-")


@dataclass(frozen=True)
class MediaStorage:
    """Where stimuli, uploads, exports and checkpoints live: the ``default`` entry of
    STORAGES, and the origin raters' browsers fetch images from (for the CSP)."""

    kind: str
    backend: dict
    origin: str | None  # None: the site's own origin ('self')


def _endpoint_origin(url: str, *, name: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EnvError(f"{name}={url!r} is not an http(s) URL (use https://s3.example.org)")
    try:
        port = parts.port
    except ValueError:
        raise EnvError(f"{name}={url!r}: the port is not a number") from None
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        raise EnvError(
            f"{name}={url!r}: give the store's address only, without a path, query or "
            "credentials (the bucket is AWS_STORAGE_BUCKET_NAME)"
        )
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def media_storage(*, environ: dict | None = None) -> MediaStorage:
    """Read MEDIA_STORAGE (``filesystem``, the default, or ``s3``) and, for ``s3``,
    django-storages' usual variables. Only the form is checked here; whether the store
    answers is ``manage.py check_storage`` (studyweb.storage)."""
    kind = (env_str("MEDIA_STORAGE", "filesystem", environ=environ) or "filesystem").strip()
    kind = kind.lower()
    if kind not in MEDIA_STORAGES:
        raise EnvError(f"MEDIA_STORAGE={kind!r} is not one of: {', '.join(MEDIA_STORAGES)}")
    if kind == "filesystem":
        backend = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
        return MediaStorage(kind, backend, None)

    bucket = (env_str("AWS_STORAGE_BUCKET_NAME", "", environ=environ) or "").strip()
    if not bucket:
        raise EnvError("AWS_STORAGE_BUCKET_NAME is required when MEDIA_STORAGE=s3")
    if not (3 <= len(bucket) <= 63) or set(bucket) - _BUCKET_CHARS or bucket[0] in ".-":
        raise EnvError(
            f"AWS_STORAGE_BUCKET_NAME={bucket!r} is not a bucket name (3 to 63 lower-case "
            "letters, digits, dots and hyphens, starting with a letter or digit)"
        )
    access = env_str("AWS_ACCESS_KEY_ID", "", environ=environ) or ""
    secret = env_str("AWS_SECRET_ACCESS_KEY", "", environ=environ) or ""
    if bool(access) != bool(secret):
        missing = "AWS_SECRET_ACCESS_KEY" if access else "AWS_ACCESS_KEY_ID"
        raise EnvError(f"{missing} is required with the other half of the key pair")
    region = (env_str("AWS_S3_REGION_NAME", "", environ=environ) or "").strip() or None
    prefix = (env_str("AWS_LOCATION", "", environ=environ) or "").strip().strip("/")
    if prefix and (".." in prefix.split("/") or "//" in prefix or "\\" in prefix):
        raise EnvError(f"AWS_LOCATION={prefix!r} is not a key prefix (use e.g. studyweb/media)")
    expire = env_int(
        "AWS_QUERYSTRING_EXPIRE", 3600, minimum=60, maximum=7 * 24 * 3600, environ=environ
    )
    endpoint = (env_str("AWS_S3_ENDPOINT_URL", "", environ=environ) or "").strip().rstrip("/")
    options: dict = {
        "bucket_name": bucket,
        "location": prefix,
        "region_name": region,
        "querystring_auth": True,
        "querystring_expire": expire,
        "signature_version": "s3v4",
        # Like the file system: a second file of the same name gets a new name
        # instead of replacing the first (an export, an upload).
        "file_overwrite": False,
        "default_acl": None,
    }
    if access:
        options["access_key"] = access
        options["secret_key"] = secret
    if endpoint:
        origin = _endpoint_origin(endpoint, name="AWS_S3_ENDPOINT_URL")
        options["endpoint_url"] = endpoint
        # Self-hosted stores (Ceph, MinIO, SeaweedFS) serve buckets as paths.
        options["addressing_style"] = "path"
    else:
        # AWS itself: virtual-hosted URLs, https://BUCKET.s3.REGION.amazonaws.com.
        if "." in bucket:
            raise EnvError(
                f"AWS_STORAGE_BUCKET_NAME={bucket!r}: a dotted bucket name breaks AWS's TLS "
                "certificates for virtual-hosted URLs; use a name without dots"
            )
        options["addressing_style"] = "virtual"
        host = f"{bucket}.s3.{region}.amazonaws.com" if region else f"{bucket}.s3.amazonaws.com"
        origin = f"https://{host}"
    backend = {"BACKEND": "studyweb.storage.MediaS3Storage", "OPTIONS": options}
    return MediaStorage(kind, backend, origin)
