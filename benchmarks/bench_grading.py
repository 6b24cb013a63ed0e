"""How long the grader takes for one full submission (all exercises), before and after a change.

Times `python -m labs grade --submission solutions` end to end, as an instructor runs it, in
this checkout and, with `--baseline DIR`, in another checkout (say, the commit before the
layout change: `git worktree add /tmp/before d1bf9bd`), interleaved so that both see the same
machine load, and reports the medians and their ratio.

Each checkout grades its own `solutions/` with its own tests (`--submission own`, the default):
a reference written for one checkout may not import in another (the models of today import
labs.provided.fast_lrn), and a submission that fails to import grades faster, not fairer.
`--submission this` grades this checkout's solutions in both.

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


def time_grading(checkout: Path, submission: Path) -> tuple[float, str]:
    """Seconds for one `python -m labs grade` of `submission`, run from `checkout`, and its Total line."""
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
    return elapsed, total


def _commit(checkout: Path) -> str:
    """The checkout's commit, short, and "+changes" when its tracked files differ from it."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(checkout), *arguments], capture_output=True, text=True).stdout.strip()
    return (git("rev-parse", "--short", "HEAD") or "not a git checkout") + (" +changes" if git("status", "--porcelain", "-uno") else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="another checkout to time side by side (repeat for several)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first: the page cache, the interpreter's files")
    parser.add_argument("--submission", choices=("own", "this"), default="own",
                        help="grade each checkout's own solutions/ (default) or this checkout's in both")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "grading-cpu.json")
    args = parser.parse_args(argv)

    checkouts = {f"this checkout ({_commit(REPO_ROOT)})": REPO_ROOT}
    for baseline in args.baseline:
        checkouts[f"{baseline} ({_commit(baseline)})"] = baseline.resolve()
    times: dict[str, list[float]] = {name: [] for name in checkouts}
    totals: dict[str, str] = {}
    for repeat in range(-args.warmup, args.repeats):
        print(f"round {repeat + 1} of {args.repeats}" if repeat >= 0 else "warm-up round (not counted)")
        for name, checkout in checkouts.items():
            submission = (checkout if args.submission == "own" else REPO_ROOT) / "solutions"
            seconds, totals[name] = time_grading(checkout, submission)
            if repeat >= 0:
                times[name].append(seconds)
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "what": "seconds to grade one full submission (the solutions, every exercise), end to end",
        "timestamp": utc_timestamp(),
        "machine": f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.2f}",
        "torch_threads_note": "graded tests run on one thread in the worker",
        "submission": "each checkout's own solutions/" if args.submission == "own" else "this checkout's solutions/",
        "checkouts": {name: str(path) for name, path in checkouts.items()},
        "totals": totals,
        "seconds": times,
        "median_seconds": medians,
    }
    this = next(iter(medians))
    result["ratio_this_over_baseline"] = {name: round(medians[this] / value, 3) for name, value in medians.items() if name != this}
    for name, value in medians.items():
        print(f"median {name}: {value:.2f} s")
    for name, ratio in result["ratio_this_over_baseline"].items():
        print(f"ratio this / {name}: {ratio:.3f}")
    save_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
