"""What a student meets on the way: whose code a green run tested, a broken provided file, a
hand-out without solutions/. Each check runs Python in a copy of the course under tmp_path,
so that the real labs/ is never touched."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from labs.instructor.release import REPO_ROOT, generate

pytestmark = pytest.mark.slow  # every check here starts processes that import torch


def _course_copy(root: Path, folders=("labs", "tests")) -> Path:
    """`folders` of this repository, its conftest.py and pyproject.toml, copied under `root`."""
    for folder in folders:
        shutil.copytree(REPO_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", ".backup"))
    for name in ("conftest.py", "pyproject.toml"):
        shutil.copy(REPO_ROOT / name, root / name)
    return root


def _python(root: Path, *args: str, handout: bool = False, **env: str) -> subprocess.CompletedProcess:
    """`python *args` in the copy at `root`, whose labs/ comes first on PYTHONPATH.

    handout: run with `-S`, because this environment's editable install finds this repository's
    solutions/ from anywhere, and a hand-out's Python would not; site-packages stay reachable.
    """
    path = [str(root), *(site.getsitepackages() if handout else [])]
    return subprocess.run(
        [sys.executable, *(["-S"] if handout else []), *args],
        cwd=root, env={**os.environ, "PYTHONPATH": os.pathsep.join(path), **env}, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.parametrize("impl_option", [[], ["--impl", "labs"]], ids=["plain", "impl-labs"])
def test_an_exported_labs_impl_solutions_does_not_make_the_stubs_pass(tmp_path, impl_option):
    """`pytest -m ex1_7` once printed "5 passed" on an unwritten 1.7 because LABS_IMPL=solutions was exported."""
    _course_copy(tmp_path)
    for path, text in generate()[0].items():  # fresh stubs, whatever the real labs/ holds
        (tmp_path / path.relative_to(REPO_ROOT)).write_text(text)
    process = _python(tmp_path, "-m", "pytest", "-m", "ex1_7", *impl_option, "-p", "no:cacheprovider", LABS_IMPL="solutions")
    header = process.stdout.split("collected")[0]
    assert process.returncode == 1, f"the stubs of exercise 1.7 should fail:\n{process.stdout[-3000:]}{process.stderr[-3000:]}"
    assert "labs/mlp.py is not implemented yet" in process.stdout, process.stdout[-3000:]
    assert "implementation under test: labs/ (your code)" in header, header
    assert "LABS_IMPL=solutions is set in your environment but ignored" in header, header


@pytest.mark.parametrize("typo", ["x = (", "undefined_name"], ids=["SyntaxError", "NameError"])
def test_a_broken_provided_file_is_named_with_how_to_restore_it(tmp_path, typo):
    _course_copy(tmp_path)
    located = _python(tmp_path, "-c", "import labs; print(labs.__file__)", LABS_IMPL="labs")
    assert located.stdout.strip() == str(tmp_path / "labs" / "__init__.py"), f"labs is not the copy's: {located}"
    settings = tmp_path / "labs" / "provided" / "settings.py"
    settings.write_text(settings.read_text() + f"\n{typo}\n")
    process = _python(tmp_path, "-m", "pytest", "-m", "ex1_7", "-p", "no:cacheprovider", LABS_IMPL="labs")
    output = process.stdout + process.stderr
    assert process.returncode != 0, output[-3000:]
    assert "labs/provided/settings.py" in output and "git checkout labs/provided" in output, output[-3000:]
    assert "ERROR collecting" not in output and "tests/course" not in output, output[-3000:]


def test_a_handout_without_solutions_says_in_one_line_that_labs_impl_solutions_cannot_work(tmp_path):
    _course_copy(tmp_path, folders=("labs",))
    process = _python(tmp_path, "-c", "import labs", handout=True, LABS_IMPL="solutions")
    assert process.returncode != 0
    assert process.stderr.strip().count("\n") == 0 and "Traceback" not in process.stderr, process.stderr
    assert "no solutions/ folder" in process.stderr and "unset LABS_IMPL" in process.stderr, process.stderr


def test_a_handout_without_solutions_says_in_one_line_that_release_is_for_instructors(tmp_path):
    _course_copy(tmp_path, folders=("labs",))
    process = _python(tmp_path, "-m", "labs", "release", handout=True, LABS_IMPL="labs")
    assert process.returncode == 1
    assert process.stderr.strip().count("\n") == 0 and "Traceback" not in process.stderr, process.stderr
    assert "release needs solutions/" in process.stderr and "students never need to run it" in process.stderr, process.stderr


def test_solutions_beside_labs_are_found_without_being_installed(tmp_path):
    """Only `labs` is installed: LABS_IMPL=solutions finds the solutions/ folder next to it."""
    course = _course_copy(tmp_path / "course", folders=("labs", "solutions"))
    installed = tmp_path / "site"  # labs reachable from here, as an installed package is, but not solutions
    installed.mkdir()
    (installed / "labs").symlink_to(course / "labs", target_is_directory=True)
    process = _python(installed, "-c", "import labs.mlp; print(labs.mlp.__file__)", handout=True, LABS_IMPL="solutions")
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == str(course / "solutions" / "mlp.py"), process.stdout
