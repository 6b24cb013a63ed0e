"""A pytest plugin for the trusted side of grading: it records results and runs student code remotely.

Loaded by the grader (runner.py) as `-p labs.grader.trusted.plugin --grading-report FILE`. It appends
one JSON line per event, flushed at once, so that a test process that ends early still
leaves behind everything it finished:

    {"event": "collected", "tests": [{"nodeid", "function", "exercise"}...]}
    {"event": "start", "nodeid": ...}
    {"event": "result", "nodeid", "outcome": "passed"|"failed", "message", "output", "where", "seconds"}
    {"event": "finished"}

`--grading-only FILE` restricts the run to the node ids listed in FILE (one per line).

`--grading-code DIR` (a folder holding `labs/` with the submission's exercise modules) makes
the fixtures `basics`, `mlp`, `conv` and `models` of tests/conftest.py hand out proxies
(proxies.py): this process then never imports the student's code, which runs in a confined
worker process, a fresh one for every exercise.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

EXERCISE_MARKER = re.compile(r"ex\d+_\d+")
KEPT_ZYGOTE: dict = {}  # {"zygote": Zygote}: set by labs.check's process, which runs pytest again and again
MAX_MESSAGE = 3000
MAX_OUTPUT = 2000


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grading")
    group.addoption("--grading-report", metavar="FILE", help="append the grader's JSON lines to FILE")
    group.addoption("--grading-only", metavar="FILE", help="run only the node ids listed in FILE")
    group.addoption("--grading-code", metavar="DIR", help="run the exercise modules of DIR/labs in confined workers")
    group.addoption("--grading-forbid", metavar="DIR", action="append", default=[], help="a folder the workers must not reach")
    group.addoption("--grading-timeout", metavar="SECONDS", type=float, default=60.0, help="seconds a worker may take per test")


def pytest_configure(config: pytest.Config) -> None:
    code = config.getoption("grading_code")
    if code:
        config.pluginmanager.register(_Workers(config, Path(code)), "grading-workers")
    path = config.getoption("grading_report")
    if path:
        config.pluginmanager.register(_Recorder(config, path, config.getoption("grading_only")), "grading-recorder")


def exercise_of(item: pytest.Item) -> str | None:
    return next((m.name for m in item.iter_markers() if EXERCISE_MARKER.fullmatch(m.name)), None)


class _Workers:
    """One confined worker per exercise (remote.WorkerManager), started before each test's fixtures."""

    def __init__(self, config: pytest.Config, code: Path) -> None:
        from labs import REPO_ROOT  # this process's copy of the course: the trusted workspace
        from labs.grader import confinement
        from labs.grader.trusted.proxies import WorkerManager

        forbidden = [REPO_ROOT, Path.cwd(), *map(Path, config.getoption("grading_forbid"))]
        log = Path.cwd() / "workers.log"
        self.manager = WorkerManager(code, REPO_ROOT, forbidden, confinement.Limits(), config.getoption("grading_timeout"), log,
                                     zygote=KEPT_ZYGOTE.get("zygote"))

    def module(self, name: str):
        return self.manager.module(name)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.manager.begin_test(exercise_of(item))

    def pytest_sessionfinish(self) -> None:
        self.manager.close()


def _shorten(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[: limit // 2] + f"\n... [{len(text) - limit} characters cut] ...\n" + text[-limit // 2 :]


def _plain_message(excinfo: pytest.ExceptionInfo) -> str:
    """The exception in plain words: its type and message, without a traceback.

    For hypothesis, the first of the failures it found, with its falsifying example.
    """
    error = excinfo.value
    group = getattr(error, "exceptions", None)
    if isinstance(group, tuple) and group and all(isinstance(e, BaseException) for e in group):
        return _shorten(f"hypothesis found {len(group)} different failures; the first:\n{_describe_error(group[0])}", MAX_MESSAGE)
    return _shorten(_describe_error(error), MAX_MESSAGE)


def _describe_error(error: BaseException) -> str:
    text, kind = str(error), type(error).__name__
    if kind == "WorkerLost":
        body = text
    elif "Timeout" in text and "pytest-timeout" in text:
        body = "the test ran past its time limit (does your code loop forever?)"
    elif kind in {"AssertionError", "Failed"}:
        body = text
    else:
        body = f"{kind}: {text}"
    notes = [str(note) for note in getattr(error, "__notes__", [])
             if str(note).startswith(("Falsifying", "Failing test case")) or "example" in str(note)]  # hypothesis's wordings
    return "\n".join([body, *notes])


class _Recorder:
    def __init__(self, config: pytest.Config, path: str, only: str | None) -> None:
        self.config = config
        self.file = open(path, "a", encoding="utf-8")
        self.only = set(open(only, encoding="utf-8").read().split("\n")) - {""} if only else None
        self.results: dict[str, dict] = {}
        self.confinement_written = False

    def _write(self, **event) -> None:
        self.file.write(json.dumps(event) + "\n")
        self.file.flush()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if self.only is not None:
            dropped = [item for item in items if item.nodeid not in self.only]
            items[:] = [item for item in items if item.nodeid in self.only]
            config.hook.pytest_deselected(items=dropped)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        tests = []
        for item in session.items:
            exercise = exercise_of(item)
            function = getattr(item, "originalname", item.name)
            tests.append({"nodeid": item.nodeid, "function": f"{item.path.name}::{function}", "exercise": exercise})
        self._write(event="collected", tests=tests)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._write(event="collect_error", where=report.nodeid, message=_shorten(str(report.longrepr), 4000))

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self._write(event="start", nodeid=nodeid)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        entry = self.results.setdefault(item.nodeid, {"outcome": "passed", "message": "", "output": ""})
        entry["seconds"] = round(entry.get("seconds", 0.0) + report.duration, 4)  # setup, call and teardown
        if report.failed and entry["outcome"] == "passed":
            entry["outcome"] = "failed"
            where = "" if call.when == "call" else f" (during test {call.when})"
            entry["message"] = (_plain_message(call.excinfo) if call.excinfo else str(report.longrepr)[:MAX_MESSAGE]) + where
            entry["where"] = str(getattr(call.excinfo.value, "where", "") if call.excinfo else "")[:500]  # the student's line
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "failed"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            entry["message"] = f"skipped, which earns no points: {reason}"
        if report.capstdout or report.capstderr:
            # each phase's report holds the output of the phases before it: keep the latest
            entry["output"] = _shorten(report.capstdout + report.capstderr, MAX_OUTPUT)

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        workers = self.config.pluginmanager.get_plugin("grading-workers")
        if workers is not None and workers.manager.confinement and not self.confinement_written:
            self._write(event="confinement", applied=workers.manager.confinement)  # the first worker's own record
            self.confinement_written = True
        printed = workers.manager.take_output() if workers is not None else ""
        if printed:
            entry = self.results.setdefault(nodeid, {"outcome": "failed", "message": "no result", "output": ""})
            entry["output"] = _shorten(entry["output"] + printed, MAX_OUTPUT)
        self._write(event="result", nodeid=nodeid, **self.results.pop(nodeid, {"outcome": "failed", "message": "no result", "output": ""}))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self._write(event="finished")
        self.file.close()
