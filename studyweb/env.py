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
