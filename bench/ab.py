"""A/B of one benchmark between a git revision and the working tree, in one run.

    python bench/ab.py rating  --base ff5cb7e --rounds 2 [-- extra bench args]
    python bench/ab.py scoring --base ff5cb7e --rounds 2 [-- extra bench args]

The base revision is checked out in a temporary git worktree; the benchmark's own
script runs there (A) and here (B), rounds alternating A, B, B, A, ... so that
drift of the machine falls on both sides alike. Each run writes its --json; the
table shows every round, the median of each side and B / A. Not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (label, path into the bench's --json, higher is better)
METRICS = {
    "rating": [
        ("floor req/s", ("floor_rps",), True),
        ("cycle req/s", ("cycle_rps",), True),
        ("ratings/s (closed loop)", ("ratings_ps",), True),
        ("(b) p99 next ms", ("latency_ms", "next", 1), False),
        ("(b) p99 submit ms", ("latency_ms", "submit", 1), False),
        ("(b) median next ms", ("median_next_ms",), False),
        # CPU per rating moves far less with a busy or throttled VM than rates do.
        ("gunicorn CPU ms per rating", ("cpu", "cycle", "gunicorn_cores", "/ratings_ps"), False),
        ("PostgreSQL CPU ms per rating", ("cpu", "cycle", "postgres_cores", "/ratings_ps"), False),
    ],
    "scoring": [
        ("sharpness whole path s", ("measured", "sharpness", "whole", "seconds"), False),
        ("sharpness overhead", ("measured", "sharpness", "whole", "overhead"), False),
        ("JOINT whole path s", ("measured", "JOINT", "whole", "seconds"), False),
        ("JOINT overhead", ("measured", "JOINT", "whole", "overhead"), False),
    ],
}


def dig(data, path):
    root = data
    for key in path:
        if isinstance(key, str) and key.startswith("/"):  # cores / rate: CPU ms per unit
            return float(data) / float(root[key[1:]]) * 1000
        if key in ("sharpness", "JOINT") and isinstance(data, list):
            data = next(m["summary"] for m in data if m["label"] == key)
            continue
        data = data[key]
    return float(data)


def run_once(tree: Path, bench: str, db: str, extra: list[str], out: Path) -> dict:
    script = tree / "bench" / f"bench_{bench}.py"
    cmd = [sys.executable, str(script), "--db", db, "--json", str(out), *extra]
    done = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        raise SystemExit(f"{script} failed in {tree} (exit {done.returncode})")
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=sorted(METRICS))
    parser.add_argument("--base", required=True, help="git revision for side A")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    extra = argv[cut + 1 :]  # the bench's own arguments
    work = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    base_tree = work / "base"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(base_tree), args.base],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    # The benches run their servers and workers with the tree's own .venv: share ours.
    (base_tree / ".venv").symlink_to(ROOT / ".venv")
    results: dict[str, list[dict]] = {"A": [], "B": []}
    try:
        order = [("A", "B") if i % 2 == 0 else ("B", "A") for i in range(args.rounds)]
        for i, pair in enumerate(order):
            for side in pair:
                tree = base_tree if side == "A" else ROOT
                out = work / f"{side}-{i}.json"
                print(
                    f"round {i + 1}: {side} ({args.base if side == 'A' else 'working tree'})",
                    flush=True,
                )
                results[side].append(
                    run_once(tree, args.bench, f"bench_ab_{args.bench}_{side.lower()}", extra, out)
                )
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT)
    print()
    print(f"A = {args.base}, B = working tree; {args.rounds} round(s) each, alternating")
    print(
        f"{'metric':<28}{'A rounds':>24}{'B rounds':>24}{'A median':>11}{'B median':>11}"
        f"{'B / A':>8}"
    )
    for label, path, _higher in METRICS[args.bench]:
        try:
            a = [dig(r, path) for r in results["A"]]
            b = [dig(r, path) for r in results["B"]]
        except (KeyError, StopIteration, TypeError):
            continue
        ma, mb = statistics.median(a), statistics.median(b)
        print(
            f"{label:<28}{', '.join(f'{v:.3g}' for v in a):>24}"
            f"{', '.join(f'{v:.3g}' for v in b):>24}{ma:>11.4g}{mb:>11.4g}"
            f"{(mb / ma if ma else float('nan')):>8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
