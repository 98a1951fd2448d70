"""The throwaway PostgreSQL database each benchmark sets up and drops (not a benchmark).

Shared by ``bench_export.py``, ``bench_rating.py`` and ``bench_scoring.py``, which
are run as scripts from this folder (so ``import benchdb`` finds this file).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

DB_HOST, DB_USER = "127.0.0.1", "postgres"


def database_url(name: str) -> str:
    return f"postgres://{DB_USER}@{DB_HOST}:5432/{name}"


def run_checked(cmd: list[str], env: Mapping[str, str] | None = None, timeout: int = 600) -> None:
    """Run a command; on failure stop the benchmark with its output."""
    result = subprocess.run(
        cmd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")


def drop_db(name: str) -> None:
    run_checked(["dropdb", "-h", DB_HOST, "-U", DB_USER, "--if-exists", "--force", name])


def fresh_db(name: str, python: str, manage: str, env: Mapping[str, str] | None = None) -> None:
    """Drop ``name`` if it exists, create it and migrate it with ``python manage``."""
    drop_db(name)
    run_checked(["createdb", "-h", DB_HOST, "-U", DB_USER, name])
    run_checked([python, manage, "migrate", "--noinput"], env)
