"""A real database outage: the test's own PostgreSQL cluster, a real web server
(gunicorn) on it, the cluster stopped hard and started again.

While it is down every JSON endpoint (the REST API, the rater endpoints, /healthz)
answers a JSON 503 with Retry-After and no host or port, pages answer a 503 page, and
a rater is never told a rating was saved. When it is back the same server answers
again without a restart, and every rating it confirmed is in the database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest
import requests

from tests.celery_worker import ROOT, wait_for
from tests.servers import free_port, stop, web_server

pytestmark = pytest.mark.slow

SCORES = {"overall": 61, "technical": 52, "rationality": 73}


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


class Cluster:
    """A throwaway PostgreSQL cluster (trust auth, loopback, its own port), run as the
    ``postgres`` user when the tests run as root (initdb refuses root)."""

    def __init__(self, base: Path, binaries: Path):
        self.bin = binaries
        self.dir = base / "pgdata"
        self.socket_dir = base / "sock"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0

    def _run(self, *argv: str) -> None:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{argv[0]}: {done.stdout}{done.stderr}"

    def init(self) -> None:
        self.dir.mkdir()
        self.socket_dir.mkdir()
        if self.as_postgres:
            shutil.chown(self.dir, "postgres")
            shutil.chown(self.socket_dir, "postgres")
            shutil.chown(self.dir.parent, "postgres")
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        # -l: the server's output goes to a file, not to the pipes this test reads.
        log = str(self.dir.parent / "server.log")
        self._run(
            "pg_ctl", "-D", str(self.dir), "-l", log, "-o", options, "-w", "-t", "60", "start"
        )

    def stop(self) -> None:
        # Immediate: as a crash or a lost network would, without a clean goodbye.
        self._run("pg_ctl", "-D", str(self.dir), "-m", "immediate", "-w", "stop")

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture
def cluster():
    binaries = _pg_bin()
    if binaries is None:
        pytest.fail("PostgreSQL's server binaries (initdb, pg_ctl) are needed for this test")
    # Not under pytest's tmp_path: its root is private to the user running the tests,
    # and the cluster may run as ``postgres``.
    base = Path(tempfile.mkdtemp(prefix="outage-db-"))
    cluster = Cluster(base, binaries)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        except AssertionError:
            pass  # already stopped
        shutil.rmtree(base, ignore_errors=True)


def _manage(env: dict, *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


SEED = """
from rest_framework.authtoken.models import Token
from django.contrib.auth.models import User
from tests.factories import StimulusFactory, StudyFactory
owner = User.objects.create_user("outage-owner", password=None, is_staff=True)
study = StudyFactory(slug="outage", owner=owner, status="open", session_size=3,
                     protocol="perspectives")
StimulusFactory.create_batch(4, study=study)
print(Token.objects.create(user=owner).key)
"""


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_json_503_while_the_database_is_down_and_back_without_a_restart(cluster, tmp_path):
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE outage")
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="studyweb.test_settings",
        DATABASE_URL=cluster.url("outage"),
        MEDIA_ROOT=str(tmp_path / "media"),
        CELERY_BROKER_URL="",
        PYTHONUNBUFFERED="1",
    )
    _manage(env, "migrate", "--noinput")
    token = _manage(env, "shell", "-c", SEED).strip().splitlines()[-1]
    port = free_port()
    log = tmp_path / "web.log"
    web = web_server(env, port, log)
    base = f"http://127.0.0.1:{port}"
    # No keep-alive: idle kept-alive connections can hold up gunicorn's two threads,
    # and this test is about the database, not the web server's connection handling.
    api = requests.Session()
    api.headers.update({"Authorization": f"Token {token}", "Connection": "close"})
    rater = requests.Session()
    rater.headers["Connection"] = "close"
    try:
        wait_for(lambda: _up(f"{base}/healthz"), timeout=60)
        # Up: a researcher reads, a rater starts and rates one image.
        assert api.get(f"{base}/api/v1/studies/", timeout=10).status_code == 200
        started = rater.post(
            f"{base}/api/v1/rater/outage/start",
            json={"consent": True, "source": "prolific", "external_id": "P-OUT"},
            timeout=10,
        )
        assert started.status_code == 201, started.text
        rater.headers["X-Rater-Token"] = started.json()["token"]
        confirmed = []

        def rate_one() -> requests.Response:
            step = rater.get(f"{base}/api/v1/rater/outage/next", timeout=10)
            if step.status_code != 200:
                return step
            stimulus = step.json()["next"]["stimulus"]["id"]
            answer = rater.post(
                f"{base}/api/v1/rater/outage/submit",
                json={
                    "stimulus": stimulus,
                    "scores": SCORES,
                    "client_id": str(uuid.uuid4()),
                    "viewing_seconds": 3,
                },
                timeout=10,
            )
            if answer.status_code == 201:
                confirmed.append(stimulus)
            return answer

        assert rate_one().status_code == 201

        cluster.stop()
        down = {
            "api": api.get(f"{base}/api/v1/studies/", timeout=10),
            "api write": api.patch(
                f"{base}/api/v1/studies/outage/", json={"title": "during"}, timeout=10
            ),
            "rater": rate_one(),
            "rater start": requests.post(
                f"{base}/api/v1/rater/outage/start",
                json={"consent": True, "source": "prolific", "external_id": "P-NEW"},
                timeout=10,
            ),
            "healthz": requests.get(f"{base}/healthz", timeout=10),
        }
        for name, answer in down.items():
            assert answer.status_code == 503, (name, answer.status_code, answer.text[:300])
            assert answer.headers["Content-Type"].startswith("application/json"), name
            body = answer.json()
            assert body["error"] in ("unavailable", "database_unavailable"), (name, body)
            assert str(cluster.port) not in answer.text and "127.0.0.1" not in answer.text
            if name != "healthz":
                assert answer.headers.get("Retry-After") == "10", name
        page = requests.get(f"{base}/s/outage/", params={"PROLIFIC_PID": "P-PAGE"}, timeout=10)
        assert page.status_code == 503 and "Briefly unavailable" in page.text
        assert page.headers.get("Retry-After") == "10"

        cluster.start()
        # Back, the same server process: answers again (its connection is re-made).
        wait_for(lambda: _up(f"{base}/healthz"), timeout=30)
        assert web.poll() is None
        assert api.get(f"{base}/api/v1/studies/", timeout=10).status_code == 200
        assert rate_one().status_code == 201
        with psycopg.connect(cluster.url("outage")) as conn:
            stored = [
                row[0]
                for row in conn.execute(
                    "SELECT r.stimulus_id FROM annotation_rating r JOIN annotation_rater a"
                    " ON a.id = r.rater_id WHERE a.external_id = 'P-OUT'"
                )
            ]
            title = conn.execute("SELECT title FROM annotation_study").fetchone()[0]
            newcomers = conn.execute(
                "SELECT count(*) FROM annotation_rater WHERE external_id = 'P-NEW'"
            ).fetchone()[0]
        assert sorted(stored) == sorted(confirmed) and len(confirmed) == 2
        assert title != "during" and newcomers == 0
    finally:
        stop(web)
