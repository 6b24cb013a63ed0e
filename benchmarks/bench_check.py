"""How long a student waits for a verdict: `check("1.4")` in a kernel beside `python -m labs grade 1.4`.

Both grade the same files with the same tests and verdicts: this checkout's labs/ (the stubs,
whose tests fail at once), or with `--submission solutions` the reference, whose tests run in full
as a finished exercise's do. `check()` keeps a warm checking process, so its first call pays
the start-up and the repeated calls are what a student in a notebook sees; `grade` starts
afresh every time, as from a terminal. Interleaved rounds, medians, ratio; saved to
benchmarks/results/check-cpu.json. Target: a repeated check under 2 s on 2 cores.

    python benchmarks/bench_check.py --repeats 5 --exercise 1.4 --submission solutions
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


def time_grade(exercise: str, folder: Path) -> tuple[float, str]:
    """Seconds for `python -m labs grade EXERCISE --submission FOLDER`, and its points ("5/5")."""
    env = {**os.environ}
    env.pop("LABS_IMPL", None)
    start = time.perf_counter()
    process = subprocess.run([sys.executable, "-m", "labs", "grade", exercise, "--submission", str(folder)], cwd=REPO_ROOT,
                             env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if process.returncode != 0 or "Total:" not in process.stdout:
        raise SystemExit(f"grade failed:\n{process.stdout[-2000:]}\n{process.stderr[-2000:]}")
    total = next(line for line in process.stdout.splitlines() if line.startswith("Total:"))  # "Total: 5 / 5 points (100%)"
    earned, possible = total.split()[1], total.split()[3]
    return elapsed, f"{earned}/{possible}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--exercise", default="1.4")
    parser.add_argument("--submission", choices=("labs", "solutions"), default="labs",
                        help="the files graded: this checkout's labs/ (default) or solutions/")
    parser.add_argument("--out", default=str(RESULTS_DIR / "check-cpu.json"))
    args = parser.parse_args(argv)
    os.environ.pop("LABS_SKIP_CHECKS", None)
    from labs.grader.trusted.check import check_folder

    folder = REPO_ROOT / args.submission
    start = time.perf_counter()
    first = check_folder(folder, args.exercise)
    first_seconds = time.perf_counter() - start
    checks, grades = [], []
    for round_ in range(args.repeats):
        start = time.perf_counter()
        report = check_folder(folder, args.exercise)
        checks.append(time.perf_counter() - start)
        seconds, graded = time_grade(args.exercise, folder)
        grades.append(seconds)
        print(f"round {round_ + 1}: check {checks[-1]:.2f} s ({report.score:g}/{report.max_score:g}), grade {grades[-1]:.2f} s ({graded})")
    result = {
        "what": f"seconds for a verdict on exercise {args.exercise} of {args.submission}/: check() repeated in one process "
                "vs python -m labs grade",
        "timestamp": utc_timestamp(),
        "machine": f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.2f}",
        "first_check_seconds": round(first_seconds, 2),
        "check_seconds": [round(t, 3) for t in checks],
        "grade_seconds": [round(t, 3) for t in grades],
        "check_median": round(statistics.median(checks), 3),
        "grade_median": round(statistics.median(grades), 3),
        "grade_over_check": round(statistics.median(grades) / statistics.median(checks), 2),
        "points": f"{report.score:g}/{report.max_score:g}",
        "grade_points": graded,
        "same_points": first.score == report.score and graded == f"{report.score:g}/{report.max_score:g}",
    }
    print(f"first check {first_seconds:.1f} s; median check {result['check_median']:.2f} s, "
          f"median grade {result['grade_median']:.2f} s ({result['grade_over_check']:.1f}x)")
    save_json(Path(args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
