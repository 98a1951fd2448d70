#!/usr/bin/env python3
"""Check that PostgreSQL and Redis answer before the test suite runs.

Uses only the standard library (it runs before the virtualenv matters). An
unreachable service is a failure with a message saying how to start it: the
suite never skips silently (see docs/services.md).
"""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlsplit

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"


def reachable(url: str, default_port: int) -> tuple[bool, str]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=3):
            return True, f"{host}:{port}"
    except OSError as exc:
        return False, f"{host}:{port} ({exc.strerror or exc})"


def main() -> int:
    failures = []
    db = os.environ.get("DATABASE_URL") or DEFAULT_DB
    if not db.startswith(("postgres://", "postgresql://")):
        failures.append(f"DATABASE_URL must point to PostgreSQL for the tests, got {db!r}")
    else:
        ok, where = reachable(db, 5432)
        if not ok:
            failures.append(
                f"PostgreSQL is not reachable at {where}. Start it (Debian: "
                "`service postgresql start`) or set DATABASE_URL."
            )
    redis = os.environ.get("CELERY_BROKER_URL") or DEFAULT_REDIS
    ok, where = reachable(redis, 6379)
    if not ok:
        failures.append(
            f"Redis is not reachable at {where}. Start it (Debian: `service redis-server start`) "
            "or set CELERY_BROKER_URL."
        )
    for failure in failures:
        print(f"check_services: {failure}", file=sys.stderr)
    if failures:
        print(
            "check_services: the test suite needs both services; nothing was run.", file=sys.stderr
        )
        return 1
    print("check_services: PostgreSQL and Redis are reachable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
