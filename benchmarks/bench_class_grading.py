"""Submissions graded per minute by `python -m labs grade-class`, on a synthetic class.

    python benchmarks/bench_class_grading.py                # 41 submissions, --jobs 2, --timeout 10
    python benchmarks/bench_class_grading.py --jobs 4 --timeout 20
    python benchmarks/bench_class_grading.py --quick        # smoke test: 4 submissions, 2 exercises, nothing saved

The class mixes what a real one holds, each student's files a little different (a comment
naming the student), laid out as folders, zips with nested folders, Moodle folders and Canvas
files: the stubs, the solutions, every wrong implementation of tests/course/wrong_*.py, partial
work (some labs done, some modules missing), submissions that hang (`while True` in one exercise
function), that crash (`os._exit` in one), and three that cannot be graded (an empty folder, a
zip bomb, a folder without modules).

The clock covers the whole `grade-class` command, from start to report, over every exercise.
Then a sample of the class (one of each kind) is graded again alone, by `python -m labs grade
--json`, and every exercise's points must be equal. The machine is shared, so the load average
is sampled during the run, and the CPU seconds that grading used (every process it started,
from getrusage) give the rate an otherwise idle machine would allow.

Target: at least 6 submissions per minute on a 2-core machine, every score equal to single grading.
Results: benchmarks/results/class-grading-cpu.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from reporting import REPO_ROOT, RESULTS_DIR, device_name, save_json, utc_timestamp

from labs import EXERCISE_MODULES
from labs.grader.catalog import load_catalog
from labs.instructor.release import generate

CATALOG = {exercise.id: exercise for exercise in load_catalog()}
HANGS = ["1.2", "1.12", "2.3"]  # an exercise function that loops forever
CRASHES = ["1.3", "1.8", "2.7"]  # an exercise function that ends its process


def _wrong_implementations() -> list:
    return [w for path in sorted((REPO_ROOT / "tests" / "course" / "fixtures").glob("wrong_*.py"))
            for w in importlib.import_module(f"tests.course.fixtures.{path.stem}").WRONG]


STUBS = {path.stem: text for path, text in generate()[0].items() if path.suffix == ".py"}


def _modules(kind: dict[str, str], student: str) -> dict[str, str]:
    """{module: source}: "solution" or "stub" per module (absent: not submitted), each naming the student."""
    sources = {}
    for module, which in kind.items():
        text = (REPO_ROOT / "solutions" / f"{module}.py").read_text() if which == "solution" else STUBS[module]
        sources[module] = f"# handed in by {student}\n{text}"
    return sources


def _override(sources: dict[str, str], exercise_id: str, body: str) -> dict[str, str]:
    """Replace an exercise's first function by one with `body` (defined last, so it wins)."""
    exercise = CATALOG[exercise_id]
    function = exercise.functions[0]
    sources = dict(sources)
    sources[exercise.module] += f"\n\ndef {function}(*args, **kwargs):  # benchmark: misbehaves\n{body}\n"
    return sources


def build_class(root: Path, quick: bool) -> tuple[Path, dict[str, Path], dict[str, str]]:
    """The submissions folder, each gradable student's modules as a plain folder, and each student's kind."""
    submissions, modules_root = root / "submissions", root / "modules"
    submissions.mkdir(parents=True)
    everything = {m: "solution" for m in EXERCISE_MODULES}
    nothing = {m: "stub" for m in EXERCISE_MODULES}
    students: list[tuple[str, str, dict[str, str], str]] = []  # (key, kind, sources, layout)
    add = lambda key, kind, sources, layout="folder": students.append((key, kind, sources, layout))  # noqa: E731
    layouts = ["folder", "zip", "moodle", "labs-folder", "canvas"]
    for i in range(2 if quick else 3):
        add(f"stubs-{i}", "stubs", _modules(nothing, f"stubs-{i}"), layouts[i % 3])
    for i in range(2 if quick else 7):
        add(f"solutions-{i}", "solutions", _modules(everything, f"solutions-{i}"), layouts[i % len(layouts)])
    if not quick:
        for i, wrong in enumerate(_wrong_implementations()):
            sources = _modules(everything, f"wrong-{i}")
            assert sources[wrong.module].count(wrong.old) == 1, f"{wrong.name}: the edit no longer applies"
            sources[wrong.module] = sources[wrong.module].replace(wrong.old, wrong.new)
            add(f"wrong-{i}", f"wrong {wrong.exercise}", sources, layouts[i % 2])
        partials = [
            ("lab1", {"basics": "solution", "mlp": "solution", "conv": "stub", "models": "stub"}),
            ("labs1-2", {"basics": "solution", "mlp": "solution", "conv": "solution", "models": "stub"}),
            ("basics-only", {"basics": "solution"}),
            ("lab2-only", {"basics": "stub", "mlp": "stub", "conv": "solution", "models": "stub"}),
            ("half-lab1", {"basics": "solution", "mlp": "stub", "conv": "stub", "models": "stub"}),
        ]
        for i in range(12):
            name, kind = partials[i % len(partials)]
            add(f"partial-{name}-{i}", f"partial {name}", _modules(kind, f"partial-{i}"), layouts[i % len(layouts)])
        for i, exercise_id in enumerate(HANGS):
            add(f"hang-{exercise_id}", f"hangs in {exercise_id}",
                _override(_modules(everything, f"hang-{i}"), exercise_id, "    while True:\n        pass"), layouts[i % 2])
        for i, exercise_id in enumerate(CRASHES):
            add(f"crash-{exercise_id}", f"crashes in {exercise_id}",
                _override(_modules(everything, f"crash-{i}"), exercise_id, "    import os\n    os._exit(3)"), layouts[i % 2])
    kinds, singles = {}, {}
    for number, (key, kind, sources, layout) in enumerate(students):
        folder = modules_root / key
        folder.mkdir(parents=True)
        for module, text in sources.items():
            (folder / f"{module}.py").write_text(text)
        kinds[key] = kind
        singles[key] = folder
        if layout == "folder":
            shutil.copytree(folder, submissions / key)
        elif layout == "labs-folder":
            shutil.copytree(folder, submissions / key / "labs")
        elif layout == "zip":
            with zipfile.ZipFile(submissions / f"{key}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(folder.iterdir()):
                    zf.write(path, f"{key} lab/handed in/labs/{path.name}")
        elif layout == "moodle":  # the key becomes the Moodle ID
            shutil.copytree(folder, submissions / f"Student {number} Ñandú_{key}_assignsubmission_file_" / "labs")
        elif layout == "canvas":  # loose files; Canvas's IDs are numbers
            canvas_id = 9000 + number
            for path in folder.iterdir():
                shutil.copy(path, submissions / f"student{number}_{canvas_id}_{canvas_id * 10}_{path.name}")
            kinds[str(canvas_id)] = kinds.pop(key)
            singles[str(canvas_id)] = singles.pop(key)
    if not quick:
        (submissions / "empty").mkdir()
        (submissions / "no-modules").mkdir()
        (submissions / "no-modules" / "README.txt").write_text("I forgot the code\n")
        with zipfile.ZipFile(submissions / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            with zf.open("labs/data.bin", "w", force_zip64=True) as member:
                for _ in range(64):
                    member.write(bytes(2**20))
        for key in ("empty", "no-modules", "bomb"):
            kinds[key] = "cannot be graded"
    return submissions, singles, kinds


class LoadSampler:
    """The 1-minute load average every few seconds, in a thread."""

    def __init__(self, every: float = 5.0) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _points(results: dict) -> dict[str, tuple[float, float]]:
    points: dict[str, tuple[float, float]] = {}
    for test in results.get("tests", []):
        earned, possible = points.get(test["number"], (0.0, 0.0))
        points[test["number"]] = (earned + test["score"], possible + test["max_score"])
    return {k: (round(e, 6), round(p, 6)) for k, (e, p) in points.items()}


def _grade_alone(folder: Path, results: Path, timeout: float, exercises: list[str]) -> dict:
    command = [sys.executable, "-m", "labs", "grade", *exercises, "--submission", str(folder), "--json", str(results),
               "--timeout", str(timeout)]
    subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=3600)
    return json.loads(results.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="submissions graded at a time (default: 2)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per test (default: 10; the slowest honest test takes ~3 s here)")
    parser.add_argument("--keep", metavar="DIR", help="build the class and its results in DIR and keep them")
    parser.add_argument("--quick", action="store_true", help="smoke test: 4 submissions, exercises 1.1 and 1.2, nothing saved")
    args = parser.parse_args(argv)

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="labs-bench-class-"))
    exercises = ["1.1", "1.2"] if args.quick else []
    try:
        submissions, singles, kinds = build_class(root, args.quick)
        out = root / "out"
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "labs", "grade-class", str(submissions), "--out", str(out), "--jobs", str(args.jobs),
                   "--timeout", str(args.timeout), *(["--exercises", *exercises] if exercises else [])]
        print(f"grading {len(kinds)} submissions: {' '.join(command[1:])}", flush=True)
        load_before = os.getloadavg()
        cpu_before = _children_cpu()
        with LoadSampler() as load:
            started = time.perf_counter()
            process = subprocess.run(command, cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE)
            seconds = time.perf_counter() - started
        cpu_seconds = _children_cpu() - cpu_before
        print(process.stdout)
        if process.returncode != 0:
            print(f"grade-class failed with exit code {process.returncode}", file=sys.stderr)
            return 1
        per_minute = 60 * len(kinds) / seconds

        # A sample, graded alone: one of each kind (every hang and crash among them).
        sample, seen = [], set()
        for key, kind in kinds.items():
            group = kind.split()[0] if kind.startswith(("wrong", "partial")) else kind
            if key in singles and (group not in seen or kind.startswith(("hangs", "crashes"))):
                seen.add(group)
                sample.append(key)
        alone_dir = root / "alone"
        alone_dir.mkdir(exist_ok=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {key: pool.submit(_grade_alone, singles[key], alone_dir / f"{key}.json", args.timeout, exercises) for key in sample}
            alone = {key: future.result() for key, future in futures.items()}
        mismatches = {}
        for key in sample:
            in_class = _points(json.loads((out / "students" / key / "results.json").read_text()))
            if in_class != _points(alone[key]):
                mismatches[key] = {"class": in_class, "alone": _points(alone[key])}
        scores = {key: json.loads((out / "students" / key / "results.json").read_text()).get("score", 0) for key in kinds}
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    result = {
        "benchmark": "class-grading",
        "submissions": len(kinds),
        "kinds": {kind: sum(1 for k in kinds.values() if k == kind) for kind in sorted(set(kinds.values()))},
        "exercises": exercises or "all",
        "jobs": args.jobs,
        "timeout_per_test_s": args.timeout,
        "seconds": round(seconds, 1),
        "submissions_per_minute": round(per_minute, 2),
        "target_per_minute": 6,
        "met": per_minute >= 6 and not mismatches,
        "cpu_seconds": round(cpu_seconds, 1),
        "cpu_seconds_per_submission": round(cpu_seconds / len(kinds), 2),
        "per_minute_if_the_cores_were_ours": round(60 * len(kinds) * (os.cpu_count() or 1) / cpu_seconds, 2) if cpu_seconds else None,
        "load_average_1min": {"before": round(load_before[0], 2), "mean_during": round(statistics.fmean(load.samples), 2),
                              "max_during": round(max(load.samples), 2), "after": round(os.getloadavg()[0], 2)},
        "sample_graded_alone": sample,
        "sample_mismatches": mismatches,
        "mean_score": round(statistics.fmean(scores.values()), 2),
        "device": device_name(torch.device("cpu")),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timestamp": utc_timestamp(),
    }
    print(json.dumps({k: v for k, v in result.items() if k not in ("sample_graded_alone",)}, indent=2))
    print(f"\n{result['submissions_per_minute']} submissions per minute ({len(kinds)} in {seconds:.0f} s, --jobs {args.jobs}, "
          f"--timeout {args.timeout:g}); load average during the run {result['load_average_1min']['mean_during']} "
          f"(max {result['load_average_1min']['max_during']}) on {os.cpu_count()} CPUs; "
          f"{'every sampled score equals single grading' if not mismatches else f'MISMATCHES: {mismatches}'}")
    if args.quick:
        print("(quick mode: nothing saved)")
    else:
        save_json(RESULTS_DIR / "class-grading-cpu.json", result)
    return 0 if not mismatches else 1


if __name__ == "__main__":
    raise SystemExit(main())
