"""The Gradescope autograder zip (`python -m labs gradescope-package`), unpacked and run as
Gradescope would, in a temporary folder laid out like /autograder.

setup.sh is not run (it installs packages); run_autograder runs with this interpreter
(PYTHON), under a temporary root (LABS_AUTOGRADER_ROOT), on exercises 1.1 and 1.4 only
(LABS_GRADE_EXERCISES), to keep the check short.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from labs import EXERCISE_MODULES
from labs.instructor.release import generate
from tests.course.fixtures.mutation import REPO_ROOT

SECRET = "OKAPI_51C2"
HIDDEN_TEST = f'''
import pytest
import torch

from tests.helpers import assert_close


@pytest.mark.ex1_1
def test_{SECRET.lower()}(basics):
    X = torch.tensor([[6.0, 8.0]])  # {SECRET}
    assert_close(basics.pairwise_squared_distances(X, torch.zeros(1, 2)), torch.tensor([[100.0]]), "{SECRET}")
'''


def _unpack_like_gradescope(archive: Path, source: Path) -> None:
    """Unpack keeping each member's permission bits, as `unzip` does (zipfile drops them)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            zf.extract(info, source)
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(source / info.filename, mode)


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("gradescope")
    hidden = base / "hidden"
    hidden.mkdir()
    (hidden / "test_extra.py").write_text(HIDDEN_TEST)
    archive = base / "autograder.zip"
    process = subprocess.run([sys.executable, "-m", "labs", "gradescope-package", "--out", str(archive), "--extra-tests", str(hidden)],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stdout + process.stderr
    return {"base": base, "archive": archive, "stdout": process.stdout}


def _autograde(package: dict, name: str, write_submission) -> tuple[subprocess.CompletedProcess, dict | None]:
    root = package["base"] / name / "autograder"
    _unpack_like_gradescope(package["archive"], root / "source")
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")  # Gradescope runs its copy
    (root / "submission").mkdir()
    write_submission(root / "submission")
    env = {**os.environ, "LABS_AUTOGRADER_ROOT": str(root), "PYTHON": sys.executable, "LABS_GRADE_EXERCISES": "1.1 1.4"}
    env.pop("LABS_IMPL", None)
    process = subprocess.run([str(root / "run_autograder")], cwd=package["base"], env=env, capture_output=True, text=True, timeout=1800)
    results = root / "results" / "results.json"
    return process, json.loads(results.read_text()) if results.exists() else None


def _solutions(folder: Path) -> None:
    for module in EXERCISE_MODULES:
        shutil.copy(REPO_ROOT / "solutions" / f"{module}.py", folder / f"{module}.py")


def _stubs(folder: Path) -> None:
    for path, text in generate()[0].items():
        if path.suffix == ".py" and path.stem in EXERCISE_MODULES:
            (folder / "labs").mkdir(exist_ok=True)
            (folder / "labs" / path.name).write_text(text)


@pytest.fixture(scope="module")
def autograded(package) -> dict:
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(_autograde, package, name, write) for name, write in (("solutions", _solutions), ("stubs", _stubs))}
        return {name: future.result() for name, future in futures.items()}


def test_the_zip_holds_what_gradescope_needs_and_never_the_solutions(package):
    with zipfile.ZipFile(package["archive"]) as zf:
        names = zf.namelist()
        modes = {info.filename: (info.external_attr >> 16) for info in zf.infolist()}
        setup = zf.read("setup.sh").decode()
    for required in ("setup.sh", "run_autograder", "labs/grader/trusted/runner.py", "labs/grader/exercises.json",
                     "tests/conftest.py", "tests/helpers.py", "conftest.py", "pyproject.toml", "requirements.txt",
                     "hidden_tests/test_extra.py"):
        assert required in names, f"the autograder zip lacks {required}"
    assert not [n for n in names if n.startswith("solutions/")], "the autograder zip holds the solutions"
    assert not [n for n in names if n.startswith("tests/course/") or "__pycache__" in n]
    for script in ("setup.sh", "run_autograder"):
        assert stat.S_IMODE(modes[script]) & 0o111, f"{script} is not executable in the zip"
    assert "requirements.txt" in setup and "pip install" in setup
    assert "1 hidden test file(s)" in package["stdout"]


def test_run_autograder_gives_the_solutions_full_marks_with_the_hidden_test(autograded):
    process, results = autograded["solutions"]
    assert results is not None, f"run_autograder wrote no results.json:\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
    assert results["score"] == results["max_score"] > 0, f"the solutions lost points on the autograder: {results['output']}"
    assert {t["number"] for t in results["tests"]} == {"1.1", "1.4"}
    hidden = [t for t in results["tests"] if t["name"].endswith("(hidden tests)")]
    assert hidden and all(t["visibility"] == "after_published" for t in hidden), f"the packaged hidden test was not graded apart: {hidden}"
    assert [t["number"] for t in results["tests"] if t not in hidden] == ["1.1", "1.4"], "not one entry per exercise"


def test_run_autograder_gives_the_stubs_zero_and_shows_no_hidden_code(autograded):
    process, results = autograded["stubs"]
    assert results is not None, f"run_autograder wrote no results.json:\n{process.stdout[-3000:]}\n{process.stderr[-3000:]}"
    assert results["score"] == 0 and results["max_score"] > 0
    hidden = [t for t in results["tests"] if t["name"].endswith("(hidden tests)")]
    assert hidden and "1 of 1 hidden test failed (worth 1 point" in hidden[0]["output"], hidden
    assert hidden[0]["visibility"] == "after_published"
    assert "hidden test failed" not in results["output"], "the table shown before publication tells of the hidden tests' results"
    shown = json.dumps(results) + process.stdout + process.stderr
    assert SECRET.lower() not in shown.lower(), "the hidden test's code or values reached the student"
