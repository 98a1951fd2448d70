"""Benchmark of the dataset exports (scoring.exports.formats) at the AGIN scale. Not a test.

The raw-ratings export of a study the size of AGIN: 6,049 stimuli, 300 raters,
30 raters per stimulus, protocol "agin" (13 dimensions), continuous 0-100
scale: 181,470 Rating rows, exported as 2,359,110 rows (one per rating and
dimension). ``export_stream(study, "ratings-csv")`` and ``"ratings-parquet"``
are timed at 1/8, 1/4, 1/2 and the full size of the study in one run, to show
whether memory grows with the number of ratings. Then an analysis of the full
study is stored (``analysis_create(..., enqueue=False)`` + ``analysis_run``) and
the MOS dataset exports (agin-csv, json, parquet) are timed on it.

Each export runs in a fresh subprocess, so one export's allocator state does
not leak into the next. In it, after a warm-up export of a tiny study in the
same format (lazy imports, first-use caches), the export is run in two ways:

1. timed (best of ``--repeat`` passes), writing to a file in the temporary
   directory: seconds, rows/s, and the **RSS delta**: the process's resident-set
   high-water mark (VmHWM, reset through ``/proc/self/clear_refs`` just before)
   minus its RSS just before; the largest over the passes. This counts
   everything: the Python heap, psycopg/libpq result buffers, pyarrow's memory
   pool and the Parquet writer's metadata.
2. under ``tracemalloc``, writing to /dev/null: the **tracemalloc peak**, the
   Python heap's high-water mark above its level before the export (no C
   buffers: libpq and pyarrow allocate outside it).

The exported rows are counted from the files (CSV lines, Parquet metadata, JSON
entries); a wrong count exits non-zero.

The script sets everything up itself: its own database (``--db``, dropped at
the end unless ``--keep-db``), ``migrate``, one study per size with seeded
ratings written by PostgreSQL COPY, and a temporary MEDIA_ROOT.

    .venv/bin/python bench/bench_export.py            # the full run (a few minutes)
    .venv/bin/python bench/bench_export.py --quick    # a smoke run (under a minute)
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchdb import database_url, drop_db, fresh_db

ROOT = Path(__file__).resolve().parents[1]
RATING_FORMATS = ("ratings-csv", "ratings-parquet")
DATASET_FORMATS = ("agin-csv", "json", "parquet")
WARM_SLUG = "bench-warm"
GENERATORS = ("DALL-E 2", "Midjourney", "Stable Diffusion 1.5", "SDXL", "DeepFloyd IF", "GLIDE")
TASKS = ("text-to-image", "image-to-image", "inpainting", "super-resolution")
MIB = 1024 * 1024


# --- Environment and database -----------------------------------------------------------


def bench_env(db: str, media: Path) -> dict[str, str]:
    # DEBUG off (with a SECRET_KEY): with DEBUG on, Django keeps every query in
    # connection.queries_log, which is memory the exports would not use in production.
    return {
        "DATABASE_URL": database_url(db),
        "DEBUG": "0",
        "SECRET_KEY": "bench-export-secret-key-" + "x" * 40,
        "MEDIA_ROOT": str(media),
        "STATIC_ROOT": str(media.parent / "static"),
        "LOG_LEVEL": "ERROR",  # not the "tasks run eagerly" warning
        "DJANGO_SETTINGS_MODULE": "studyweb.settings",
        "PYTHONPATH": str(ROOT),
    }


def django_setup() -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


# --- Fixture: studies, raters, sessions, stimuli, ratings --------------------------------


def tiny_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 140, 90)).save(buffer, "PNG")
    return buffer.getvalue()


def create_study(slug: str, n_stimuli: int, n_raters: int, per_stimulus: int, seed: int, owner):
    """A closed AGIN study with seeded ratings; returns (study, number of ratings)."""
    import numpy as np
    from django.conf import settings
    from django.db import connection, transaction

    from annotation import protocol
    from annotation.models import Rater, Rating, Session, Stimulus, Study

    rng = np.random.default_rng(seed)
    study = Study.objects.create(
        slug=slug,
        title=f"Export benchmark {slug}",
        owner=owner,
        status=Study.Status.CLOSED,
        protocol="agin",
        scale="continuous",
        ratings_per_stimulus=per_stimulus,
        gold_rate=0.0,
    )
    # One tiny PNG content, saved once per stimulus: the exports never open the
    # images, and sha256 is set directly below (unique per study, as required).
    data = tiny_png()
    folder = Path(settings.MEDIA_ROOT) / "stimuli" / slug
    folder.mkdir(parents=True, exist_ok=True)
    stimuli = []
    for i in range(n_stimuli):
        name = f"{slug}_{i:05d}.png"
        (folder / name).write_bytes(data)
        stimuli.append(
            Stimulus(
                study=study,
                image=f"stimuli/{slug}/{name}",
                original_name=name,
                sha256=hashlib.sha256(f"{slug}/{i}".encode()).hexdigest(),
                width=8,
                height=8,
                byte_size=len(data),
                role=Stimulus.Role.TEST,
                generator=GENERATORS[i % len(GENERATORS)],
                task=TASKS[i % len(TASKS)],
                prompt=f"a photo of object {i % 997} in scene {i % 89}",
            )
        )
    stimuli = Stimulus.objects.bulk_create(stimuli, batch_size=2000)
    raters = Rater.objects.bulk_create(
        [
            # bulk_create skips Rater.save(), which draws the pseudonym; draw it here.
            Rater(
                study=study,
                source=Rater.Source.PROLIFIC,
                external_id=f"{slug}-{i:04d}",
                pseudonym=f"R{rng.integers(16**10):010X}",
                status=Rater.Status.COMPLETED,
            )
            for i in range(n_raters)
        ]
    )
    sessions = Session.objects.bulk_create(
        [Session(rater=r, stage=Session.Stage.DONE, planned_items=0) for r in raters]
    )

    # Each stimulus is rated by a random `per_stimulus` of the raters (sparse crowd design).
    order = np.argsort(rng.random((n_stimuli, n_raters)), axis=1)[:, :per_stimulus]
    stim_idx = np.repeat(np.arange(n_stimuli), per_stimulus)
    rater_idx = order.ravel()
    n = stim_idx.size
    dims = protocol.PRESETS["agin"]
    quality = rng.uniform(15, 85, (n_stimuli, 1)) + rng.normal(0, 8, (n_stimuli, len(dims)))
    bias = rng.normal(0, 8, (n_raters, 1))
    scores = quality[stim_idx] + bias[rater_idx] + rng.normal(0, 12, (n, len(dims)))
    scores = np.clip(np.rint(scores), 0, 100)
    shuffle = rng.permutation(n)  # ratings arrive interleaved, not stimulus by stimulus
    stim_idx, rater_idx, scores = stim_idx[shuffle], rater_idx[shuffle], scores[shuffle]
    start = datetime(2024, 3, 1, tzinfo=UTC)
    offsets = np.sort(rng.uniform(0, 14 * 86400, n))
    viewing = np.round(np.clip(rng.lognormal(2.0, 0.5, n), 0.5, 120.0), 2)
    uuids = rng.bytes(16 * n)

    fields = ["stimulus", "rater", "session", "protocol", "scale", "repetition", "is_gold"]
    fields += ["viewing_seconds", "client_id", "created_at", *dims]
    columns = ", ".join(Rating._meta.get_field(f).column for f in fields)
    sql = f"COPY {Rating._meta.db_table} ({columns}) FROM STDIN"
    stim_ids = [s.pk for s in stimuli]
    rater_ids = [r.pk for r in raters]
    session_ids = [s.pk for s in sessions]
    with transaction.atomic(), connection.cursor() as cursor:
        # The psycopg 3 cursor under Django's wrapper: COPY is ~10x faster than bulk_create.
        with cursor.cursor.copy(sql) as copy:
            for k in range(n):
                r = int(rater_idx[k])
                copy.write_row(
                    (
                        stim_ids[stim_idx[k]],
                        rater_ids[r],
                        session_ids[r],
                        "agin",
                        "continuous",
                        1,
                        False,
                        float(viewing[k]),
                        uuid.UUID(bytes=uuids[16 * k : 16 * k + 16], version=4),
                        start + timedelta(seconds=float(offsets[k])),
                        *scores[k].tolist(),
                    )
                )
    return study, n


def setup_data(args: argparse.Namespace) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from scoring.analyses import services

    owner = get_user_model()(username="bench-owner")
    owner.set_unusable_password()
    owner.save()
    sizes = []
    t0 = time.perf_counter()
    create_study(WARM_SLUG, 12, 20, 5, args.seed + 1000, owner)
    for frac in args.fractions:
        n_stim = max(1, round(args.stimuli / frac))
        slug = f"bench-1-{frac}"
        study, n = create_study(
            slug, n_stim, args.raters, args.per_stimulus, args.seed + frac, owner
        )
        sizes.append(
            {
                "label": "full" if frac == 1 else f"1/{frac}",
                "slug": slug,
                "stimuli": n_stim,
                "ratings": n,
                "study_id": study.pk,
            }
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # planner statistics, as autovacuum would have them
    setup_s = time.perf_counter() - t0

    # Stored analyses: the full study's for the timing, the tiny one's for the warm-up.
    from annotation.models import Study

    analyses = {}
    for slug in (WARM_SLUG, sizes[-1]["slug"]):
        study = Study.objects.get(slug=slug)
        t = time.perf_counter()
        analysis = services.analysis_create(study=study, method=args.method, enqueue=False)
        analysis = services.analysis_run(analysis_id=analysis.pk)
        if analysis.status != analysis.Status.DONE:
            sys.exit(f"analysis of {slug} failed: {analysis.error}")
        analyses[slug] = {"id": analysis.pk, "seconds": time.perf_counter() - t}
    return {"sizes": sizes, "setup_s": setup_s, "analyses": analyses}


# --- The measuring subprocess -------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _export(slug: str, fmt: str, analysis_id: int | None, path: str) -> int:
    from annotation.models import Study
    from scoring.exports.formats import export_stream
    from scoring.models import Analysis

    study = Study.objects.get(slug=slug)
    analysis = Analysis.objects.get(pk=analysis_id) if analysis_id else None
    _, chunks = export_stream(study, fmt, analysis=analysis)
    written = 0
    with open(path, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
            written += len(chunk)
    return written


def worker(spec: dict) -> dict:
    django_setup()
    fmt, out = spec["format"], spec["out"]
    _export(WARM_SLUG, fmt, spec["warm_analysis"], os.devnull)
    gc.collect()

    # Timed passes: the best time, and the largest RSS delta of any pass.
    seconds, rss_delta = float("inf"), 0
    for _ in range(spec["repeat"]):
        gc.collect()
        reset = _reset_hwm()
        rss0 = _status_kib("VmRSS") if reset else _status_kib("VmHWM")
        t0 = time.perf_counter()
        size = _export(spec["slug"], fmt, spec["analysis"], out)
        seconds = min(seconds, time.perf_counter() - t0)
        rss_delta = max(rss_delta, _status_kib("VmHWM") - rss0)

    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    _export(spec["slug"], fmt, spec["analysis"], os.devnull)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "seconds": seconds,
        "bytes": size,
        "rss_delta_mib": rss_delta / 1024,
        "rss_exact": reset,
        "tracemalloc_peak_mib": (peak - base) / MIB,
    }


def run_worker(spec: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"worker failed ({spec['format']} {spec['slug']}):\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- Counting what was exported -----------------------------------------------------------


def count_rows(fmt: str, path: Path) -> int:
    if fmt.endswith("parquet"):
        import pyarrow.parquet as pq

        return pq.read_metadata(path).num_rows
    if fmt == "json":
        with path.open("rb") as f:
            return len(json.load(f)["stimuli"])
    # CSV: no cell holds a line break in this fixture, so lines - header = rows.
    lines = 0
    with path.open("rb") as f:
        while block := f.read(8 * MIB):
            lines += block.count(b"\n")
    return lines - 1


# --- Main --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--db", default="bench_export", help="database to create and drop")
    parser.add_argument("--keep-db", action="store_true", help="leave the database for a look")
    parser.add_argument("--stimuli", type=int, default=6049, help="stimuli of the full study")
    parser.add_argument("--raters", type=int, default=300)
    parser.add_argument("--per-stimulus", type=int, default=30, help="raters per stimulus")
    parser.add_argument("--fractions", default="8,4,2,1", help="sizes as 1/N of the full study")
    parser.add_argument("--method", default="bt500", help="MOS method of the stored analysis")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="timed passes per export (best)")
    parser.add_argument(
        "--formats",
        default=",".join(RATING_FORMATS + DATASET_FORMATS),
        help="formats to time (default: all five)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.quick:
        args.stimuli = min(args.stimuli, 600)
    args.fractions = sorted({int(f) for f in args.fractions.split(",")}, reverse=True)
    if args.fractions[-1] != 1:
        args.fractions.append(1)  # the dataset exports need the full study
    formats = args.formats.split(",")
    if unknown := set(formats) - set(RATING_FORMATS + DATASET_FORMATS):
        sys.exit(f"unknown formats: {', '.join(sorted(unknown))}")
    if args.db in {"test", "test_test", "postgres"}:
        sys.exit(f"refusing to use the shared database {args.db!r}")

    workdir = Path(tempfile.mkdtemp(prefix="bench-export-"))
    os.environ.update(bench_env(args.db, workdir / "media"))
    os.environ.pop("CELERY_BROKER_URL", None)  # analysis_create(enqueue=False) queues nothing
    started = time.perf_counter()
    results: list[dict] = []
    failures: list[str] = []
    try:
        fresh_db(args.db, sys.executable, str(ROOT / "manage.py"))
        django_setup()
        data = setup_data(args)
        from django.db import connections

        connections.close_all()  # the workers, not this process, talk to the database now
        full = data["sizes"][-1]
        print(
            f"setup: {data['setup_s']:.1f} s for {sum(s['ratings'] for s in data['sizes']):,} "
            f"ratings in {len(data['sizes'])} studies; analysis ({args.method}) of the full "
            f"study: {data['analyses'][full['slug']]['seconds']:.1f} s",
            flush=True,
        )
        jobs = [(f, size, None) for f in RATING_FORMATS if f in formats for size in data["sizes"]]
        jobs += [
            (f, full, data["analyses"][full["slug"]]["id"]) for f in DATASET_FORMATS if f in formats
        ]
        for fmt, size, analysis_id in jobs:
            out = workdir / f"{size['slug']}.{fmt}"
            spec = {
                "format": fmt,
                "slug": size["slug"],
                "analysis": analysis_id,
                "warm_analysis": data["analyses"][WARM_SLUG]["id"] if analysis_id else None,
                "out": str(out),
                "repeat": args.repeat,
            }
            measured = run_worker(spec)
            rows = count_rows(fmt, out)
            expected = size["ratings"] * 13 if fmt in RATING_FORMATS else size["stimuli"]
            if rows != expected:
                failures.append(f"{fmt} {size['label']}: {rows} rows, expected {expected}")
            out.unlink()
            results.append(
                {
                    "format": fmt,
                    "size": size["label"],
                    "stimuli": size["stimuli"],
                    "ratings": size["ratings"],
                    "rows": rows,
                    "expected_rows": expected,
                    **measured,
                }
            )
            r = results[-1]
            print(
                f"  {fmt:<16}{r['size']:>5}  {r['rows']:>10,} rows  {r['seconds']:7.2f} s  "
                f"{r['rows'] / r['seconds']:>10,.0f} rows/s  tracemalloc "
                f"{r['tracemalloc_peak_mib']:6.1f} MiB  RSS +{r['rss_delta_mib']:6.1f} MiB",
                flush=True,
            )
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            drop_db(args.db)
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average at the end {os.getloadavg()[0]:.2f}; "
        f"total {time.perf_counter() - started:.0f} s"
    )
    if not all(r["rss_exact"] for r in results):
        print("note: /proc/self/clear_refs not writable; RSS delta is over the HWM at start")
    head = (
        f"{'format':<16}{'size':>5}{'stimuli':>9}{'ratings':>10}{'exported rows':>15}"
        f"{'seconds':>9}{'rows/s':>11}{'file MiB':>10}{'tracemalloc MiB':>17}{'RSS delta MiB':>15}"
    )
    print(head)
    for r in results:
        print(
            f"{r['format']:<16}{r['size']:>5}{r['stimuli']:>9,}{r['ratings']:>10,}"
            f"{r['rows']:>15,}{r['seconds']:>9.2f}{r['rows'] / r['seconds']:>11,.0f}"
            f"{r['bytes'] / MIB:>10.1f}{r['tracemalloc_peak_mib']:>17.2f}"
            f"{r['rss_delta_mib']:>15.1f}"
        )
    print("tracemalloc = Python heap peak above its level before the export (traced pass);")
    print("RSS delta   = process resident high-water mark minus RSS before (timed pass).")
    print()
    for fmt in RATING_FORMATS:
        rows = [r for r in results if r["format"] == fmt]
        if not rows:
            continue
        small, big = rows[0], rows[-1]
        print(
            f"{fmt}: {big['ratings'] / small['ratings']:.1f}x the ratings -> tracemalloc "
            f"{small['tracemalloc_peak_mib']:.2f} -> {big['tracemalloc_peak_mib']:.2f} MiB, "
            f"RSS delta {small['rss_delta_mib']:.1f} -> {big['rss_delta_mib']:.1f} MiB"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"setup": data, "results": results}, indent=2))
    for message in failures:
        print("WRONG ROW COUNT:", message)
    print("row counts:", "WRONG" if failures else "all as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
