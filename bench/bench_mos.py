"""Benchmark of the MOS engine (scoring.numerics.mos) against Netflix SUREAL. Not a test.

Synthetic, seeded crowd design at the AGIN scale: 6,049 stimuli, 300 raters,
each stimulus rated by a random 30 of them, 13 rating dimensions (about 2.36
million scores); 5 of the raters answer at random. For every method it reports
wall time (best of ``--repeat``) and peak traced memory (tracemalloc, a separate
run) of ``compute_dimensions`` on the whole frame, then, if ``sureal`` is
importable, SUREAL's time for the methods it has on the same data, the ratio,
and whether the results are equal.

SUREAL is not a dependency of the project. Install it in a separate venv and
run the benchmark there (our engine only needs numpy, scipy and pandas)::

    python3 -m venv .venv-bench
    .venv-bench/bin/pip install sureal numpy scipy pandas
    .venv-bench/bin/python bench/bench_mos.py

Equality with SUREAL is checked per dimension with SUREAL's own conventions:
BT.500 / P.913 with ``denominator="all"`` (SUREAL divides P + Q by the number of
stimuli, which in this sparse design rejects nobody; our default divides by the
rater's own count, and its verdict on the planted raters is printed too), and
z-scores without the 0-100 rescale. SUREAL needs a dense stimulus x rater
matrix and is slower: it runs once per dimension (``--sureal-dimensions`` limits
how many), and our engine is timed on the same dimensions, one ``compute`` call
per dimension, for the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scoring.numerics.mos import METHODS, compute, compute_dimensions  # noqa: E402

DIMENSIONS = [
    "overall",
    "technical",
    "luminance",
    "contrast",
    "detail",
    "blur",
    "artifacts",
    "rationality",
    "existence",
    "color",
    "layout",
    "context",
    "sensory_clarity",
]
# Our method -> (SUREAL model class name, our options that follow SUREAL's conventions)
SUREAL_MODELS = {
    "mean": ("MosModel", {}),
    "zscore": ("ZscoringMosModel", {"rescale": False}),
    "bt500": ("SubjrejMosModel", {"denominator": "all"}),
    "p913": ("BiasremvSubjrejMosModel", {"denominator": "all"}),
    "p910": ("SubjectMLEModelProjectionSolver2", {}),
}


def make_ratings(
    n_stimuli: int,
    n_raters: int,
    per_stimulus: int,
    n_dimensions: int,
    n_random: int,
    seed: int,
    labels: str = "int",
) -> tuple[pd.DataFrame, list[Any]]:
    """Long frame (dimension, rater, stimulus, score), ACR 1-5, and the random raters."""
    rng = np.random.default_rng(seed)
    dims = DIMENSIONS[:n_dimensions] + [f"dim{k}" for k in range(n_dimensions - len(DIMENSIONS))]
    # Which raters saw which stimulus: a random per_stimulus of n_raters, the same
    # raters for every dimension of the stimulus (they rate all scales at once).
    who = np.argsort(rng.random((n_stimuli, n_raters)), axis=1)[:, :per_stimulus]
    r = who.ravel()
    s = np.repeat(np.arange(n_stimuli), per_stimulus)
    base = rng.uniform(1.3, 4.7, n_stimuli)
    bias = rng.normal(0.0, 0.3, n_raters)
    noise = rng.uniform(0.3, 0.7, n_raters)  # NFLX-like after ACR rounding
    random_raters = rng.choice(n_raters, n_random, replace=False)
    is_random = np.isin(r, random_raters)
    frames = []
    for d in dims:
        psi = np.clip(base + rng.normal(0.0, 0.4, n_stimuli), 1.0, 5.0)
        x = psi[s] + bias[r] + noise[r] * rng.normal(size=len(r))
        x[is_random] = rng.integers(1, 6, int(is_random.sum()))
        frames.append(
            pd.DataFrame(
                {
                    "dimension": d,
                    "rater": r,
                    "stimulus": s,
                    "score": np.clip(np.round(x), 1.0, 5.0),
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    if labels == "str":
        frame["rater"] = pd.Series([f"w{i:03d}" for i in range(n_raters)]).to_numpy()[
            frame["rater"]
        ]
        frame["stimulus"] = pd.Series([f"img{j:05d}" for j in range(n_stimuli)]).to_numpy()[
            frame["stimulus"]
        ]
        return frame, sorted(f"w{i:03d}" for i in random_raters)
    # Database primary keys, as scoring.analyses.selectors.ratings_frame returns them.
    frame["rater"] += 1000
    frame["stimulus"] += 100_000
    return frame, sorted(int(i) + 1000 for i in random_raters)


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def peak_memory(fn: Callable[[], Any]) -> float:
    """Peak bytes allocated (numpy buffers included) while fn runs, in MiB."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


# --------------------------------------------------------------------------- SUREAL


def sureal_dataset(frame: pd.DataFrame) -> Any:
    """SUREAL's dataset object (dict-style opinion scores) for one dimension."""
    from sureal.tools.misc import empty_object

    ds = empty_object()
    ds.dataset_name = "bench"
    ds.ref_videos = [{"content_id": 0, "content_name": "c", "path": "ref"}]
    ds.dis_videos = [
        {
            "content_id": 0,
            "asset_id": k,
            "path": str(stim),
            "stimulus": stim,
            "os": dict(zip(g["rater"].tolist(), g["score"].tolist(), strict=True)),
        }
        for k, (stim, g) in enumerate(frame.groupby("stimulus", sort=True))
    ]
    return ds


def run_sureal(model_name: str, dataset: Any) -> tuple[float, dict[str, Any], Any]:
    import sureal.subjective_model as sm
    from sureal.dataset_reader import RawDatasetReader

    model = getattr(sm, model_name)(RawDatasetReader(dataset))
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        result = model.run_modeling()
        elapsed = time.perf_counter() - t0
    return elapsed, result, model.dataset_reader


def compare(method: str, ours: Any, result: dict[str, Any], reader: Any) -> dict[str, Any]:
    stim = ours.stimuli.set_index("stimulus")
    names = [v["stimulus"] for v in reader.dataset.dis_videos]
    out = {
        "max_abs_diff_mos": float(
            np.nanmax(
                np.abs(stim.loc[names, "mos"].to_numpy() - np.array(result["quality_scores"]))
            )
        ),
        "max_abs_diff_se": float(
            np.nanmax(
                np.abs(stim.loc[names, "se"].to_numpy() - np.array(result["quality_scores_std"]))
            )
        ),
    }
    observers = reader._get_list_observers()
    raters = ours.raters.set_index("rater").loc[observers]
    if "observer_rejected" in result:
        theirs = sorted(
            o for o, rej in zip(observers, result["observer_rejected"], strict=True) if rej
        )
        out["rejected_equal"] = theirs == sorted(ours.rejected)
        out["sureal_rejected"] = theirs
    if "observer_bias" in result:
        out["max_abs_diff_bias"] = float(
            np.nanmax(np.abs(raters["bias"].to_numpy() - np.array(result["observer_bias"])))
        )
    if "observer_inconsistency" in result:
        out["max_abs_diff_inconsistency"] = float(
            np.nanmax(
                np.abs(
                    raters["inconsistency"].to_numpy() - np.array(result["observer_inconsistency"])
                )
            )
        )
        out["num_iter_equal"] = result["num_iter"] == ours.info["n_iter"]
    out["equal_1e-6"] = all(v < 1e-6 for k, v in out.items() if k.startswith("max_abs")) and all(
        out.get(k, True) for k in ("rejected_equal", "num_iter_equal")
    )
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stimuli", type=int, default=6049)
    ap.add_argument("--raters", type=int, default=300)
    ap.add_argument("--per-stimulus", type=int, default=30)
    ap.add_argument("--dimensions", type=int, default=13)
    ap.add_argument("--random-raters", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--labels",
        choices=["int", "str"],
        default="int",
        help="rater/stimulus ids: integers (database keys, the platform's case) or strings",
    )
    ap.add_argument("--repeat", type=int, default=3, help="timing runs per method (best kept)")
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    ap.add_argument(
        "--sureal-dimensions",
        type=int,
        default=None,
        help="dimensions to run SUREAL on (default all; 0 skips SUREAL)",
    )
    ap.add_argument("--sureal-repeat", type=int, default=1, help="SUREAL runs per model")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    frame, planted = make_ratings(
        args.stimuli,
        args.raters,
        args.per_stimulus,
        args.dimensions,
        args.random_raters,
        args.seed,
        args.labels,
    )
    report: dict[str, Any] = {
        "command": "python bench/bench_mos.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "versions": {"numpy": np.__version__, "pandas": pd.__version__},
        "n_scores": len(frame),
        "design": f"{args.stimuli} stimuli x {args.per_stimulus} raters each (of {args.raters})"
        f" x {args.dimensions} dimensions, {args.random_raters} random raters, {args.labels} ids",
        "input_frame_mib": frame.memory_usage(deep=True).sum() / 2**20,
        "generate_s": time.perf_counter() - t0,
        "planted_random_raters": planted,
        "ours": {},
        "sureal": {},
    }
    print(f"{report['design']}: {len(frame):,} scores, frame {report['input_frame_mib']:.0f} MiB")

    print("\nours: compute_dimensions(frame, method) on all dimensions")
    print(f"{'method':12s} {'time s':>8s} {'peak MiB':>9s}  rejected (default options, 'overall')")
    for method in args.methods:
        secs, res = best_time(lambda m=method: compute_dimensions(frame, m), args.repeat)
        peak = peak_memory(lambda m=method: compute_dimensions(frame, m))
        rejected = res.verdicts.loc[res.verdicts["rejected"], "rater"].tolist()
        report["ours"][method] = {"seconds": secs, "peak_mib": peak, "rejected": rejected}
        shown = ", ".join(map(str, rejected[:8])) + (" ..." if len(rejected) > 8 else "")
        print(f"{method:12s} {secs:8.3f} {peak:9.1f}  {len(rejected)}: {shown}")
    print(f"planted random raters: {', '.join(map(str, planted))}")

    try:
        import sureal
    except ImportError:
        print("\nsureal is not importable here: no comparison (see the module docstring)")
        report["sureal"] = {"skipped": "sureal not importable"}
        args.sureal_dimensions = 0
    if args.sureal_dimensions is None or args.sureal_dimensions > 0:
        dims = list(frame["dimension"].unique())[: args.sureal_dimensions]
        sub = frame[frame["dimension"].isin(dims)]
        report["sureal"] = {"version": sureal.__version__, "dimensions": dims, "methods": {}}
        print(
            f"\nSUREAL {sureal.__version__} vs ours on {len(dims)} dimension(s) "
            f"({', '.join(dims)}; {len(sub):,} scores), per dimension summed"
        )
        print(
            f"{'method':12s} {'SUREAL s':>9s} {'ours s':>8s} {'ratio':>7s} "
            f"{'(+dataset build)':>16s}  equal to 1e-6"
        )
        for method in args.methods:
            if method not in SUREAL_MODELS:
                print(f"{method:12s} {'-':>9s}   (SUREAL 0.9.0 has no such model)")
                continue
            model_name, opts = SUREAL_MODELS[method]
            sureal_s = build_s = ours_s = 0.0
            checks = []
            for d in dims:
                one = sub[sub["dimension"] == d].drop(columns="dimension")
                tb = time.perf_counter()
                ds = sureal_dataset(one)
                build_s += time.perf_counter() - tb
                secs = float("inf")
                for _ in range(args.sureal_repeat):
                    t_run, result, reader = run_sureal(model_name, ds)
                    secs = min(secs, t_run)
                sureal_s += secs
                t_ours, ours = best_time(
                    lambda o=one, m=method, kw=opts: compute(o, m, **kw), args.repeat
                )
                ours_s += t_ours
                checks.append(compare(method, ours, result, reader))
            equal = all(c["equal_1e-6"] for c in checks)
            ratio = sureal_s / ours_s
            ratio_build = (sureal_s + build_s) / ours_s
            report["sureal"]["methods"][method] = {
                "model": model_name,
                "sureal_seconds": sureal_s,
                "dataset_build_seconds": build_s,
                "ours_seconds": ours_s,
                "ratio": ratio,
                "ratio_with_dataset_build": ratio_build,
                "equal_1e-6": equal,
                "checks": checks,
            }
            worst = {k: max(c[k] for c in checks) for k in checks[0] if k.startswith("max_abs")}
            report["sureal"]["methods"][method]["worst"] = worst
            shown = ", ".join(f"{k[13:]} {v:.1e}" for k, v in worst.items())
            if "rejected_equal" in checks[0]:
                n_rej = sum(len(c["sureal_rejected"]) for c in checks)
                shown += f", same rejected raters ({n_rej} in all)"
            print(
                f"{method:12s} {sureal_s:9.2f} {ours_s:8.4f} {ratio:6.0f}x {ratio_build:15.0f}x"
                f"  {equal}  (max |diff|: {shown})"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
