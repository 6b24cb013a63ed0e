"""Grading a whole class: `python -m labs grade-class SUBMISSIONS --out DIR`.

Each student is graded exactly as `python -m labs grade --submission` grades one: by that very
command, in a process of its own, which sweeps away whatever the student's code left running
before it ends. So a class's scores are single grading's scores, N students at a time (`--jobs`,
by default one per CPU; each grading then gets CPU/N threads for torch).

The run resumes. A student counts as graded once `students/<id>/results.json` exists; it is
written last, atomically, after the feedback, so an interrupted run (Ctrl-C, a killed job, a
reboot) loses only the students in progress: run the same command again and only those are
graded. `--force` regrades everyone, and is required when the settings (exercises, limits,
tests, hidden tests) differ from those the folder was graded with.

A submission that cannot be graded (an empty folder, no exercise module, an unreadable or too
large archive) gets 0 points, results.json and feedback.md saying why, and a line in the report;
the run goes on. Hidden tests that cannot even be collected stop the run: that is the
instructor's to fix, and no student should see its traceback.

OUT/
  students/<id>/results.json     Gradescope's shape, as `grade --json` writes it
  students/<id>/feedback.md      for the student: points per exercise, each first failure in plain words
  students/<id>/submission.json  what was graded: where the modules were found, what was skipped
  grades.csv, report.md, plots/  the gradebook and the class report (gradebook.py)
  grade-class.json               the settings the folder was graded with
  work/<id>/                     the modules that were graded and the grader's log; may be deleted
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from labs import REPO_ROOT
from labs.grader import reaping
from labs.grader.catalog import CATALOG_PATH, Exercise, graded_test_files, load_catalog
from labs.grader.trusted.runner import DEFAULT_TIME_BUDGET, DEFAULT_TIMEOUT, not_graded_results
from labs.instructor.class_report import StudentGrade, feedback_markdown, points, write_grades_csv, write_report
from labs.instructor.submissions import MAX_BYTES, Submission, SubmissionProblem, find_submissions, unpack
from labs.provided.atomic import write_json_atomically, write_text_atomically

SETTINGS_FILE = "grade-class.json"


class ClassAbort(Exception):
    """Stop the whole run: the problem is the instructor's (hidden tests that cannot be collected)."""


@dataclass
class _Run:
    """What the graders of one run share."""

    out: Path
    exercises: list[str]
    timeout: float
    time_budget: float
    extra_tests: Path | None
    max_bytes: int
    env: dict[str, str]
    catalog: list[Exercise]
    graded_at: str
    stopping: threading.Event = field(default_factory=threading.Event)
    running: set[subprocess.Popen] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def default_jobs() -> int:
    """One grading per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def grade_class(submissions: Path, out: Path, jobs: int | None = None, exercises: list[str] | None = None,
                timeout: float = DEFAULT_TIMEOUT, time_budget: float = DEFAULT_TIME_BUDGET, extra_tests: Path | None = None,
                force: bool = False, max_bytes: int = MAX_BYTES, progress: bool = True) -> int:
    """Grade every submission in `submissions` into `out`; 0 when done, 2 when it cannot run, 130 when interrupted.

    Processes that an interrupted grading leaves behind are reparented to the nearest child
    subreaper: the CLI (`run_grade_class`) is one and sweeps them; a caller of this function
    should be one too (`reaping.become_subreaper()`, then `reaping.kill_children()`).
    """
    submissions, out = Path(submissions), Path(out)
    jobs = jobs or default_jobs()
    catalog = load_catalog()
    known = [exercise.id for exercise in catalog]
    unknown = [ex for ex in exercises or [] if ex not in known]
    if unknown:
        return _fail(f"unknown exercise id(s) {', '.join(unknown)}; the exercises are {', '.join(known)}")
    if not submissions.exists():
        return _fail(f"{submissions} does not exist")
    if out.resolve() == submissions.resolve() or submissions.resolve() in out.resolve().parents:
        return _fail(f"--out {out} is inside {submissions}: the next run would take it for a student; choose a folder outside")
    if extra_tests is not None:
        extra_tests = Path(extra_tests).resolve()
        if not extra_tests.is_dir():
            return _fail(f"the hidden tests folder {extra_tests} does not exist")
        if not list(extra_tests.glob("test_*.py")):
            return _fail(f"the hidden tests folder {extra_tests} holds no test_*.py file")
    wanted = [e for e in catalog if not exercises or e.id in exercises]
    settings = {
        "exercises": [e.id for e in wanted] if exercises else "all",
        "timeout": timeout,
        "time_budget": time_budget,
        "max_unpacked_bytes": max_bytes,
        "graded_tests": _digest(graded_test_files() + [REPO_ROOT / "conftest.py", CATALOG_PATH]),
        "hidden_tests": _digest(sorted(extra_tests.glob("test_*.py"))) if extra_tests else None,
    }
    out.mkdir(parents=True, exist_ok=True)
    previous = _read_json(out / SETTINGS_FILE)
    if previous and previous.get("settings") != settings and not force:
        changed = ", ".join(k for k in settings if previous.get("settings", {}).get(k) != settings[k])
        return _fail(f"{out} was graded with other settings (changed: {changed}); add --force to regrade everyone, or choose another --out")
    if force:
        for old in (out / "students").glob("*/results.json"):
            old.unlink()
    write_json_atomically(out / SETTINGS_FILE, {"submissions": str(submissions.resolve()), "settings": settings})

    try:
        found, notes = find_submissions(submissions, out / "work")
    except SubmissionProblem as problem:
        return _fail(str(problem))
    if not found:
        return _fail(f"no submission in {submissions}: expected one folder or .zip per student, Moodle's or Canvas's "
                     "download, or Gradescope's export")
    env = {k: v for k, v in os.environ.items() if k != "LABS_IMPL"}
    threads = str(max(1, default_jobs() // jobs))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # N gradings at once share the CPUs instead of fighting over them
        env.setdefault(name, threads)
    run = _Run(out, [e.id for e in wanted] if exercises else [], timeout, time_budget, extra_tests, max_bytes, env, wanted,
               datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))

    grades: dict[str, StudentGrade] = {}
    todo = []
    for submission in found:
        earlier = None if force else _load_graded(out / "students" / submission.key, submission)
        if earlier is not None:
            grades[submission.key] = earlier
        else:
            todo.append(submission)
    print(f"{len(found)} submission(s) in {submissions}: {len(found) - len(todo)} graded before, {len(todo)} to grade, "
          f"{jobs} at a time", flush=True)
    for note in notes:
        print(f"note: {note}", flush=True)

    started = time.monotonic()
    status = _grade_all(run, todo, jobs, grades, progress)
    if status != 0:
        return status
    elapsed = time.monotonic() - started

    ordered = [grades[s.key] for s in found]
    write_grades_csv(out / "grades.csv", ordered, wanted)
    header = [
        f"{len(found)} submission(s) from `{submissions}`, report written {run.graded_at}.",
        f"Exercises: {', '.join(e.id for e in wanted) if exercises else 'all'}; per-test limit {timeout:g} s, "
        f"{time_budget:g} s per submission; hidden tests: "
        + (f"{len(list(extra_tests.glob('test_*.py')))} file(s) from `{extra_tests}`." if extra_tests else "none."),
        f"This run graded {len(todo)} submission(s) in {elapsed:.0f} s ({jobs} at a time); "
        f"{len(found) - len(todo)} had been graded before. Gradebook: `grades.csv`; feedback: `students/<id>/feedback.md`.",
        *[f"Note: {note}." for note in notes],
    ]
    report = write_report(out, ordered, wanted, header)
    problems = sum(1 for g in ordered if g.problem)
    errors = sum(1 for g in ordered if g.results is None and not g.problem)
    rate = f" ({60 * len(todo) / elapsed:.1f} per minute)" if todo and elapsed >= 10 else ""
    print(f"graded {len(todo)} submission(s) in {elapsed:.0f} s{rate}; {problems} could not be graded"
          + (f"; {errors} not graded because the grader failed (rerun to retry)" if errors else ""))
    print(f"wrote {out / 'grades.csv'}, {report} and {out / 'students'}/<id>/feedback.md")
    return 0


def _grade_all(run: _Run, todo: list[Submission], jobs: int, grades: dict[str, StudentGrade], progress: bool) -> int:
    """Grade `todo`, `jobs` at a time, into `grades`; 0, or 130 when interrupted, 2 when aborted."""
    if not todo:
        return 0
    previous_handler = None
    if threading.current_thread() is threading.main_thread():  # `kill` (SIGTERM) stops a run as Ctrl-C does
        previous_handler = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    bar = tqdm(total=len(todo), desc="grading", unit="student", dynamic_ncols=True, disable=not progress, file=sys.stderr)
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="grade")
    futures: dict[Future, Submission] = {pool.submit(_grade_safely, run, s): s for s in todo}
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                grade = future.result()  # ClassAbort passes through; other errors are caught in _grade_safely
                if grade is None:
                    continue
                grades[grade.key] = grade
                bar.write(_one_line(grade))
                bar.update(1)
    except (KeyboardInterrupt, ClassAbort) as stop:
        _stop(run, futures)
        bar.close()
        graded = sum(1 for s in todo if s.key in grades)
        if isinstance(stop, ClassAbort):
            print(f"\nstopped: {stop}\nFix the hidden tests, then run the same command again.", file=sys.stderr)
            return 2
        print(f"\ninterrupted: {graded} of {len(todo)} graded in this run; run the same command again to grade the rest",
              file=sys.stderr)
        return 130
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    bar.close()
    return 0


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop(run: _Run, futures: dict[Future, Submission]) -> None:
    """Cancel what has not started and kill the gradings in progress; their students stay ungraded."""
    run.stopping.set()
    for future in futures:
        future.cancel()
    deadline = time.monotonic() + 60
    while any(not f.done() for f in futures) and time.monotonic() < deadline:
        with run.lock:
            processes = list(run.running)
        for process in processes:
            reaping.kill_process(process)
        time.sleep(0.1)


def _one_line(grade: StudentGrade) -> str:
    if grade.problem:
        return f"{grade.key}: could not be graded: {grade.problem}"
    if grade.results is None:
        return f"{grade.key}: not graded: {'; '.join(grade.notes)}"
    return f"{grade.key}: {points(grade.score)} / {points(float(grade.results.get('max_score', 0)))}"


def _grade_safely(run: _Run, submission: Submission) -> StudentGrade | None:
    """`_grade_one`, turning an unexpected error into an ungraded student (retried by the next run)."""
    try:
        return _grade_one(run, submission)
    except ClassAbort:
        raise
    except Exception as error:  # a bug here, a full disk: this student waits for the next run
        if run.stopping.is_set():
            return None
        return StudentGrade(submission.key, submission.label, submission.people, None,
                            [f"internal error: {type(error).__name__}: {error}"])


def _grade_one(run: _Run, submission: Submission) -> StudentGrade | None:
    """Unpack and grade one submission, then write its files; None when the run is stopping."""
    if run.stopping.is_set():
        return None
    work = run.out / "work" / submission.key
    info = {"key": submission.key, "label": submission.label, "people": [asdict(p) for p in submission.people],
            "sources": [name for _, name in submission.sources]}
    try:
        unpacked = unpack(submission, work, run.max_bytes)
    except SubmissionProblem as problem:
        results = not_graded_results(str(problem))
        grade = StudentGrade(submission.key, submission.label, submission.people, results, [], str(problem))
        _save(run, grade, {**info, "problem": str(problem)})
        return grade
    notes = list(unpacked.notes)
    graded_modules = {f"{exercise.module}.py" for exercise in run.catalog}
    missing = [name for name in unpacked.missing if name in graded_modules]
    if missing:
        notes.append(f"graded without {', '.join(missing)} (0 points in their exercises)")
    command = [sys.executable, "-m", "labs", "grade", *run.exercises, "--submission", str(unpacked.folder),
               "--json", str(work / "results.json"), "--timeout", str(run.timeout), "--time-budget", str(run.time_budget),
               "--shards", "1"]  # the students run side by side already: one test process each
    if run.extra_tests is not None:
        command += ["--extra-tests", str(run.extra_tests)]
    limit = run.time_budget + 2 * (run.timeout + 60) + 300  # grade ends itself within its budget; this is a backstop
    with open(work / "grade.log", "wb") as log:
        with run.lock:
            if run.stopping.is_set():
                return None
            process = subprocess.Popen(command, cwd=REPO_ROOT, env=run.env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
            run.running.add(process)
        try:
            returncode = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            reaping.kill_process(process)
            process.wait()
            returncode = None
        finally:
            with run.lock:
                run.running.discard(process)
    if run.stopping.is_set():
        return None
    results = _read_json(work / "results.json")
    log_name = (work / "grade.log").relative_to(run.out)
    if returncode is None or results is None:
        why = "did not finish in time" if returncode is None else f"ended with exit code {returncode} and no results"
        return StudentGrade(submission.key, submission.label, submission.people, None, [f"the grader {why}; see {log_name}"])
    if returncode != 0:  # `grade` exits 2 only for what is never the student's doing
        output = str(results.get("output", ""))
        if (results.get("could_not_grade") or {}).get("instructor_error"):
            raise ClassAbort(f"grading {submission.key}: {output.removeprefix('could not grade: ')}")
        return StudentGrade(submission.key, submission.label, submission.people, None, [f"{output}; see {log_name}"])
    grade = StudentGrade(submission.key, submission.label, submission.people, results, notes)
    _save(run, grade, {**info, "found_in": unpacked.found_in, "missing": unpacked.missing, "notes": notes})
    shutil.rmtree(work / "files", ignore_errors=True)  # unpacked archives: the graded modules stay in work/<id>/submission
    return grade


def _save(run: _Run, grade: StudentGrade, info: dict) -> None:
    """submission.json and feedback.md, then results.json: once it exists, the student counts as graded."""
    folder = run.out / "students" / grade.key
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomically(folder / "submission.json", info)
    write_text_atomically(folder / "feedback.md", feedback_markdown(grade, run.catalog, run.graded_at))
    write_json_atomically(folder / "results.json", grade.results)


def _load_graded(folder: Path, submission: Submission) -> StudentGrade | None:
    """A student graded by an earlier run, read back from its files; None when not graded yet."""
    results = _read_json(folder / "results.json")
    if results is None:
        return None
    info = _read_json(folder / "submission.json") or {}
    return StudentGrade(submission.key, submission.label, submission.people, results, list(info.get("notes", [])),
                        str(info.get("problem", "")))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_grade_class(submissions: str, out: str, jobs: int | None, exercises: list[str] | None, timeout: float,
                    time_budget: float, extra_tests: str | None, force: bool, max_unpacked_mb: float) -> int:
    """`python -m labs grade-class`: adopt what gradings leave behind, and end it when the run ends."""
    reaping.become_subreaper()
    try:
        return grade_class(Path(submissions), Path(out), jobs, exercises, timeout, time_budget,
                           Path(extra_tests) if extra_tests else None, force, int(max_unpacked_mb * 2**20))
    except KeyboardInterrupt:  # before or after grading: nothing half-written to undo
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        reaping.kill_children()

