"""How long the grader takes for one full submission (all exercises), before and after a change.

Times `python -m labs grade --submission solutions` end to end, as an instructor runs it, in
this checkout and, with `--baseline DIR`, in another checkout (say, the commit before the
isolated grader: `git worktree add /tmp/before 54a37ba`), interleaved so that both see the same
machine load, and reports the medians and their ratio.

    python benchmarks/bench_grading.py --repeats 3 --baseline /tmp/before
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from reporting import REPO_ROOT, RESULTS_DIR, save_json, utc_timestamp


def time_grading(checkout: Path, submission: Path) -> float:
    """Seconds for one `python -m labs grade` of `submission`, run from `checkout`."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    env.pop("LABS_IMPL", None)
    start = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", "labs", "grade", "--submission", str(submission)],
                             cwd=checkout, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if process.returncode != 0 or "Total:" not in process.stdout:
        raise SystemExit(f"grading in {checkout} failed:\n{process.stdout[-2000:]}\n{process.stderr[-2000:]}")
    total = next(line for line in process.stdout.splitlines() if line.startswith("Total:"))
    print(f"  {checkout}: {elapsed:.1f} s ({total})")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout to time side by side")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "grading-cpu.json")
    args = parser.parse_args(argv)

    submission = REPO_ROOT / "solutions"
    checkouts = {"this checkout": REPO_ROOT}
    if args.baseline is not None:
        checkouts["baseline"] = args.baseline.resolve()
    times: dict[str, list[float]] = {name: [] for name in checkouts}
    for repeat in range(args.repeats):
        print(f"round {repeat + 1} of {args.repeats}")
        for name, checkout in checkouts.items():
            times[name].append(time_grading(checkout, submission))
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "what": "seconds to grade one full submission (the solutions, every exercise), end to end",
        "timestamp": utc_timestamp(),
        "machine": f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.2f}",
        "torch_threads_note": "graded tests run on one thread in the worker",
        "seconds": times,
        "median_seconds": medians,
    }
    if "baseline" in medians:
        result["ratio_this_over_baseline"] = medians["this checkout"] / medians["baseline"]
    for name, value in medians.items():
        print(f"median {name}: {value:.1f} s")
    if "ratio_this_over_baseline" in result:
        print(f"ratio this / baseline: {result['ratio_this_over_baseline']:.2f}")
    save_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
