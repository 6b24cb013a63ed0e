"""The grader's trusted side at work: `python -m labs grade`.

It grades the exercise modules of `labs/` (or of a submission folder) with this repository's
own tests, exercise by exercise, treating the code under test as untrusted (the threat model
is stated in labs/grader/__init__.py):

1. Two folders are laid out. The trusted one (private to this user) holds a copy of the graded
   `tests/` and of the course's code; the code folder holds the course's code and the
   submission's exercise modules (`basics.py`, `mlp.py`, `conv.py`, `models.py`). Test files
   that come with a submission are never copied.
2. pytest runs the tests in child processes, in the trusted folder. They never import the
   student's code: the fixtures hand out proxies (proxies.py), and each exercise's code runs in
   a fresh worker process, confined by the operating system (labs/grader/confinement.py).
   Only data comes back.
3. A worker that crashes, hangs past the per-test limit or floods its output costs the test
   it was running; the next test gets a new worker. The whole run ends within a time budget.
4. Results are computed here from the trusted side's records, after every process is gone
   (report.py), and results.json is written atomically.

Scoring: every test function is worth one point, shared among its parametrized cases; an
exercise's points are the sum over its tests, so partial work earns partial credit. Tests
of provided code (marked `provided`) are not graded.

Exit status: 0 when grading finished (whatever the score), 2 when it could not grade.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from labs import EXERCISE_MODULES, REPO_ROOT
from labs.provided.atomic import write_json_atomically
from labs.grader import confinement, reaping
from labs.grader.catalog import Exercise, graded_test_files, load_catalog
from labs.grader.trusted import by_hand
from labs.grader.trusted.report import HIDDEN_PREFIX, ExerciseResult, GradeReport, TestResult, _fmt

POLL_SECONDS = 0.05  # how often a test process's events are looked at: a run ends at most this long after its last test
HANG_MARGIN = 30.0  # seconds past the per-test limit before a silent test process is killed
DEFAULT_TIMEOUT = 60.0  # seconds for one test
DEFAULT_TIME_BUDGET = 900.0  # seconds for a whole submission
EXIT_GRADED, EXIT_NOT_GRADED = 0, 2


class GradingError(Exception):
    """Grading could not run (as opposed to code that fails its tests).

    `instructor` is True when the cause is the course's, never the student's (tests that cannot
    be collected, hidden tests missing): results.json says so in `could_not_grade`, and class
    grading stops instead of giving every student 0.
    """

    def __init__(self, message: str, instructor: bool = False) -> None:
        super().__init__(message)
        self.instructor = instructor


# ---------------------------------------------------------------- reading the submission


@dataclass
class SubmittedModule:
    """One exercise module as the submission holds it: its text, or why it cannot be graded."""

    name: str  # "mlp"
    text: str | None = None
    where: str = ""  # "labs/mlp.py" or "mlp.py", as found in the submission
    problem: str = ""  # missing, a link, not a regular file, not UTF-8


def read_submission(source: Path) -> dict[str, SubmittedModule]:
    """The exercise modules of `source` (directly or under labs/), read as data.

    A submission is data: each file is opened without following links (O_NOFOLLOW on every
    component below `source`) and must be a regular file, so a module that is a symbolic link
    to the solutions, the hidden tests or a root-only file is refused, never read with the
    grader's rights.
    """
    found = {}
    for module in EXERCISE_MODULES:
        found[module] = SubmittedModule(module, problem=f"{module}.py is missing from the submission")
        for parts in (("labs", f"{module}.py"), (f"{module}.py",)):
            text, problem = _read_regular_file(source, parts)
            if text is not None or problem != "missing":
                where = "/".join(parts)
                found[module] = SubmittedModule(module, text, where, "" if text is not None else f"{where} {problem}")
                break
    if not any(m.text is not None or "missing" not in m.problem for m in found.values()):
        names = ", ".join(f"{m}.py" for m in EXERCISE_MODULES)
        raise GradingError(f"no exercise module ({names}) found in {source} or {source / 'labs'}")
    return found


MAX_MODULE_BYTES = 2 * 2**20


def _read_regular_file(root: Path, parts: tuple[str, ...]) -> tuple[str | None, str]:
    """(text, "") or (None, why not): "missing", "is a symbolic link", ... Never follows a link below `root`."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        folder = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None, "missing"
    opened = [folder]
    try:
        for part in parts[:-1]:
            try:
                folder = os.open(part, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | nofollow, dir_fd=folder)
            except FileNotFoundError:
                return None, "missing"
            except OSError:
                return None, f"is not a folder of the submission ({part}/ is a link or a special file)"
            opened.append(folder)
        try:
            fd = os.open(parts[-1], os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0), dir_fd=folder)
        except FileNotFoundError:
            return None, "missing"
        except OSError:  # ELOOP: the last component is a link
            return None, "is a symbolic link: a submission is graded from regular files only"
        opened.append(fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, "is not a regular file: a submission is graded from regular files only"
        if info.st_size > MAX_MODULE_BYTES:
            return None, f"is {info.st_size:,} bytes, over the limit of {MAX_MODULE_BYTES:,}"
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(MAX_MODULE_BYTES + 1)
        try:
            return data.decode("utf-8"), ""
        except UnicodeDecodeError:
            return None, "is not UTF-8 text"
    finally:
        for fd in reversed(opened):
            os.close(fd)


# ---------------------------------------------------------------- workspaces


def _copy_provided(target: Path) -> None:
    shutil.copytree(REPO_ROOT / "labs", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".backup"))


def build_trusted_workspace(workspace: Path, extra_tests: Path | None = None) -> None:
    """The graded tests and the course's code, for the pytest processes that never run student code.

    Its exercise modules are replaced by a guard that fails loudly if anything imports one.
    """
    if not (REPO_ROOT / "tests" / "conftest.py").is_file():
        raise GradingError(f"the graded tests are missing: expected {REPO_ROOT / 'tests' / 'conftest.py'}", instructor=True)
    _copy_provided(workspace / "labs")
    for module in EXERCISE_MODULES:
        (workspace / "labs" / f"{module}.py").write_text(
            f"raise ImportError('the grader never imports student code: labs.{module} runs in a worker')\n"
        )
    (workspace / "tests").mkdir()
    for path in graded_test_files():
        shutil.copy(path, workspace / "tests" / path.name)
    if extra_tests is not None:
        for path in sorted(Path(extra_tests).glob("test_*.py")):
            shutil.copy(path, workspace / "tests" / f"{HIDDEN_PREFIX}{path.name.removeprefix('test_')}")
    for name in ("pyproject.toml", "conftest.py"):
        shutil.copy(REPO_ROOT / name, workspace / name)


def build_code_folder(modules: dict[str, SubmittedModule], code: Path) -> None:
    """The course's code and the submission's modules, readable by the worker's user.

    A module that cannot be graded is replaced by one that raises ImportError saying why.
    """
    _copy_provided(code / "labs")
    for module in modules.values():
        target = code / "labs" / f"{module.name}.py"
        if module.text is None:
            target.write_text(f"raise ImportError({module.problem!r})\n")
        else:
            target.write_text(module.text, encoding="utf-8")
    for folder, dirs, files in os.walk(code):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(Path(folder) / name, 0o644)


# ---------------------------------------------------------------- running pytest


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # the last line of a killed process may be cut
            break
    return events


@dataclass
class _Run:
    """One submission's grading: its folders and limits, shared by its test processes."""

    trusted: Path  # the graded tests and the course's code, private to this user
    code: Path  # the course's code and the submission's modules, for the workers
    forbid: list[Path]  # folders the workers must not reach
    timeout: float
    deadline: float  # time.monotonic() when the budget ends
    time_budget: float
    confinement: dict = field(default_factory=dict)  # what a worker applied, in its own words


def pytest_arguments(paths: list[str], marker_expr: str, report: Path, code: Path, timeout: float, forbid: list[Path]) -> list[str]:
    """pytest's arguments for a graded test process (the grader's and check()'s): the tests in `paths`
    that `marker_expr` selects, recorded into `report`, the student's code run from `code` in workers."""
    isolate = confinement.CAN_ISOLATE
    return [
        *paths, "--impl", "labs", "-m", marker_expr, "-p", "labs.grader.trusted.plugin", "--grading-report", str(report),
        *(["--grading-code", str(code), f"--grading-timeout={timeout}", *[f"--grading-forbid={p}" for p in forbid]]
          if isolate else []),
        f"--timeout={timeout + HANG_MARGIN if isolate else timeout}", "-q", "--tb=no", "--show-capture=no", "--no-header",
        "-p", "no:cacheprovider", "-o", "addopts=--strict-markers",
    ]


def _run_pytest(run: _Run, paths: list[str], marker_expr: str, only: list[str] | None, attempt: str) -> tuple[list[dict], str]:
    """Run the graded tests in `paths` once; return the plugin's events and how the process ended."""
    report = run.trusted / f"report-{attempt}.jsonl"
    command = [sys.executable, "-m", "pytest", *pytest_arguments(paths, marker_expr, report, run.code, run.timeout, run.forbid)]
    if only is not None:
        only_file = run.trusted / f"only-{attempt}.txt"
        only_file.write_text("\n".join(only) + "\n")
        command += ["--grading-only", str(only_file)]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "COV_"))}
    env.update(LABS_IMPL="labs", PYTHONPATH=str(run.trusted), PYTHONDONTWRITEBYTECODE="1")
    with open(run.trusted / f"pytest-{attempt}.log", "wb") as log:
        process = subprocess.Popen(command, cwd=run.trusted, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started: dict[str, float] = {}
        seen, size = 0, -1
        while process.poll() is None:
            time.sleep(POLL_SECONDS)
            if time.monotonic() > run.deadline:
                reaping.end_process(process)  # with its process group (the zygote among them)
                return _read_events(report), "out of time"
            current = _size(report)
            if current != size:  # read the events again only when more were written
                size = current
                events = _read_events(report)
                if events and events[-1]["event"] == "finished":  # all said: spare it a second of torch's teardown
                    reaping.end_process(process)
                    return events, "finished"
                for event in events[seen:]:
                    if event["event"] == "start":
                        started[event["nodeid"]] = time.monotonic()
                    elif event["event"] == "result":
                        started.pop(event["nodeid"], None)
                seen = len(events)
            if any(time.monotonic() - t > run.timeout + 2 * HANG_MARGIN for t in started.values()):
                reaping.end_process(process)
                return _read_events(report), "hung"
    reaping.kill_group(process.pid)  # anything it left behind in its group
    return _read_events(report), f"exit code {process.returncode}"


def _log_tail(workspace: Path, attempt: str, lines: int = 25) -> str:
    log = workspace / f"pytest-{attempt}.log"
    if not log.is_file():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def grade(source: str | Path | None = None, exercises: list[str] | None = None, timeout: float = DEFAULT_TIMEOUT,
          time_budget: float = DEFAULT_TIME_BUDGET, extra_tests: str | Path | None = None, shards: int | None = None) -> GradeReport:
    """Grade the exercise modules in `source` (default: this repository's labs/).

    The public tests run first, shared among `shards` test processes. Hidden tests (`extra_tests`)
    run after every public result is recorded, in test processes and workers of their own, so
    nothing a hidden test hands the student's code can reach what the student sees.

    Args:
        source: a folder holding basics.py, mlp.py, conv.py, models.py (directly or under labs/).
        exercises: exercise ids to grade (default: all).
        timeout: seconds allowed per test.
        time_budget: seconds allowed for the whole submission; tests not reached by then fail.
        extra_tests: a folder of instructor-only test files (test_*.py), graded like the public ones.
        shards: test processes that share the exercises (default: 2 on a machine with 2 or more CPUs).
            A test process waits while its worker runs, so one of them keeps one core busy.

    Raises:
        GradingError: grading could not run (no tests, unknown exercise id, tests that cannot be collected).
    """
    started = time.monotonic()
    source = Path(source) if source is not None else REPO_ROOT / "labs"
    if not source.is_dir():
        raise GradingError(f"submission folder {source} does not exist")
    if extra_tests is not None and not Path(extra_tests).is_dir():
        raise GradingError(f"extra tests folder {extra_tests} does not exist", instructor=True)
    catalog = load_catalog()
    known = {exercise.id: exercise for exercise in catalog}
    wanted = exercises or list(known)
    unknown = [ex for ex in wanted if ex not in known]
    if unknown:
        raise GradingError(f"unknown exercise id(s) {', '.join(unknown)}; the exercises are {', '.join(known)}")
    modules = read_submission(source)
    flags = by_hand.check_submission({name: (m.text, m.where) for name, m in modules.items() if m.text is not None},
                                     {exercise.id: exercise.functions for exercise in catalog})
    shards = max(1, min(shards or min(2, os.cpu_count() or 1), len(wanted)))
    trusted = Path(tempfile.mkdtemp(prefix="labs-grade-"))  # mode 0700: this user only
    code_root = Path(tempfile.mkdtemp(prefix="labs-code-"))
    try:
        os.chmod(code_root, 0o755)
        build_trusted_workspace(trusted, Path(extra_tests) if extra_tests is not None else None)
        build_code_folder(modules, code_root / "code")
        if not confinement.CAN_ISOLATE:  # Windows: the tests import the code directly, as plain pytest does
            shutil.rmtree(trusted / "labs")
            shutil.copytree(code_root / "code" / "labs", trusted / "labs")
        run = _Run(trusted, code_root / "code", [trusted, source.resolve()], timeout, time.monotonic() + time_budget, time_budget)
        public = ["tests", f"--ignore-glob=*{HIDDEN_PREFIX}*"]
        collected, results = _run_shards(run, public, [[known[ex] for ex in group] for group in share_out(wanted, shards)])
        public_seconds = time.monotonic() - started
        hidden = [f"tests/{path.name}" for path in sorted((trusted / "tests").glob(f"{HIDDEN_PREFIX}*.py"))]
        if hidden:  # after every public result is recorded: in processes and workers of their own
            more, more_results = _run_shards(run, hidden, [[known[ex] for ex in wanted]], first_shard=shards)
            collected, results = collected + more, {**results, **more_results}
    finally:
        shutil.rmtree(trusted, ignore_errors=True)
        shutil.rmtree(code_root, ignore_errors=True)
    label = "labs/ (your code)" if source.resolve() == (REPO_ROOT / "labs").resolve() else str(source)
    report = _report(label, catalog, wanted, modules, flags, collected, results)
    report.confinement = run.confinement
    report.seconds, report.public_seconds = time.monotonic() - started, public_seconds
    return report


def _run_shards(run: _Run, paths: list[str], groups: list[list[Exercise]], first_shard: int = 0) -> tuple[list[dict], dict[str, dict]]:
    """Each group of exercises in a test process of its own, side by side; their tests and results."""
    expressions = ["(" + " or ".join(exercise.marker for exercise in group) + ") and not provided" for group in groups]
    with ThreadPoolExecutor(max_workers=len(expressions)) as pool:
        runs = [pool.submit(_run_until_done, run, paths, expression, first_shard + shard)
                for shard, expression in enumerate(expressions)]
        outcomes = [future.result() for future in runs]
    collected = [test for shard_tests, _ in outcomes for test in shard_tests]
    results = {nodeid: result for _, shard_results in outcomes for nodeid, result in shard_results.items()}
    return collected, results


def _report(label: str, catalog: list[Exercise], wanted: list[str], modules: dict[str, SubmittedModule],
            flags: dict[str, list], collected: list[dict], results: dict[str, dict]) -> GradeReport:
    """The grade report from the test processes' records: points per test, messages in the student's terms."""
    cases = Counter(test["function"] for test in collected)
    by_marker = {exercise.marker: ExerciseResult(exercise) for exercise in catalog if exercise.id in wanted}
    for exercise in by_marker.values():
        exercise.flags = [flag.message() for flag in flags.get(exercise.exercise.id, [])]
    for test in collected:
        if test["exercise"] not in by_marker:
            continue
        exercise = by_marker[test["exercise"]]
        outcome = results.get(test["nodeid"], {"outcome": "failed", "message": "not run", "output": ""})
        message, output = outcome["message"], outcome.get("output", "")
        module = modules[exercise.exercise.module]
        if module.text is None and outcome["outcome"] != "passed":
            message = module.problem
        weight = 1.0 / cases[test["function"]]  # one point per test function, shared by its parametrized cases
        hidden = test["function"].startswith(HIDDEN_PREFIX)
        if hidden:  # say that it failed and what it was worth, nothing else
            message = "" if outcome["outcome"] == "passed" else f"a hidden test failed (worth {_fmt(weight)} point{'s' if weight != 1 else ''}; hidden tests show no details)"
            output = ""
        exercise.tests.append(TestResult(test["nodeid"], test["function"], exercise.exercise.id, weight, outcome["outcome"],
                                         message, output, where="" if hidden else str(outcome.get("where", "")),
                                         seconds=float(outcome.get("seconds", 0.0))))
    return GradeReport(label, list(by_marker.values()))


# Rough seconds that each exercise's graded tests take (the solutions, one thread per worker, on
# a 2-core laptop; benchmarks/bench_grading.py), only to share the exercises out fairly among the
# test processes. Exercises not named here take about a quarter of a second.
TYPICAL_SECONDS = {"4.1": 4.5, "1.14": 1.4, "2.5": 1.2, "2.6": 0.7, "3.1": 0.5, "2.2": 0.35, "1.13": 0.35}


def share_out(exercises: list[str], shards: int) -> list[list[str]]:
    """Split the exercises into `shards` groups of about equal time: the longest first, each to the least loaded."""
    groups: list[list[str]] = [[] for _ in range(shards)]
    loads = [0.0] * shards
    for exercise in sorted(exercises, key=lambda ex: -TYPICAL_SECONDS.get(ex, 0.25)):
        lightest = loads.index(min(loads))
        groups[lightest].append(exercise)
        loads[lightest] += TYPICAL_SECONDS.get(exercise, 0.25)
    return [group for group in groups if group]


def _run_until_done(run: _Run, paths: list[str], marker_expr: str, shard: int) -> tuple[list[dict], dict[str, dict]]:
    """Run pytest, and again on the tests it did not reach if its process ended early."""
    collected: list[dict] | None = None
    results: dict[str, dict] = {}
    pending: list[str] | None = None
    for attempt in range(1, 1000):
        tag = f"{shard}.{attempt}"  # this test process's report and log files
        events, ending = _run_pytest(run, paths, marker_expr, pending, tag)
        errors = [e for e in events if e["event"] == "collect_error"]
        if errors and HIDDEN_PREFIX in errors[0]["where"]:  # its traceback would show the hidden test's code
            raise GradingError("a hidden test file could not be collected: tell your instructor", instructor=True)
        if errors:
            raise GradingError(f"the tests could not be collected in {errors[0]['where']}:\n{errors[0]['message']}", instructor=True)
        batch = next((e["tests"] for e in events if e["event"] == "collected"), None)
        if batch is None and ending == "out of time":
            raise GradingError(f"grading ran out of its time budget of {run.time_budget:g} s before the tests started")
        if batch is None:
            hidden = any((run.trusted / "tests").glob(f"{HIDDEN_PREFIX}*.py"))  # the log may quote hidden tests
            raise GradingError(f"pytest did not start ({ending})" + ("" if hidden else f":\n{_log_tail(run.trusted, tag)}"))
        collected = collected if collected is not None else batch
        started = [e["nodeid"] for e in events if e["event"] == "start"]
        for event in events:
            if event["event"] == "result":
                results[event["nodeid"]] = event
            elif event["event"] == "confinement" and isinstance(event.get("applied"), dict) and not run.confinement:
                run.confinement.update(event["applied"])
        if any(e["event"] == "finished" for e in events):
            break
        if ending == "out of time":
            why = f"not run: grading ran out of its time budget of {run.time_budget:g} s"
            for test in collected:
                results.setdefault(test["nodeid"], {"outcome": "failed", "message": why, "output": ""})
            break
        culprit = next((nodeid for nodeid in started if nodeid not in results), None)
        if culprit is not None:
            why = "ran past its time limit and did not respond" if ending == "hung" else f"ended the test process ({ending})"
            results[culprit] = {"outcome": "failed", "message": f"this test {why}", "output": ""}
        pending = [test["nodeid"] for test in collected if test["nodeid"] not in results]
        if not pending:
            break
    return collected, results


def run_grader(exercises: list[str], submission: str | None, json_path: str | None, timeout: float, verbose: bool,
               time_budget: float = DEFAULT_TIME_BUDGET, extra_tests: str | None = None, shards: int | None = None) -> int:
    """`python -m labs grade`: print the table, write results.json if asked; 0 graded, 2 not.

    results.json is always written when asked, also when grading fails (score 0 and the reason).
    It is written after every process that grading started has ended: this process adopts what
    a worker leaves behind (a child subreaper, on Linux) and ends it.
    """
    reaping.become_subreaper()
    try:
        report = grade(submission, exercises or None, timeout, time_budget, extra_tests, shards)
    except GradingError as error:
        reaping.kill_children()
        reaping.sweep_scratch()
        print(f"could not grade: {error}", file=sys.stderr)
        if json_path:
            write_json_atomically(Path(json_path), not_graded_results(str(error), error.instructor))
        return EXIT_NOT_GRADED
    reaping.kill_children()
    reaping.sweep_scratch()  # what a zygote killed at the budget or as hung could not remove itself
    print(report.table(verbose=verbose))
    if json_path:
        write_json_atomically(Path(json_path), report.gradescope())
        print(f"wrote {json_path}")
    return EXIT_GRADED


def not_graded_results(reason: str, instructor: bool = False) -> dict:
    """results.json for a submission that could not be graded: 0 points, the reason, and whose it is."""
    return {"score": 0, "output": f"could not grade: {reason}", "tests": [],
            "could_not_grade": {"reason": reason, "instructor_error": instructor}}
