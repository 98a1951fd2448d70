"""Benchmark of the model scoring path (scoring.model_scoring on a real Celery worker). Not a test.

Stimuli scored per second through the whole path: ``scoring_job_start`` ->
``score_job`` on the ``gpu`` queue in Redis -> a real worker process
(``celery -A studyweb worker -Q gpu -c 1``, started and stopped here) ->
``score_batch`` tasks -> ``Prediction`` upserts in PostgreSQL, until the job's
status is ``done``. Against it, in the same run and in this process, the
predictor alone on the same image files (``scoring.model_scoring.model_cache.load_scorer(version)``,
the object the worker builds): once with one ``predict(paths, batch_size=...)``
call for all images (the reference), once with one call per job batch as the
worker makes them (to tell the cost of the split from the cost of the
platform). Same batch size, CPU, same torch thread count (``--threads``, via
OMP_NUM_THREADS / MKL_NUM_THREADS for both processes).

Two model versions: (a) the ``sharpness`` baseline (NumPy on the decoded
image: the path's fixed costs dominate, by design) and (b) JOINT on the CPU
with random weights (``build_model(seed=0)``, saved with ``save_checkpoint``
and registered with kind "joint": the timing does not depend on the weights).

Overhead = (whole path - predictor alone) / predictor alone, on wall time. The
whole path is timed from just before ``scoring_job_start`` to the job's
``finished_at`` (written by the worker; the poll every 50 ms only notices it).
Worker start-up is excluded: the worker is started, answers a ping on the
``gpu`` queue, then a one-image warm-up job per model version loads the model
into the worker (the scorer is cached per worker process); that first job and
a second one-image job are both reported, so the one-time cost is visible.
The in-process predictor is loaded and warmed up on the same image, and runs
only while the worker is idle. Rounds rotate the order of the three paths, and
predictions are deleted before each whole-path run, so every run is a study's
first scoring (inserts). Tables give the best of the rounds and the median of
the per-round ratios. CPU seconds are reported too (the worker's process tree,
reaped DataLoader workers included, against this process's), and the cores
that other work on the machine took during each run ("others"; PostgreSQL and
Redis count there), since the machine may be shared.

Checks (a failure exits non-zero): every job finishes ``done`` with done =
total; exactly one Prediction per stimulus (none missing, none duplicated);
the worker's scores equal the in-process predictor's (max difference printed).

The script sets everything up itself: its own database (``--db``, created and
dropped), ``migrate``, PNG stimuli drawn from the AGIN samples (512 x 512 by
default, one pixel set from the index so every file is distinct) imported via
``annotation.importing.stimulus_import_bytes``, a temporary MEDIA_ROOT and
checkpoint folder, Redis database 13 (FLUSHDB at start and end).

    .venv/bin/python bench/bench_scoring.py            # 64 JOINT + 500 baseline images (~3 min)
    .venv/bin/python bench/bench_scoring.py --quick    # a smoke run (under a minute)
    .venv/bin/python bench/bench_scoring.py --skip baseline --batch-size 8
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchdb import database_url, drop_db, fresh_db

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/13"  # this benchmark's own Redis database, nobody else's
SAMPLES = ROOT / "tests" / "data" / "agin_samples"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TASK_DONE = re.compile(
    r"Task scoring\.tasks\.(score_batch|score_job)\[[^\]]+\] succeeded in ([0-9.e-]+)s"
)


# --- Environment, database, worker ------------------------------------------------------


def bench_env(db: str, workdir: Path, threads: int) -> dict[str, str]:
    # DEBUG off (with a SECRET_KEY): with DEBUG on, Django logs every query in memory,
    # work a production worker does not do.
    return {
        "DATABASE_URL": database_url(db),
        "DEBUG": "0",
        "SECRET_KEY": "bench-scoring-secret-key-" + "x" * 40,
        "MEDIA_ROOT": str(workdir / "media"),
        "STATIC_ROOT": str(workdir / "static"),
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_RESULT_BACKEND": REDIS_URL,
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "studyweb.settings",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        # Read by torch when it starts: the worker and this process get the same count.
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def start_worker(log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")  # closed by stop_worker
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "studyweb",
            "worker",
            "-Q",
            "gpu",
            "-c",
            "1",
            "-n",
            "bench-scoring@%h",
            # No other workers share db 13: skip the cluster chatter at start-up.
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "INFO",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so it is stopped with its children
    )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # warm shutdown: finishes the task at hand
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    proc.log.close()  # type: ignore[attr-defined]


def wait_ready(timeout: float = 120) -> float:
    """Seconds until the worker answers a ping sent to the ``gpu`` queue."""
    from studyweb.celery import ping

    t0 = time.perf_counter()
    ping.apply_async(kwargs={"value": "ready"}, queue="gpu").get(timeout=timeout)
    return time.perf_counter() - t0


# --- CPU accounting -------------------------------------------------------------------


def _proc_cpu(pid: int, with_children: bool = True) -> float:
    """CPU seconds of a live process (plus those of its children it has reaped)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rfind(")") + 2 :].split()  # fields[0] is field 3 (state)
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(text[text.rfind(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def worker_cpu(pid: int) -> float:
    # The pool child reaps its DataLoader workers, so their time is in its own cutime.
    return sum(_proc_cpu(p) for p in [pid, *_descendants(pid)])


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def pool_cpu(scorer) -> float:
    """CPU seconds of the scorer's kept preprocessing workers: live children, not yet
    reaped, so not in this process's children times (self_cpu). Without them the
    predictor alone looked cheaper than it is by the whole of its preprocessing."""
    pids = scorer.pool_pids() if hasattr(scorer, "pool_pids") else []
    return sum(_proc_cpu(pid, with_children=False) for pid in pids)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    parts = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(parts) - parts[3] - parts[4]) / CLK_TCK, sum(parts) / CLK_TCK


def other_cores(a: tuple[float, float], b: tuple[float, float], ours: float) -> float:
    """Cores busy on average with work that is not ours (the other jobs on a shared
    machine; the PostgreSQL and Redis servers count as others)."""
    wall = (b[1] - a[1]) / (os.cpu_count() or 1)
    return max(0.0, (b[0] - a[0]) - ours) / max(wall, 1e-9)


# --- Fixture ------------------------------------------------------------------------------


def make_pngs(n: int, size: int, seed: int) -> list[bytes]:
    """``n`` distinct square PNGs of natural content (crops and flips of the AGIN samples)."""
    import numpy as np
    from PIL import Image

    from scoring.joint.preprocess import load_rgb

    bases = [load_rgb(SAMPLES / "CoCosNet_23.png"), load_rgb(SAMPLES / "Dreaml_coco_17.png")]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        im = bases[i % 2]
        if i // 2 % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        w, h = im.size
        x0, y0 = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
        im = im.crop((x0, y0, x0 + 3 * w // 4, y0 + 3 * h // 4))
        im = im.resize((size, size), Image.Resampling.BICUBIC)
        # Stimuli are unique by sha256 within a study: the index in one pixel makes it so.
        im.putpixel((0, 0), (i % 256, i // 256 % 256, 7))
        buffer = io.BytesIO()
        im.save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def create_study(slug: str, owner, pngs: list[bytes]):
    from annotation.importing import Limits, stimulus_import_bytes
    from annotation.models import Stimulus, Study

    study = Study.objects.create(
        slug=slug, title=f"Scoring benchmark {slug}", owner=owner, status=Study.Status.OPEN
    )
    limits = Limits.from_settings()
    for i, data in enumerate(pngs):
        outcome = stimulus_import_bytes(
            study, f"{slug}_{i:04d}.png", data, None, Stimulus.Role.TEST, limits
        )
        if outcome.status != "imported":
            sys.exit(f"{slug}: image {i} not imported: {outcome.status} {outcome.reason}")
    return study


def study_paths(study) -> list[str]:
    from annotation.models import Stimulus

    # The worker's order: ids ascending (job_plan_batches), so batches hold the same images.
    stimuli = Stimulus.objects.filter(study=study, role=Stimulus.Role.TEST).order_by("pk")
    return [s.image.path for s in stimuli]


# --- The two measured paths ------------------------------------------------------------


class Failed(Exception):
    """A check that makes the run exit non-zero."""


def whole_path(version, study, batch_size: int, worker, log_path: Path, timeout: float) -> dict:
    """One scoring job through broker and worker, timed to its ``finished_at``."""
    from annotation.models import Stimulus
    from scoring.model_scoring.services import scoring_job_start
    from scoring.models import Prediction, ScoringJob

    # Every run is a first scoring: nothing to skip, every row an insert.
    Prediction.objects.filter(model_version=version, stimulus__study=study).delete()
    log_start = log_path.stat().st_size
    cpu0, self0, machine0 = worker_cpu(worker.pid), self_cpu(), machine_busy()
    t0 = time.time()  # wall clock: compared with finished_at, written by the worker
    job, created = scoring_job_start(model_version=version, study=study, batch_size=batch_size)
    if not created:
        raise Failed(f"{version.name} on {study.slug}: job {job.pk} joined, not created")
    deadline = time.monotonic() + timeout
    while True:
        row = ScoringJob.objects.filter(pk=job.pk).values(
            "status", "done", "total", "error", "started_at", "finished_at"
        )[0]
        if row["status"] not in ScoringJob.ACTIVE:
            break
        if worker.poll() is not None:
            raise Failed(f"the worker exited ({worker.returncode}); see {log_path}")
        if time.monotonic() > deadline:
            raise Failed(
                f"job {job.pk} ({version.name} on {study.slug}) not finished after {timeout:.0f} s:"
                f" {row['status']}, {row['done']}/{row['total']}"
            )
        time.sleep(0.05)
    cpu1, self1, machine1 = worker_cpu(worker.pid), self_cpu(), machine_busy()
    if row["status"] != ScoringJob.Status.DONE or row["done"] != row["total"]:
        raise Failed(
            f"job {job.pk} ({version.name} on {study.slug}) ended {row['status']} at "
            f"{row['done']}/{row['total']}: {row['error']}"
        )
    seconds = row["finished_at"].timestamp() - t0

    # Exactly one prediction per test stimulus of the study: none missing, none twice.
    expected = set(
        Stimulus.objects.filter(study=study, role=Stimulus.Role.TEST).values_list("pk", flat=True)
    )
    got = list(
        Prediction.objects.filter(model_version=version, stimulus__study=study).values_list(
            "stimulus_id", "naturalness"
        )
    )
    ids = [s for s, _ in got]
    if len(ids) != len(set(ids)) or set(ids) != expected or row["total"] != len(expected):
        raise Failed(
            f"job {job.pk}: {len(ids)} predictions for {len(set(ids))} stimuli, expected "
            f"exactly one for each of {len(expected)} (total {row['total']})"
        )
    if any(v is None for _, v in got):
        raise Failed(f"job {job.pk}: predictions without a naturalness score")

    # The worker's own account of the time spent inside tasks (Celery's "succeeded in").
    with open(log_path, "rb") as handle:
        handle.seek(log_start)
        tail = handle.read().decode("utf-8", "replace")
    in_tasks = {"score_batch": 0.0, "score_job": 0.0}
    batches = 0
    for name, secs in TASK_DONE.findall(tail):
        in_tasks[name] += float(secs)
        batches += name == "score_batch"
    return {
        "seconds": seconds,
        "queue_s": row["started_at"].timestamp() - t0,  # start -> the worker plans the job
        "cpu_s": cpu1 - cpu0,
        "other_cores": other_cores(machine0, machine1, cpu1 - cpu0 + self1 - self0),
        "batch_tasks": batches,
        "in_batch_tasks_s": in_tasks["score_batch"],
        "in_plan_task_s": in_tasks["score_job"],
        "scores": {s: v for s, v in got},
    }


def predictor_alone(scorer, paths: list[str], ids: list[int], batch_size: int, split: bool) -> dict:
    """The predictor in this process: one call for all images, or (``split``) one call
    per job batch, as the worker makes them, to tell the batching's share of the cost."""
    calls = [(0, len(paths))]
    if split:
        calls = [(i, i + batch_size) for i in range(0, len(paths), batch_size)]
    cpu0, machine0 = self_cpu() + pool_cpu(scorer), machine_busy()
    t0 = time.perf_counter()
    results = []
    for a, b in calls:
        results += scorer.predict(paths[a:b], batch_size=batch_size)
    seconds = time.perf_counter() - t0
    cpu1, machine1 = self_cpu() + pool_cpu(scorer), machine_busy()
    return {
        "seconds": seconds,
        "cpu_s": cpu1 - cpu0,
        "other_cores": other_cores(machine0, machine1, cpu1 - cpu0),
        "scores": {s: r.naturalness for s, r in zip(ids, results, strict=True)},
    }


def max_diff(a: dict[int, float], b: dict[int, float]) -> float:
    return max((abs(a[k] - b[k]) for k in a), default=0.0)


PATHS = ("whole", "predictor", "per_batch")
PATH_LABELS = {
    "whole": "whole path",
    "predictor": "predictor alone",
    "per_batch": "predictor per batch",
}


def measure(label: str, version, study, args, worker, log_path: Path, rounds: int) -> dict:
    """Rounds of the three paths, the order rotated each round (drift hits each alike)."""
    from annotation.models import Stimulus
    from scoring.model_scoring.model_cache import load_scorer

    paths = study_paths(study)
    ids = list(
        Stimulus.objects.filter(study=study, role=Stimulus.Role.TEST)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    scorer = load_scorer(version)  # loaded once, as the worker's cache does; not timed
    timeout = max(300.0, 15.0 * len(paths))
    out: dict = {"label": label, "images": len(paths), **{p: [] for p in PATHS}}
    worst = 0.0
    for r in range(rounds):
        for which in PATHS[r % 3 :] + PATHS[: r % 3]:
            if which == "whole":
                run = whole_path(version, study, args.batch_size, worker, log_path, timeout)
            else:
                run = predictor_alone(scorer, paths, ids, args.batch_size, which == "per_batch")
            out[which].append(run)
            print(
                f"  {label:<10} round {r + 1} {PATH_LABELS[which]:<20}{run['seconds']:8.2f} s "
                f"{len(paths) / run['seconds']:8.1f} img/s  cpu {run['cpu_s']:7.1f} s  "
                f"others {run['other_cores']:.2f} cores",
                flush=True,
            )
        for which in ("whole", "per_batch"):
            diff = max_diff(out[which][-1]["scores"], out["predictor"][-1]["scores"])
            worst = max(worst, diff)
    out["max_score_diff"] = worst
    for which in PATHS:
        for run in out[which]:
            run.pop("scores")
    return out


def first_jobs(label: str, version, study, args, worker, log_path: Path) -> dict:
    """The one-image warm-up job in a worker that never ran this version, then a second."""
    first = whole_path(version, study, args.batch_size, worker, log_path, 600)
    second = whole_path(version, study, args.batch_size, worker, log_path, 600)
    print(
        f"  {label:<10} one-image job: first {first['seconds']:.2f} s (loads the model), "
        f"second {second['seconds']:.2f} s",
        flush=True,
    )
    for run in (first, second):
        run.pop("scores")
    return {"first": first, "second": second}


# --- Report ----------------------------------------------------------------------------


def summarize(m: dict) -> dict:
    """Best of the rounds (the least disturbed by other work on the machine) and, as a
    check on it, the median over rounds of each round's own ratio."""
    base = [r["seconds"] for r in m["predictor"]]
    base_cpu = [r["cpu_s"] for r in m["predictor"]]
    out: dict = {}
    for which in PATHS:
        secs = [r["seconds"] for r in m[which]]
        cpu = [r["cpu_s"] for r in m[which]]
        out[which] = {
            "seconds": min(secs),
            "cpu_s": min(cpu),
            "overhead": (min(secs) - min(base)) / min(base),
            "round_overheads": [(w - p) / p for w, p in zip(secs, base, strict=True)],
            "median_overhead": statistics.median(
                (w - p) / p for w, p in zip(secs, base, strict=True)
            ),
            "cpu_overhead": (min(cpu) - min(base_cpu)) / min(base_cpu),
        }
    whole = m["whole"]
    batches = whole[0]["batch_tasks"]
    # The path's own fixed costs: time in neither the predictor nor the batch split
    # (broker hops, task bookkeeping, the upserts, the progress recount, commits).
    out["fixed_per_batch_s"] = (out["whole"]["seconds"] - out["per_batch"]["seconds"]) / batches
    out["outside_tasks_s"] = min(r["seconds"] - r["in_batch_tasks_s"] for r in whole)
    return out


def print_table(measured: list[dict]) -> None:
    head = (
        f"{'path':<33}{'images':>7}{'seconds':>9}{'images/s':>10}{'overhead':>10}"
        f"{'median':>8}{'cpu s':>8}{'cpu overhead':>14}"
    )
    print(head)
    print("-" * len(head))
    for m in measured:
        n = m["images"]
        for which in PATHS:
            s = m["summary"][which]
            name = f"{m['label']}: {PATH_LABELS[which]}"
            if which == "predictor":
                ratios = f"{'-':>10}{'-':>8}{s['cpu_s']:>8.1f}{'-':>14}"
            else:
                ratios = (
                    f"{s['overhead']:>10.1%}{s['median_overhead']:>8.1%}{s['cpu_s']:>8.1f}"
                    f"{s['cpu_overhead']:>14.1%}"
                )
            print(f"{name:<33}{n:>7}{s['seconds']:>9.2f}{n / s['seconds']:>10.1f}{ratios}")


# --- Main ------------------------------------------------------------------------------


def _exit_on_term(signum, frame) -> None:
    # `timeout` sends SIGTERM: exit through the cleanup below, so the worker it started
    # (and the worker's preprocessing pool) does not outlive the benchmark.
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_on_term)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 8 JOINT, 48 baseline images, batch 4"
    )
    parser.add_argument("--db", default="bench_scoring", help="database to create and drop")
    parser.add_argument("--keep-db", action="store_true", help="leave the database for a look")
    parser.add_argument("--joint-images", type=int, default=64)
    parser.add_argument("--baseline-images", type=int, default=500)
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=16, help="job and predictor batch size")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both processes")
    parser.add_argument("--rounds", type=int, default=3, help="JOINT rounds (each path once)")
    parser.add_argument("--baseline-rounds", type=int, default=3)
    parser.add_argument("--skip", choices=["joint", "baseline"], help="leave one model out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker-log", type=Path, help="keep a copy of the worker's log here")
    args = parser.parse_args()
    if args.quick:
        # A few batches of each model: every step runs once or more; nothing to measure.
        args.batch_size = min(args.batch_size, 4)
        args.joint_images = min(args.joint_images, 2 * args.batch_size)
        args.baseline_images = min(args.baseline_images, 48)
        args.rounds = args.baseline_rounds = 1
    if not 1 <= args.batch_size <= 1024 or min(args.rounds, args.baseline_rounds) < 1:
        sys.exit("--batch-size must be 1-1024 and the rounds at least 1")
    if min(args.joint_images, args.baseline_images) < 1:
        sys.exit("--joint-images and --baseline-images must be at least 1")
    if args.db in {"test", "test_test", "postgres"}:
        sys.exit(f"refusing to use the shared database {args.db!r}")

    workdir = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    os.environ.update(bench_env(args.db, workdir, args.threads))
    log_path = workdir / "worker.log"
    load_start = os.getloadavg()
    started = time.perf_counter()
    worker = None
    failures: list[str] = []
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    measured: list[dict] = []
    try:
        flush_redis()
        fresh_db(args.db, sys.executable, str(ROOT / "manage.py"))
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        import torch
        from django.contrib.auth import get_user_model

        from scoring.joint import build_model, save_checkpoint
        from scoring.model_scoring.services import model_version_register

        torch.set_num_threads(args.threads)  # OMP_NUM_THREADS says the same; be explicit
        owner = get_user_model().objects.create(username="bench-owner")
        t = time.perf_counter()
        n_max = max(
            0 if args.skip == "joint" else args.joint_images,
            0 if args.skip == "baseline" else args.baseline_images,
        )
        pngs = make_pngs(n_max + 1, args.size, args.seed)
        warm = create_study("bench-warm", owner, pngs[-1:])
        studies = {}
        if args.skip != "joint":
            studies["joint"] = create_study("bench-joint", owner, pngs[: args.joint_images])
        if args.skip != "baseline":
            studies["baseline"] = create_study(
                "bench-baseline", owner, pngs[: args.baseline_images]
            )
        checkpoint = workdir / "checkpoints" / "joint_random.pth"
        checkpoint.parent.mkdir()
        save_checkpoint(build_model(seed=0), checkpoint)
        versions = {
            "baseline": model_version_register(
                name="bench-sharpness", kind="baseline", baseline="sharpness"
            ),
            "joint": model_version_register(
                name="bench-joint", kind="joint", checkpoint_path=str(checkpoint)
            ),
        }
        print(
            f"setup: {time.perf_counter() - t:.1f} s ({n_max + 1} PNGs of {args.size} px, "
            f"checkpoint {checkpoint.stat().st_size / 2**20:.0f} MiB)",
            flush=True,
        )

        t = time.perf_counter()
        worker = start_worker(log_path)
        ready = wait_ready()
        print(f"worker: pid {worker.pid}, answered a ping after {ready:.1f} s", flush=True)
        results["worker_ready_s"] = ready

        # Warm-up: the baseline first (its first job pays the import of torch and the
        # model code in the worker's pool process), then JOINT (reads, hashes, loads).
        results["first_jobs"] = {}
        for key in ("baseline", "joint"):
            if args.skip == key:
                continue
            label = "JOINT" if key == "joint" else "sharpness"
            results["first_jobs"][key] = first_jobs(
                label, versions[key], warm, args, worker, log_path
            )

        from scoring.model_scoring.model_cache import load_scorer

        # The in-process predictors, warmed on the same image as the worker's.
        warm_path = study_paths(warm)
        for key in studies:
            load_scorer(versions[key]).predict(warm_path, batch_size=args.batch_size)

        for key, rounds in (("baseline", args.baseline_rounds), ("joint", args.rounds)):
            if key not in studies:
                continue
            label = "JOINT" if key == "joint" else "sharpness"
            m = measure(label, versions[key], studies[key], args, worker, log_path, rounds)
            m["summary"] = summarize(m)
            measured.append(m)
            # CPU, float32, same batches: the two paths compute the same numbers.
            if m["max_score_diff"] > 1e-4:
                failures.append(
                    f"{label}: worker and in-process scores differ by {m['max_score_diff']:.2e}"
                )
    except Failed as exc:
        failures.append(str(exc))
    finally:
        if worker is not None:
            stop_worker(worker)
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            drop_db(args.db)
        import redis

        try:
            flush_redis()
        except (redis.RedisError, OSError) as exc:  # cleanup must not hide the run's own error
            print(f"note: FLUSHDB on {REDIS_URL} failed: {exc}")
        kept = args.worker_log
        if kept is None and failures:
            kept = Path(tempfile.gettempdir()) / "bench-scoring-worker.log"
        if kept is not None and log_path.exists():
            shutil.copy(log_path, kept)
            print(f"worker log kept at {kept}")
        shutil.rmtree(workdir, ignore_errors=True)

    import torch

    print()
    print(
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, torch {torch.__version__} "
        f"({args.threads} threads); load average {load_start[0]:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end; total {time.perf_counter() - started:.0f} s"
    )
    print(
        f"batch size {args.batch_size}; images {args.size} x {args.size} PNG; seconds = best of "
        f"the rounds; overhead = (whole path - predictor) / predictor"
    )
    if measured:
        print_table(measured)
        print(
            "overhead: against 'predictor alone' (one call for all images), best of the rounds;"
            " median: of each round's own ratio"
        )
        for m in measured:
            s, w = m["summary"], m["whole"]
            print(
                f"{m['label']}: per-round overheads of the whole path "
                + ", ".join(f"{o:.1%}" for o in s["whole"]["round_overheads"])
                + f"; {w[0]['batch_tasks']} batch tasks; whole path minus predictor per batch "
                f"= {1000 * s['fixed_per_batch_s']:.0f} ms per batch; time outside the batch "
                f"tasks {s['outside_tasks_s']:.2f} s; start -> job running "
                f"{min(r['queue_s'] for r in w):.2f} s; max |score difference| vs in-process "
                f"{m['max_score_diff']:.1e}"
            )
    for key, fj in results.get("first_jobs", {}).items():
        print(
            f"{key}: one-image job in a fresh worker {fj['first']['seconds']:.2f} s, the next one "
            f"{fj['second']['seconds']:.2f} s (one-time cost "
            f"~{fj['first']['seconds'] - fj['second']['seconds']:.2f} s: imports not yet done, "
            "checkpoint read and hashed, first forward; excluded above)"
        )
    if args.json:
        results["measured"] = measured
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
    for message in failures:
        print("FAILED:", message)
    print("checks:", "FAILED" if failures else "every job done, exactly one prediction each")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
