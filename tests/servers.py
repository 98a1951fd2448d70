"""Real servers the outage tests start and stop themselves: a free port, and gunicorn
serving the app with a given environment."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.celery_worker import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def web_server(env: dict, port: int, log: Path) -> subprocess.Popen:
    """gunicorn on 127.0.0.1:``port`` (one process, two threads), its output in ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "studyweb.wsgi", "-b", f"127.0.0.1:{port}",
         "-w", "1", "--threads", "2", "--timeout", "60"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate, and kill what does not stop within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
