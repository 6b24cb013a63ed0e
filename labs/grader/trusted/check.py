"""`from labs import check`: the graded tests on your current files, from a notebook cell.

    check("1.4")        one exercise (or several: check("1.4", "1.5"))
    check()             every exercise

It runs the same graded tests as `python -m labs grade`, with the same verdicts and points, on
the files in labs/ as they are now (saved edits count; no kernel restart needed), and returns
the report: it prints as grade's table and renders as an HTML table in Jupyter.

How it stays fast: the first call starts a checking process with this kernel's own interpreter
(`sys.executable`, never `python` from PATH). That process is the trusted side of grading: it
has imported pytest and the graded tests once, and keeps a zygote that has imported torch once.
Each call copies your exercise modules into its code folder and runs the exercise's tests, each
exercise in a fresh confined worker forked from that zygote, exactly as grade does; only the
start-up is saved. The process ends with the kernel.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from labs import REPO_ROOT
from labs.grader.trusted.report import _fmt

SKIP_VARIABLE = "LABS_SKIP_CHECKS"  # set to 1 where check() cells should not grade (the course's own notebook runs)
START_SECONDS = 300.0  # the first call: Python, pytest, torch and the graded tests, on a slow laptop
CALL_SECONDS = 900.0  # one call's backstop; the per-test limit ends a looping test long before


# ---------------------------------------------------------------- the report a cell shows


@dataclass
class ExerciseCheck:
    id: str
    title: str
    earned: float
    possible: float
    problems: list[str] = field(default_factory=list)  # the flags and the first failure, in plain words
    where: str = ""  # where to look: "labs/mlp.py: softmax, log_softmax"


@dataclass
class CheckReport:
    """What check() returns: the points of each exercise checked, and what to fix first."""

    exercises: list[ExerciseCheck]
    table: str  # as `python -m labs grade` prints it

    @property
    def score(self) -> float:
        return sum(e.earned for e in self.exercises)

    @property
    def max_score(self) -> float:
        return sum(e.possible for e in self.exercises)

    def __getitem__(self, exercise_id: str) -> ExerciseCheck:
        return next(e for e in self.exercises if e.id == exercise_id)

    def __str__(self) -> str:
        return self.table

    def __repr__(self) -> str:
        return self.table

    def _repr_html_(self) -> str:
        rows = []
        for e in self.exercises:
            done = e.possible > 0 and abs(e.earned - e.possible) < 1e-9
            colour = "#1a7f37" if done else ("#9a6700" if e.earned > 0 else "#cf222e")
            problem = "<br>".join(html.escape(line) for line in e.problems[:4]) or "all tests pass"
            rows.append(
                f"<tr><td>{html.escape(e.id)}</td><td>{html.escape(e.title)}</td>"
                f"<td style='color:{colour};text-align:right'><b>{_fmt(e.earned)}/{_fmt(e.possible)}</b></td>"
                f"<td><code>{html.escape(e.where)}</code></td><td style='text-align:left'>{problem}</td></tr>"
            )
        return (
            "<table><thead><tr><th>id</th><th>exercise</th><th>points</th><th>where to look</th>"
            "<th>first failure</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            f"<p><b>Total: {_fmt(self.score)} / {_fmt(self.max_score)} points</b></p>"
        )


# ---------------------------------------------------------------- the kernel's side


class _Checker:
    """The checking process, started once per kernel, and one request at a time to it."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def ask(self, request: dict) -> dict:
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                self._start()
            try:
                self.process.stdin.write(json.dumps(request) + "\n")
                self.process.stdin.flush()
                line = _read_line(self.process, CALL_SECONDS)
            except (OSError, TimeoutError) as error:
                self.stop()
                raise RuntimeError(f"the checking process stopped answering ({error}); run check() again") from None
            return json.loads(line)

    def _start(self) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "COV_"))}
        env.update(PYTHONDONTWRITEBYTECODE="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "labs.grader.trusted.check"], cwd=REPO_ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        hello = json.loads(_read_line(self.process, START_SECONDS))
        if "error" in hello:
            self.stop()
            raise RuntimeError(hello["error"])

    def stop(self) -> None:
        if self.process is not None:
            from labs.grader import reaping

            reaping.kill_process(self.process)
            self.process.wait()
            self.process = None


def _read_line(process: subprocess.Popen, seconds: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(seconds)
    if reader.is_alive():
        raise TimeoutError(f"no answer in {seconds:g} s")
    if not result or not result[0]:
        raise OSError("it ended")
    return result[0]


_CHECKER = _Checker()


def check(*exercises: str) -> CheckReport | None:
    """Grade your current labs/ files: `check("1.4")`, several ids, or `check()` for every exercise.

    Returns the report (points per exercise, the first failure in plain words); in Jupyter it
    shows as a table. The verdicts are `python -m labs grade`'s.
    """
    ids = [str(e) for e in exercises]
    if os.environ.get(SKIP_VARIABLE, "").strip().lower() in {"1", "true", "yes"}:
        print(f"check({', '.join(repr(i) for i in ids)}) skipped: {SKIP_VARIABLE} is set")
        return None
    return check_folder(REPO_ROOT / "labs", *ids)


def check_folder(folder: str | Path, *exercises: str) -> CheckReport:
    """check() on the exercise modules of another folder (a benchmark's, a course check's)."""
    answer = _CHECKER.ask({"exercises": [str(e) for e in exercises], "source": str(Path(folder).resolve())})
    if "error" in answer:
        raise RuntimeError(answer["error"])
    report = CheckReport([ExerciseCheck(**e) for e in answer["exercises"]], answer["table"])
    return report


# ---------------------------------------------------------------- the checking process


def _serve() -> None:
    """Answer check requests on stdin, one JSON line each, until the kernel goes away."""
    import pytest  # noqa: F401 - imported once here, so that every request starts at once

    from labs.grader import confinement, reaping
    from labs.grader.catalog import load_catalog
    from labs.grader.trusted import by_hand, plugin, runner
    from labs.grader.trusted.proxies import Zygote

    import labs

    for name in labs.EXERCISE_MODULES:  # this process is the trusted side: the student's modules are never imported here
        sys.modules[f"labs.{name}"] = None
    reaping.become_subreaper()
    out = sys.stdout
    sys.stdout = sys.stderr  # pytest's and the tests' printing must not reach the channel to the kernel
    catalog = load_catalog()
    trusted = Path(tempfile.mkdtemp(prefix="labs-check-"))
    code_root = Path(tempfile.mkdtemp(prefix="labs-code-"))
    try:
        os.chmod(code_root, 0o755)
        runner.build_trusted_workspace(trusted)
        code = code_root / "code"
        os.chdir(trusted)
        sys.path.insert(0, str(trusted))
        forbid = [trusted, REPO_ROOT]
        if confinement.CAN_ISOLATE:
            shutil.copytree(REPO_ROOT / "labs", code / "labs", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".backup"))
            plugin.KEPT_ZYGOTE["zygote"] = Zygote(code, REPO_ROOT, forbid, confinement.Limits(), trusted / "workers.log")
        out.write(json.dumps({"ready": True}) + "\n")
        out.flush()
        for line in sys.stdin:
            try:
                answer = _answer(json.loads(line), catalog, trusted, code, forbid, runner, by_hand)
            except Exception as error:  # noqa: BLE001 - a request that cannot be answered says why
                answer = {"error": f"{type(error).__name__}: {error}"}
            out.write(json.dumps(answer) + "\n")
            out.flush()
    finally:
        zygote = plugin.KEPT_ZYGOTE.pop("zygote", None)
        if zygote is not None:
            zygote.shutdown()
        reaping.kill_children()
        shutil.rmtree(trusted, ignore_errors=True)
        shutil.rmtree(code_root, ignore_errors=True)


def _answer(request: dict, catalog, trusted: Path, code: Path, forbid: list[Path], runner, by_hand) -> dict:
    import pytest

    known = {exercise.id: exercise for exercise in catalog}
    wanted = [str(e) for e in request.get("exercises") or []] or list(known)
    unknown = [e for e in wanted if e not in known]
    if unknown:
        return {"error": f"unknown exercise id(s) {', '.join(unknown)}; the exercises are {', '.join(known)}"}
    source = Path(request["source"])
    modules = runner.read_submission(source)
    flags = by_hand.check_submission({n: (m.text, m.where) for n, m in modules.items() if m.text is not None},
                                     {e.id: e.functions for e in catalog})
    for module in modules.values():  # the current files, into the folder the warm zygote's workers import from
        target = code / "labs" / f"{module.name}.py"
        target.write_text(module.text if module.text is not None else f"raise ImportError({module.problem!r})\n", encoding="utf-8")
        os.chmod(target, 0o644)
    events_file = trusted / f"check-{time.monotonic_ns()}.jsonl"
    marker = "(" + " or ".join(known[e].marker for e in wanted) + ") and not provided"
    files = sorted({f"tests/test_{known[e].module}.py" for e in wanted if (trusted / "tests" / f"test_{known[e].module}.py").is_file()})
    os.environ["LABS_IMPL"] = "labs"
    pytest.main(runner.pytest_arguments(files or ["tests"], marker, events_file, code, runner.DEFAULT_TIMEOUT, forbid))
    events = runner._read_events(events_file)
    events_file.unlink(missing_ok=True)
    collected = next((e["tests"] for e in events if e["event"] == "collected"), [])
    results = {e["nodeid"]: e for e in events if e["event"] == "result"}
    report = runner._report("labs/ (your code)", catalog, wanted, modules, flags, collected, results)
    return {
        "table": report.table(),
        "exercises": [
            {"id": r.exercise.id, "title": r.exercise.title, "earned": r.earned, "possible": r.possible,
             "problems": r.problems(), "where": f"labs/{r.exercise.module}.py: {', '.join(r.exercise.functions)}"}
            for r in report.exercises
        ],
    }


if __name__ == "__main__":  # python -m labs.grader.trusted.check: the checking process
    try:
        _serve()
    except KeyboardInterrupt:
        pass
