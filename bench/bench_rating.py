"""Benchmark of the rating path (GET next, POST submit) under gunicorn and PostgreSQL.

Not a test. One run measures, on this machine and against one gunicorn server:

(a) closed loop: 50 simulated raters doing the full cycle (GET next, POST submit)
    with no pause, next to 50 clients hammering ``/healthz`` (the floor: a
    trivial view doing ``SELECT 1`` through the same middleware and server).
    Reported: ratings/s and cycle requests/s, each over the floor's requests/s.
(b) 200 simulated raters who pause 1 s between actions: p50/p99 latency of
    ``next`` and of ``submit``, and the errors.

Then it checks integrity against the database: every rating answered 2xx is
there (by client_id), no stimulus has more than K ratings, and no rater rated a
stimulus twice; a failed check exits non-zero.

The script sets everything up itself: its own database (dropped at the end
unless ``--keep-db``), ``migrate``, two studies (one per phase, so phase (b)
does not start on a pool phase (a) already filled) with small PNGs drawn in
memory, raters moved to the rating stage through ``annotation.services`` (the
functions the entry and consent views call), and gunicorn as a subprocess.

    .venv/bin/python bench/bench_rating.py            # the full run (about 1.5 minutes)
    .venv/bin/python bench/bench_rating.py --quick    # a smoke run (about 30 s)

The client is ``http.client`` on keep-alive connections, one per simulated rater
(a thread each): cheaper per request than ``requests``, which matters because
the client shares the 2 cores with gunicorn and PostgreSQL. Its CPU time is
reported next to the server's (gunicorn and this database's PostgreSQL backends)
and to the whole machine's, since other work on the machine skews the numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchdb import database_url, drop_db, fresh_db

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
SCORES_KEYS = ("overall", "technical", "rationality")  # the "perspectives" preset
K = 5
HTTP_TIMEOUT = 30.0  # seconds; a request slower than this counts as an error


# --- Machine and process CPU, read from /proc ---------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """utime + stime of one process in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry.name))
    return out


def _postgres_backends(dbname: str) -> list[int]:
    """PostgreSQL backends serving our database (their process title names it)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("postgres: ") and f" {dbname} " in title:
            out.append(int(entry.name))
    return out


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    parts = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    total = sum(parts[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


@dataclass
class CpuSnapshot:
    wall: float
    client: float
    per_pid: dict[tuple[str, int], float]
    machine_busy: float
    machine_total: float


class CpuMeter:
    """CPU seconds spent by the client (this process), the server (gunicorn master and
    workers, our PostgreSQL backends) and the whole machine between two snapshots.

    Server processes are sampled every half second in a thread, keeping the last
    value seen for every process: Django closes a connection after CONN_MAX_AGE
    (60 s), and the CPU time of a backend that exits would otherwise be lost with it.
    """

    def __init__(self, gunicorn_pid: int, dbname: str, interval: float = 0.5):
        self.gunicorn_pid, self.dbname = gunicorn_pid, dbname
        self.seen: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._sample()
        self.thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        web = [self.gunicorn_pid, *_children(self.gunicorn_pid)]
        values = {("web", pid): _proc_cpu(pid) for pid in web}
        values.update({("db", pid): _proc_cpu(pid) for pid in _postgres_backends(self.dbname)})
        with self.lock:
            for key, cpu in values.items():
                if cpu > 0:  # 0.0: the process is gone; keep what it had used
                    self.seen[key] = cpu

    def _run(self, interval: float) -> None:
        while not self.stopping.wait(interval):
            self._sample()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)

    def snapshot(self) -> CpuSnapshot:
        self._sample()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        busy, total = _machine_cpu()
        with self.lock:
            per_pid = dict(self.seen)
        return CpuSnapshot(
            time.perf_counter(), usage.ru_utime + usage.ru_stime, per_pid, busy, total
        )

    def between(self, a: CpuSnapshot, b: CpuSnapshot) -> dict[str, float]:
        """Each share as cores in use on average (1.0 = one core busy all the time)."""
        wall = b.wall - a.wall
        # A backend or worker born during the window started from zero.
        used = {"web": 0.0, "db": 0.0}
        for key, cpu in b.per_pid.items():
            used[key[0]] += cpu - a.per_pid.get(key, 0.0)
        machine = (b.machine_busy - a.machine_busy) / (b.machine_total - a.machine_total)
        cores = os.cpu_count() or 1
        return {
            "client_cores": (b.client - a.client) / wall,
            "gunicorn_cores": used["web"] / wall,
            "postgres_cores": used["db"] / wall,
            "machine_cores": machine * cores,
        }


# --- Setup: database, data, gunicorn -------------------------------------------------------


def bench_env(args: argparse.Namespace, media: Path, static: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(args.db),
        DEBUG="0",
        SECRET_KEY="bench-secret-key-" + "x" * 40,
        ALLOWED_HOSTS="127.0.0.1",
        MEDIA_ROOT=str(media),
        STATIC_ROOT=str(static),
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
        DJANGO_SETTINGS_MODULE="studyweb.settings",
        # Plain HTTP on loopback: in production TLS ends at the proxy in front.
        SECURE_SSL_REDIRECT="0",
    )
    env.pop("CELERY_BROKER_URL", None)  # nothing on the rating path enqueues tasks
    # All 250 simulated raters come from 127.0.0.1 and the closed loop goes faster than
    # any person, so the per-address and per-token limits (1200 and 120 a minute by
    # default) would answer 429 within seconds. Raised, not switched off: the limiter
    # still counts every request, so its cost stays in the numbers.
    env.update(RATE_LIMIT_ADDRESS_PER_MIN="100000000", RATE_LIMIT_RATER_PER_MIN="100000000")
    return env


def png(i: int) -> bytes:
    """A distinct 16x16 PNG per index (distinct bytes, so distinct sha256)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (i % 256, (i // 256) % 256, 77)).save(buffer, "PNG")
    return buffer.getvalue()


def create_study(slug: str, n_stimuli: int, n_raters: int, media: Path, owner) -> list[str]:
    """A study with n_stimuli test images and n_raters in the rating stage; their tokens."""
    from django.utils import timezone

    from annotation import services
    from annotation.models import Session, Stimulus, Study

    study = Study.objects.create(
        slug=slug,
        title=f"Benchmark {slug}",
        owner=owner,
        status=Study.Status.OPEN,
        protocol="perspectives",
        scale="continuous",
        ratings_per_stimulus=K,
        session_size=10_000,  # the most a study allows: sessions never end during the run
        break_every=10_000,  # and no break (the server keeps a break for BREAK_SECONDS)
        gold_rate=0.0,
        min_view_seconds=0.0,
    )
    folder = media / "stimuli"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_stimuli):
        data = png(i)
        name = f"{slug}-{i:05d}.png"
        (folder / name).write_bytes(data)
        rows.append(
            Stimulus(
                study=study,
                image=f"stimuli/{name}",
                original_name=name,
                sha256=hashlib.sha256(data).hexdigest(),
                width=16,
                height=16,
                byte_size=len(data),
                role=Stimulus.Role.TEST,
            )
        )
    Stimulus.objects.bulk_create(rows, batch_size=1000)
    tokens = []
    for i in range(n_raters):
        # What the entry page (rater_enter, session_start) and the consent and
        # instructions forms (session_advance) do for a Prolific rater.
        rater, _ = services.rater_enter(
            study=study, source="prolific", external_id=f"{slug}-rater-{i:04d}"
        )
        rater.consented_at = rater.training_done_at = timezone.now()
        rater.save(update_fields=["consented_at", "training_done_at"])
        # Past admission: places (annotation.assignment) would admit only as many
        # full sessions as the study has ratings for, and the benchmark measures the
        # rating path, with sessions that never end during the run.
        Session.objects.create(
            rater=rater,
            stage=Session.Stage.RATING,
            planned_items=study.session_size,
            user_agent="bench",
        )
        tokens.append(rater.token)
    return tokens


def setup_data(args: argparse.Namespace, env: dict[str, str], media: Path) -> dict[str, list]:
    for key in ("DATABASE_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "MEDIA_ROOT"):
        os.environ[key] = env[key]
    os.environ["STATIC_ROOT"] = env["STATIC_ROOT"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyweb.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connections

    owner = get_user_model()(username="bench-owner")
    owner.set_unusable_password()
    owner.save()
    tokens = {
        "closed": create_study("bench-closed", args.stimuli, args.closed_raters, media, owner),
        "open": create_study("bench-open", args.stimuli, args.open_raters, media, owner),
    }
    with connections["default"].cursor() as cursor:
        # Fresh tables have no planner statistics yet; a running database has them
        # (autovacuum), so give the planner what it would have in production.
        cursor.execute("ANALYZE")
    connections.close_all()  # the server, not this process, talks to the database now
    return tokens


class Server:
    """gunicorn as a subprocess, its log in a temporary file."""

    def __init__(self, args: argparse.Namespace, env: dict[str, str], workdir: Path):
        self.args = args
        self.log_path = workdir / "gunicorn.log"
        cmd = [
            str(GUNICORN),
            "studyweb.wsgi",
            "-w",
            str(args.workers),
            "-k",
            "gthread",
            "--threads",
            str(args.threads),
            "-b",
            f"127.0.0.1:{args.port}",
            # Raters in phase (b) pause 1 s: keep their connections open across it.
            "--keep-alive",
            "5",
            "--log-level",
            "warning",
        ]
        self.cmd = cmd
        self.log = open(self.log_path, "w")  # closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.args.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        sys.exit(f"gunicorn did not come up:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


# --- The simulated clients ------------------------------------------------------------------


@dataclass
class Tally:
    """What all client threads saw; appended under a lock (cheap next to a request)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    ratings: int = 0
    errors: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # client ids answered 2xx
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"next": [], "submit": []})
    steps: dict[str, int] = field(default_factory=dict)

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)


class Client:
    """One keep-alive connection; reconnects after a failure."""

    def __init__(self, port: int, token: str | None = None):
        self.port = port
        self.headers = {"Host": f"127.0.0.1:{port}", "Accept": "application/json"}
        if token:
            self.headers["X-Rater-Token"] = token
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        headers = self.headers
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers = {**headers, "Content-Type": "application/json"}
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def run_threads(n: int, target: Callable[[int], None], limit: float) -> None:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=limit)
    alive = sum(t.is_alive() for t in threads)
    if alive:
        raise RuntimeError(f"{alive} client thread(s) still running after {limit:.0f} s")


def random_scores(rng: random.Random) -> dict[str, int]:
    return {key: rng.randint(0, 100) for key in SCORES_KEYS}


def rater_cycle(client: Client, slug: str, tally: Tally, rng: random.Random, record: bool):
    """GET next, then POST submit for the stimulus it names. Returns False to stop."""
    t0 = time.perf_counter()
    try:
        status, raw = client.call("GET", f"/s/{slug}/next")
    except (OSError, http.client.HTTPException) as exc:
        tally.error(f"next: {exc!r}")
        return None
    t1 = time.perf_counter()
    with tally.lock:
        tally.requests += 1
        if record:
            tally.latencies["next"].append(t1 - t0)
    if status != 200:
        tally.error(f"next: HTTP {status} {raw[:200]!r}")
        return None
    step = json.loads(raw)["next"]
    with tally.lock:
        tally.steps[step["step"]] = tally.steps.get(step["step"], 0) + 1
    if step["step"] != "rate":
        return step["step"]  # e.g. "break" (the next GET next claims) or "done"
    return step["stimulus"]["id"]


def rater_submit(client: Client, slug: str, stimulus: int, tally: Tally, rng, record: bool):
    cid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    body = {
        "stimulus": stimulus,
        "scores": random_scores(rng),
        "client_id": cid,
        "viewing_seconds": 3.0,
    }
    t0 = time.perf_counter()
    try:
        status, raw = client.call("POST", f"/s/{slug}/submit", body)
    except (OSError, http.client.HTTPException) as exc:
        tally.error(f"submit: {exc!r}")
        return
    t1 = time.perf_counter()
    with tally.lock:
        tally.requests += 1
        if record:
            tally.latencies["submit"].append(t1 - t0)
        if 200 <= status < 300:
            tally.ratings += 1
            tally.accepted.append(cid)
    if not 200 <= status < 300:
        tally.error(f"submit: HTTP {status} {raw[:200]!r}")


def closed_loop_floor(port: int, clients: int, seconds: float) -> Tally:
    """``clients`` connections calling /healthz back to back for ``seconds``."""
    tally = Tally()
    deadline = time.perf_counter() + seconds

    def work(i: int) -> None:
        client = Client(port)
        done = 0
        try:
            while time.perf_counter() < deadline:
                try:
                    status, raw = client.call("GET", "/healthz")
                except (OSError, http.client.HTTPException) as exc:
                    tally.error(f"healthz: {exc!r}")
                    time.sleep(0.05)  # do not spin on a refused connection
                    continue
                if status != 200:
                    tally.error(f"healthz: HTTP {status}")
                done += 1
        finally:
            client.close()
            with tally.lock:
                tally.requests += done

    run_threads(clients, work, seconds + HTTP_TIMEOUT + 10)
    return tally


def closed_loop_raters(port: int, slug: str, tokens: list[str], seconds: float) -> Tally:
    """Each rater: GET next, POST submit, again, with no pause, for ``seconds``."""
    tally = Tally()
    deadline = time.perf_counter() + seconds

    def work(i: int) -> None:
        client, rng = Client(port, tokens[i]), random.Random(i)
        try:
            while time.perf_counter() < deadline:
                stimulus = rater_cycle(client, slug, tally, rng, record=False)
                if stimulus == "done":
                    tally.error("closed loop: a rater ran out of stimuli (use more --stimuli)")
                    return
                if isinstance(stimulus, int):
                    rater_submit(client, slug, stimulus, tally, rng, record=False)
        finally:
            client.close()

    run_threads(len(tokens), work, seconds + 2 * HTTP_TIMEOUT + 10)
    return tally


def paced_raters(port: int, slug: str, tokens: list[str], seconds: float, pause: float) -> Tally:
    """Raters who pause ``pause`` s after every action; starts spread over one cycle so
    they do not all arrive in the same instant."""
    tally = Tally()
    start = time.perf_counter()
    deadline = start + seconds

    def work(i: int) -> None:
        client, rng = Client(port, tokens[i]), random.Random(10_000 + i)
        time.sleep(rng.uniform(0, 2 * pause))
        try:
            while time.perf_counter() < deadline:
                stimulus = rater_cycle(client, slug, tally, rng, record=True)
                time.sleep(pause)
                if stimulus == "done":
                    tally.error("paced: a rater ran out of stimuli (use more --stimuli)")
                    return
                if isinstance(stimulus, int):
                    rater_submit(client, slug, stimulus, tally, rng, record=True)
                    time.sleep(pause)
        finally:
            client.close()

    run_threads(len(tokens), work, seconds + 2 * pause + 2 * HTTP_TIMEOUT + 10)
    return tally


# --- Integrity -------------------------------------------------------------------------------


def integrity(accepted: list[str]) -> dict[str, object]:
    from django.db import connections
    from django.db.models import Count

    from annotation.models import Claim, Rating

    wanted = set(accepted)
    found: set[str] = set()
    ids = list(wanted)
    for i in range(0, len(ids), 5000):
        found.update(
            str(c)
            for c in Rating.objects.filter(client_id__in=ids[i : i + 5000]).values_list(
                "client_id", flat=True
            )
        )
    over_k = (
        Rating.objects.filter(repetition=1)
        .values("stimulus")
        .annotate(n=Count("pk"))
        .filter(n__gt=K)
        .count()
    )
    # Any repetition: the studies run without the repeat check, so one rating per pair.
    twice = (
        Rating.objects.values("rater", "stimulus").annotate(n=Count("pk")).filter(n__gt=1).count()
    )
    result = {
        "ratings_in_db": Rating.objects.count(),
        "accepted": len(wanted),
        "missing": len(wanted - found),
        "stimuli_over_k": over_k,
        "rater_stimulus_twice": twice,
        "claims_left": Claim.objects.count(),
    }
    connections.close_all()
    return result


# --- Report ------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (default 4)")
    parser.add_argument("--threads", type=int, default=2, help="threads per worker (default 2)")
    parser.add_argument("--port", type=int, default=8751)
    parser.add_argument("--db", default="bench_rating", help="database to create and drop")
    parser.add_argument("--keep-db", action="store_true", help="leave the database for a look")
    parser.add_argument("--stimuli", type=int, default=2000, help="test stimuli per study")
    parser.add_argument("--closed-raters", type=int, default=50)
    parser.add_argument("--open-raters", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0, help="each closed-loop window")
    parser.add_argument("--paced-seconds", type=float, default=30.0, help="phase (b) length")
    parser.add_argument("--pause", type=float, default=1.0, help="phase (b) pause per action")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.stimuli = min(args.stimuli, 600)
        args.seconds = min(args.seconds, 4.0)
        args.paced_seconds = min(args.paced_seconds, 6.0)
    if args.db in {"test", "test_test", "postgres"}:
        sys.exit(f"refusing to use the shared database {args.db!r}")

    workdir = Path(tempfile.mkdtemp(prefix="bench-rating-"))
    media, static = workdir / "media", workdir / "static"
    env = bench_env(args, media, static)
    server: Server | None = None
    started = time.perf_counter()
    try:
        fresh_db(args.db, str(PYTHON), str(ROOT / "manage.py"), env)
        tokens = setup_data(args, env, media)
        print(f"setup: {time.perf_counter() - started:.1f} s ({args.stimuli} stimuli per study)")

        server = Server(args, env, workdir)
        server.wait_ready()
        meter = CpuMeter(server.proc.pid, args.db)
        # Warm-up: every worker thread opens its database connection and imports lazily.
        closed_loop_floor(args.port, args.closed_raters, 2.0)

        a0 = meter.snapshot()
        floor = closed_loop_floor(args.port, args.closed_raters, args.seconds)
        a1 = meter.snapshot()
        cycle = closed_loop_raters(args.port, "bench-closed", tokens["closed"], args.seconds)
        a2 = meter.snapshot()
        paced = paced_raters(
            args.port, "bench-open", tokens["open"], args.paced_seconds, args.pause
        )
        a3 = meter.snapshot()
        meter.stop()
    finally:
        if server is not None:
            server.stop()
    checks = integrity(floor.accepted + cycle.accepted + paced.accepted)
    if not args.keep_db:
        drop_db(args.db)

    floor_rps = floor.requests / (a1.wall - a0.wall)
    cycle_rps = cycle.requests / (a2.wall - a1.wall)
    ratings_ps = cycle.ratings / (a2.wall - a1.wall)
    cpu_floor, cpu_cycle, cpu_paced = (
        meter.between(a0, a1),
        meter.between(a1, a2),
        meter.between(a2, a3),
    )
    lat = {k: (pct(v, 50) * 1000, pct(v, 99) * 1000) for k, v in paced.latencies.items()}
    cores = os.cpu_count()
    print()
    print(f"machine: {cores} cores; gunicorn gthread -w {args.workers} --threads {args.threads}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other work skews the numbers)")
    print()
    head = f"{'phase':<34}{'req/s':>9}{'ratings/s':>11}{'errors':>8}"
    head += f"{'client':>8}{'gunicorn':>10}{'postgres':>10}{'machine':>9}"
    print(head + "   (CPU: cores in use)")
    paced_wall = a3.wall - a2.wall
    rows = (
        (f"(a) floor /healthz x{args.closed_raters}", floor, floor_rps, None, cpu_floor),
        (f"(a) cycle next+submit x{args.closed_raters}", cycle, cycle_rps, ratings_ps, cpu_cycle),
        (
            f"(b) paced x{args.open_raters}, {args.pause:g} s pause",
            paced,
            paced.requests / paced_wall,
            paced.ratings / paced_wall,
            cpu_paced,
        ),
    )
    for name, tally, rps, rate, cpu in rows:
        print(
            f"{name:<34}{rps:>9.1f}{'' if rate is None else f'{rate:.1f}':>11}"
            f"{len(tally.errors):>8}{cpu['client_cores']:>8.2f}{cpu['gunicorn_cores']:>10.2f}"
            f"{cpu['postgres_cores']:>10.2f}{cpu['machine_cores']:>9.2f}"
        )
    print()
    ratio_ratings = ratings_ps / floor_rps if floor_rps else 0.0
    ratio_requests = cycle_rps / floor_rps if floor_rps else 0.0
    print(f"ratings/s over floor req/s:      {ratio_ratings:.2f}  (target >= 0.50)")
    print(f"cycle req/s over floor req/s:    {ratio_requests:.2f}  (2 requests per rating)")
    print()
    print(f"(b) latency at {args.open_raters} raters, ms   p50      p99      max     n")
    for key in ("next", "submit"):
        values = paced.latencies[key]
        print(
            f"    {key:<32}{lat[key][0]:>6.1f}{lat[key][1]:>9.1f}"
            f"{(max(values) * 1000 if values else float('nan')):>9.1f}{len(values):>6}"
        )
    met = max(v[1] for v in lat.values()) < 150 and not paced.errors
    print(f"    p99 target < 150 ms with no errors: {'met' if met else 'MISSED'}")
    print()
    print("integrity:", json.dumps(checks))
    errors = floor.errors + cycle.errors + paced.errors
    for message in errors[:5]:
        print("  error:", message[:160])
    if any("HTTP 5" in message for message in errors):
        # The server's own account of its 500s: the last traceback in its log.
        log = server.log_path.read_text(errors="replace").splitlines() if server else []
        starts = [i for i, line in enumerate(log) if line.startswith("Traceback")]
        print("  last traceback in the gunicorn log:")
        for line in log[starts[-1] if starts else -20 :][-25:]:
            print("   ", line)
    failed = (
        checks["missing"] != 0
        or checks["stimuli_over_k"] != 0
        or checks["rater_stimulus_twice"] != 0
    )
    print("integrity checks:", "FAILED" if failed else "passed")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "workers": args.workers,
                    "threads": args.threads,
                    "floor_rps": floor_rps,
                    "cycle_rps": cycle_rps,
                    "ratings_ps": ratings_ps,
                    "ratio_ratings": ratio_ratings,
                    "ratio_requests": ratio_requests,
                    "cpu": {"floor": cpu_floor, "cycle": cpu_cycle, "paced": cpu_paced},
                    "latency_ms": lat,
                    "errors": {"floor": floor.errors, "cycle": cycle.errors, "paced": paced.errors},
                    "steps": {"cycle": cycle.steps, "paced": paced.steps},
                    "integrity": checks,
                    "median_next_ms": statistics.median(paced.latencies["next"] or [0]) * 1000,
                },
                indent=2,
            )
        )
    if args.keep_db:
        print(f"kept: database {args.db}, media and the gunicorn log in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
