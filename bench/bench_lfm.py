"""Benchmark of the torch LFM (scoring.joint.lfm) against the NumPy/SciPy oracle. Not a test.

The oracle is the plain reference of JOINT_SPEC.md kept with the tests
(``tests/scoring/joint/lfm_oracle.py``: one channel at a time, SciPy ``cg``).
Input: the real image CoCosNet_23 resized (PIL bicubic) to each size, so the
CG runs on natural content (it always runs its 6 iterations there). Everything
in float64. For each size it prints the oracle's time and the torch times (best
of ``--repeat`` interleaved rounds) for the eager and compiled backends, the
ratio of the best times, the median of the per-round ratios (robust to a
machine whose load drifts), the ratio of process CPU time (all threads; on a
shared machine the least disturbed figure, but it does not credit torch's
threads), and how many values differ from the oracle (the contract: at most 1 grey level; a
run where every channel's brightest pixel lands on 254 on one side only moves
most values by 1 through the joint renormalisation, spec step 6).

    .venv/bin/python bench/bench_lfm.py                       # CPU, eager + compile
    .venv/bin/python bench/bench_lfm.py --device cuda --batch 8
    .venv/bin/python bench/bench_lfm.py --sizes 1024x768 --backends eager

Each timed call starts after ``--settle`` seconds of quiet (default 0.3): after
a call, the oracle's OpenBLAS threads (SciPy's ``cg`` takes its dot products
from OpenBLAS, threaded) keep spinning for a while, and the torch call timed
right after it ran 1.5x slower on this 2-core VM (0.19 against 0.12 s at
1024x768), so whichever backend came first after the oracle looked slow.

``--batch N`` times N copies of the image in one call (the torch side batches
them; the oracle's time is multiplied by N). The compiled backend's first call
(the build, cached on disk by inductor afterwards) is reported separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scoring.joint.lfm import lfm_tensor  # noqa: E402
from tests.scoring.joint import lfm_oracle  # noqa: E402

IMAGE = ROOT / "tests" / "data" / "agin_samples" / "CoCosNet_23.png"


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, settle: float) -> tuple[float, float]:
    """(wall seconds, process CPU seconds over all threads) of one call, started after
    ``settle`` seconds in which spinning thread pools go back to sleep."""
    _sync(device)
    time.sleep(settle)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="512x512,1024x768,2048x2048", help="WxH list")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backends", default="eager,compile")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds per size")
    ap.add_argument("--batch", type=int, default=1, help="images per torch call")
    ap.add_argument(
        "--settle", type=float, default=0.3, help="seconds of quiet before each timed call"
    )
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    device = torch.device(args.device)
    cpu = torch.device("cpu")
    backends = [b for b in args.backends.split(",") if b]
    base = Image.open(IMAGE).convert("RGB")
    print(
        f"LFM float64 | {platform.processor() or platform.machine()} | "
        f"torch {torch.__version__} threads={torch.get_num_threads()} | device={device} "
        f"| batch={args.batch} | settle={args.settle}s | load={os.getloadavg()[0]:.2f}"
    )
    header = f"{'size':>10} {'oracle s':>9}"
    for b in backends:
        header += f" {b + ' s':>10} {'x best':>6} {'x med':>6} {'x cpu':>6}"
        header += f" {'diff>0':>7} {'max':>4}"
    print(header)
    rows = []
    for w, h in (_size(s) for s in args.sizes.split(",")):
        img = np.asarray(base.resize((w, h), Image.Resampling.BICUBIC))
        x = torch.from_numpy(img.transpose(2, 0, 1).copy())[None].repeat(args.batch, 1, 1, 1)
        x = x.to(device)
        row: dict = {"size": f"{w}x{h}"}
        ref = lfm_oracle.lfm(img)
        outs = {}
        for b in backends:
            t0 = time.perf_counter()
            outs[b] = lfm_tensor(x, backend=b)  # warm-up (and the build, for compile)
            _sync(device)
            row[b] = {"first_call_s": time.perf_counter() - t0, "times": []}
        # interleaved rounds: on a shared machine the load drifts, so each round times
        # the oracle and every backend back to back and the ratio is taken per round
        oracle_times, oracle_cpu = [], []
        for b in backends:
            row[b]["cpu"] = []
        for _ in range(args.repeat):
            wall, cpu_s = _timed(lambda img=img: lfm_oracle.lfm(img), cpu, args.settle)
            oracle_times.append(wall * args.batch)
            oracle_cpu.append(cpu_s * args.batch)
            for b in backends:
                wall, cpu_s = _timed(lambda b=b, x=x: lfm_tensor(x, backend=b), device, args.settle)
                row[b]["times"].append(wall)
                row[b]["cpu"].append(cpu_s)
        row["oracle_s"] = min(oracle_times)
        row["oracle_cpu_s"] = min(oracle_cpu)
        line = f"{w}x{h:>5} {row['oracle_s']:9.3f}"
        for b in backends:
            times = row[b]["times"]
            ratios = [o / t for o, t in zip(oracle_times, times, strict=True)]
            d = np.abs(outs[b][0].permute(1, 2, 0).cpu().numpy().astype(int) - ref)
            row[b] |= {
                "s": min(times),
                "ratio_best": row["oracle_s"] / min(times),
                "ratio_median": float(np.median(ratios)),
                "cpu_ratio": row["oracle_cpu_s"] / min(row[b]["cpu"]),
                "diff_pixels": int((d > 0).sum()),
                "max_diff": int(d.max()),
            }
            line += (
                f" {min(times):10.3f} {row['oracle_s'] / min(times):6.1f}"
                f" {np.median(ratios):6.1f} {row[b]['cpu_ratio']:6.1f}"
                f" {int((d > 0).sum()):7d} {int(d.max()):4d}"
            )
        print(line, flush=True)
        rows.append(row)
    for b in backends:
        firsts = ", ".join(f"{r['size']}: {r[b]['first_call_s']:.1f}s" for r in rows)
        print(f"first call ({b}): {firsts}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
