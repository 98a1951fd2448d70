"""Benchmark of JOINT inference (scoring.joint.predictor). Not a test.

Random weights (seed 0: the timing does not depend on them) and ``--images``
PNG files made from the two AGIN samples (flips, crops, resizes to
``--size`` x 3/4 ``--size`` and ``--size`` x ``--size``), written to a
temporary folder so decoding is part of the cost. Reports, per batch size:

- bare forward: images/s of ``Predictor.predict_tensors`` on inputs prepared
  beforehand (the ceiling);
- serial: ``predict`` with ``num_workers=0``, and the share of its wall time in
  preprocessing (decode, LFM, partition, transforms) versus the forward;
- workers: ``predict`` with DataLoader workers (``--workers``, default the
  predictor's automatic choice), and its throughput as a share of the bare
  forward at the same batch size (the target is >= 70% at batch 32).

Each batch size is timed in ``--rounds`` interleaved rounds (forward, serial,
workers back to back): the table gives the best throughput of each, their
ratio ("vs fwd") and the median of the per-round ratios ("median"), which a
machine whose speed drifts between rounds moves least.

``--compare-lfm-order`` also reports how far ``lfm_order="after_resize"`` (LFM
on the 224 crop) moves the rationality input and R against the default order.

    .venv/bin/python bench/bench_predictor.py                      # CPU, 16 images
    .venv/bin/python bench/bench_predictor.py --device cuda --images 512 --batch-sizes 1,8,32,128
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scoring.joint.model import build_model  # noqa: E402
from scoring.joint.predictor import Predictor, PredictTiming  # noqa: E402
from scoring.joint.preprocess import (  # noqa: E402
    load_rgb,
    rationality_input,
    rationality_uint8,
    technical_input,
)

SAMPLES = ROOT / "tests" / "data" / "agin_samples"


def make_images(folder: Path, n: int, size: int) -> list[str]:
    """``n`` PNG files of natural content, half square, half 4:3."""
    bases = [load_rgb(SAMPLES / "CoCosNet_23.png"), load_rgb(SAMPLES / "Dreaml_coco_17.png")]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        im = bases[i % 2]
        if i // 2 % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        w, h = im.size
        x0, y0 = rng.integers(0, w // 4), rng.integers(0, h // 4)
        im = im.crop((x0, y0, x0 + 3 * w // 4, y0 + 3 * h // 4))
        im = im.resize((size, size if i % 4 < 2 else size * 3 // 4), Image.Resampling.BICUBIC)
        path = folder / f"img_{i:04d}.png"
        im.save(path)
        paths.append(str(path))
    return paths


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rank_corr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's correlation (no ties in float scores): does the order of images hold?"""
    if a.numel() < 3:
        return float("nan")
    ra, rb = (np.argsort(np.argsort(x.numpy())) for x in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def compare_precision(model, device, x_t, x_r, bs: int, common: dict) -> dict:
    """The reduced-precision forward (bfloat16 autocast) against float32, same inputs:
    how far the scores move (against their spread across images) and the speed of each
    (best of 3, interleaved)."""
    full = Predictor(model, device=device, num_workers=0, **common)
    half = Predictor(model, device=device, num_workers=0, autocast=True, **common)
    out32 = full.predict_tensors(x_t, x_r, batch_size=bs)
    out16 = half.predict_tensors(x_t, x_r, batch_size=bs)
    times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for _ in range(3):
        for label, p in (("float32", full), ("bfloat16", half)):
            sync(device)
            t0 = time.perf_counter()
            p.predict_tensors(x_t, x_r, batch_size=bs)
            sync(device)
            times[label].append(time.perf_counter() - t0)
    res: dict = {"images": int(x_t.shape[0]), "batch": bs}
    for name, a, b in zip("TRN", out32, out16, strict=True):
        d = (a - b).abs()
        res[name] = {
            "max_abs_diff": float(d.max()),
            "mean_abs_diff": float(d.mean()),
            "std_float32": float(a.std()),
            "rank_corr": _rank_corr(a, b),
        }
    res["speedup_best"] = min(times["float32"]) / min(times["bfloat16"])
    res["seconds"] = times
    return res


def compare_pool(model, device, paths: list[str], bs: int, args, common: dict) -> dict:
    """Each round scores every image as one ``predict`` call per batch (what Celery batch
    tasks do), once with the preprocessing pool kept between calls and once with
    workers started per call; the order alternates between rounds."""
    kept = Predictor(
        model, device=device, num_workers=args.workers, persistent_workers=True, **common
    )
    per_call = Predictor(model, device=device, num_workers=args.workers, **common)
    for p in (kept, per_call):
        p.predict(paths[: min(len(paths), bs)], batch_size=bs)  # warm-up; starts the pool

    def run(p: Predictor) -> float:
        t0 = time.perf_counter()
        for s in range(0, len(paths), bs):
            p.predict(paths[s : s + bs], batch_size=bs)
        return len(paths) / (time.perf_counter() - t0)

    rates: dict[str, list[float]] = {"kept": [], "per_call": []}
    for k in range(args.rounds):
        order = [("kept", kept), ("per_call", per_call)]
        for label, p in order if k % 2 == 0 else order[::-1]:
            rates[label].append(run(p))
    kept.close()
    ratios = [a / b for a, b in zip(rates["kept"], rates["per_call"], strict=True)]
    return {
        "batch": bs,
        "images": len(paths),
        "kept_img_s": rates["kept"],
        "per_call_img_s": rates["per_call"],
        "ratio_per_round": ratios,
        "ratio_median": float(np.median(ratios)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, help="default: 16 on CPU, 512 on CUDA")
    ap.add_argument("--size", type=int, default=512, help="image width in pixels")
    ap.add_argument("--batch-sizes", default="1,8,32")
    ap.add_argument("--workers", type=int, help="DataLoader workers (default: automatic)")
    ap.add_argument("--lfm-backend", default="eager", choices=["eager", "compile"])
    ap.add_argument("--lfm-order", default="before_resize")
    ap.add_argument(
        "--on-device",
        choices=["auto", "yes", "no"],
        default="auto",
        help="LFM/resize in the main process on the device (auto: only on CUDA)",
    )
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per batch size")
    ap.add_argument("--skip-serial", action="store_true", help="skip the num_workers=0 runs")
    ap.add_argument("--compare-lfm-order", action="store_true")
    ap.add_argument(
        "--persistent",
        action="store_true",
        help="the workers' predictor keeps its preprocessing pool between calls",
    )
    ap.add_argument(
        "--split-calls",
        action="store_true",
        help="the workers' pipeline as one predict call per batch (as Celery batch tasks make "
        "them) instead of one call for every image",
    )
    ap.add_argument(
        "--compare-pool",
        action="store_true",
        help="only an A/B in one run: one call per batch with the pool kept between calls "
        "against workers started per call, rounds interleaved (alternating which goes first)",
    )
    ap.add_argument(
        "--compare-precision",
        action="store_true",
        help="bfloat16 autocast forward against float32 on the same inputs: score differences "
        "and speed",
    )
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    device = torch.device(args.device)
    n = args.images or (512 if device.type == "cuda" else 16)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    on_device = {"auto": None, "yes": True, "no": False}[args.on_device]
    model = build_model(seed=0).eval()
    common = {
        "lfm_order": args.lfm_order,
        "lfm_backend": args.lfm_backend,
        "preprocess_on_device": on_device,
    }
    results: dict = {"device": str(device), "images": n, "size": args.size, "rows": []}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(
        f"JOINT predictor | {name} | torch {torch.__version__} threads={torch.get_num_threads()} "
        f"cores={os.cpu_count()} | {n} images of {args.size} px | lfm={args.lfm_backend}, "
        f"{args.lfm_order} | load={os.getloadavg()[0]:.2f}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), n, args.size)

        # inputs prepared once, for the bare forward
        t0 = time.perf_counter()
        rgbs = [load_rgb(p) for p in paths]
        x_t = torch.stack([technical_input(im) for im in rgbs])
        x_r = torch.stack([rationality_input(im) for im in rgbs])  # eager: no CPU compile
        prep_s = time.perf_counter() - t0
        print(f"serial CPU preprocessing, one process: {n / prep_s:.1f} images/s")
        if device.type == "cuda":
            x_t, x_r = x_t.pin_memory(), x_r.pin_memory()

        base = Predictor(model, device=device, num_workers=0, **common)
        print(
            f"{'batch':>5} {'forward img/s':>14} {'serial img/s':>13} {'prep %':>7} "
            f"{'fwd %':>6} {'workers img/s':>14} {'workers':>8} {'vs fwd':>7} {'median':>7} "
            f"{'starved %':>9}"
        )
        for bs in [] if args.compare_pool else sizes:  # --compare-pool: only that A/B
            base.predict_tensors(x_t[:bs], x_r[:bs], batch_size=bs)  # warm-up
            if not args.skip_serial:
                base.predict(paths[: min(n, 2 * bs)], batch_size=bs)  # warm-up
            par = Predictor(
                model,
                device=device,
                num_workers=args.workers,
                persistent_workers=args.persistent,
                **common,
            )
            par.predict(paths[: min(n, 2 * bs)], batch_size=bs)  # warm-up (compile builds)

            def pipeline(par=par, bs=bs) -> PredictTiming:
                if not args.split_calls:
                    par.predict(paths, batch_size=bs)
                    assert par.last_timing is not None
                    return par.last_timing
                t0 = time.perf_counter()
                parts = []
                for s in range(0, n, bs):
                    par.predict(paths[s : s + bs], batch_size=bs)
                    assert par.last_timing is not None
                    parts.append(par.last_timing)
                return PredictTiming(
                    images=n,
                    workers=parts[0].workers,
                    on_device=parts[0].on_device,
                    wait_s=sum(p.wait_s for p in parts),
                    prepare_s=sum(p.prepare_s for p in parts),
                    forward_s=sum(p.forward_s for p in parts),
                    total_s=time.perf_counter() - t0,
                )

            # interleaved rounds: this machine's speed drifts from minute to minute, so
            # each round times the forward and the pipeline back to back and the share
            # is taken per round (its median is reported, with the best of each)
            fwds, serials, pars = [], [], []
            for _ in range(args.rounds):
                sync(device)
                t0 = time.perf_counter()
                base.predict_tensors(x_t, x_r, batch_size=bs)
                sync(device)
                fwds.append(n / (time.perf_counter() - t0))
                if not args.skip_serial:
                    base.predict(paths, batch_size=bs)
                    assert base.last_timing is not None
                    serials.append(base.last_timing)
                pars.append(pipeline())
            fwd = max(fwds)
            shares = [tw.images_per_s / f for tw, f in zip(pars, fwds, strict=True)]
            row = {"batch": bs, "forward_img_s": fwd, "forward_runs": fwds}
            line = f"{bs:5d} {fwd:14.1f}"
            if serials:
                tm = max(serials, key=lambda t: t.images_per_s)
                prep = (tm.wait_s + tm.prepare_s) / tm.total_s
                fwd_share = tm.forward_s / tm.total_s
                row |= {
                    "serial_img_s": tm.images_per_s,
                    "prep_share": prep,
                    "forward_share": fwd_share,
                }
                line += f" {tm.images_per_s:13.1f} {100 * prep:7.1f} {100 * fwd_share:6.1f}"
            else:
                line += f" {'-':>13} {'-':>7} {'-':>6}"
            tw = max(pars, key=lambda t: t.images_per_s)
            row |= {
                "workers_img_s": tw.images_per_s,
                "workers": tw.workers,
                "workers_vs_forward": tw.images_per_s / fwd,
                "workers_vs_forward_per_round": shares,
                "workers_vs_forward_median": float(np.median(shares)),
                "starved_share": tw.wait_s / tw.total_s,
                "on_device": tw.on_device,
            }
            line += (
                f" {tw.images_per_s:14.1f} {tw.workers:8d} {100 * tw.images_per_s / fwd:6.1f}%"
                f" {100 * float(np.median(shares)):6.1f}% {100 * tw.wait_s / tw.total_s:8.1f}%"
            )
            print(line, flush=True)
            results["rows"].append(row)
            par.close()

        if args.compare_lfm_order:
            diffs, moved = [], []
            for im in rgbs:
                a = rationality_uint8(im).astype(int)
                b = rationality_uint8(im, lfm_order="after_resize").astype(int)
                diffs.append(np.abs(a - b))
            d = np.stack(diffs)
            xr_cheap = torch.stack([rationality_input(im, lfm_order="after_resize") for im in rgbs])
            _, r_def, _ = base.predict_tensors(x_t, x_r)
            _, r_cheap, _ = base.predict_tensors(x_t, xr_cheap)
            moved = (r_def - r_cheap).abs()
            results["lfm_order"] = {
                "mean_abs_grey": float(d.mean()),
                "share_differing": float((d > 0).mean()),
                "share_over_8": float((d > 8).mean()),
                "R_abs_diff_mean_random_weights": float(moved.mean()),
                "R_abs_diff_max_random_weights": float(moved.max()),
                "R_std_random_weights": float(r_def.std()),
            }
            print("lfm_order after_resize vs before_resize:", json.dumps(results["lfm_order"]))

        if args.compare_pool:
            for bs in sizes:
                row = compare_pool(model, device, paths, bs, args, common)
                results.setdefault("pool", []).append(row)
                print("pool kept vs started per call:", json.dumps(row), flush=True)

        if args.compare_precision:
            results["precision"] = compare_precision(model, device, x_t, x_r, max(sizes), common)
            print("bfloat16 autocast vs float32:", json.dumps(results["precision"]))

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
