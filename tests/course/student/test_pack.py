"""`python -m labs pack`: the upload zip, refused while a module does not import."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from labs import EXERCISE_MODULES, REPO_ROOT
from tests.course.student.test_student_paths import _course_copy, _python

pytestmark = pytest.mark.slow  # each check imports the modules in processes of their own


def _with_solutions(root: Path) -> Path:
    _course_copy(root)
    for module in EXERCISE_MODULES:
        (root / "labs" / f"{module}.py").write_text((REPO_ROOT / "solutions" / f"{module}.py").read_text())
    return root


def test_pack_refuses_a_module_that_does_not_import_and_names_it(tmp_path):
    root = _with_solutions(tmp_path / "course")
    (root / "labs" / "mlp.py").write_text((root / "labs" / "mlp.py").read_text().replace("def softmax(", "def softmax(:", 1))
    process = _python(root, "-m", "labs", "pack", "--out", str(tmp_path / "up.zip"), LABS_IMPL="labs")
    assert process.returncode == 1, process.stdout + process.stderr
    assert "labs/mlp.py does not import: SyntaxError" in process.stderr and "line" in process.stderr, process.stderr
    assert "basics.py" not in process.stderr and "conv.py" not in process.stderr, "only the broken module should be named"
    assert not (tmp_path / "up.zip").exists(), "a zip was written although mlp.py does not import"


def test_pack_refuses_a_module_without_a_graded_function(tmp_path):
    root = _with_solutions(tmp_path / "course")
    (root / "labs" / "conv.py").write_text((root / "labs" / "conv.py").read_text().replace("def conv2d(", "def my_conv2d(", 1))
    process = _python(root, "-m", "labs", "pack", "--out", str(tmp_path / "up.zip"), LABS_IMPL="labs")
    assert process.returncode == 1 and "labs/conv.py lacks conv2d" in process.stderr, process.stderr
    assert not (tmp_path / "up.zip").exists()


def test_the_zip_holds_the_four_modules_and_grades_like_the_folder(tmp_path):
    root = _with_solutions(tmp_path / "course")
    zip_path = tmp_path / "up.zip"
    process = _python(root, "-m", "labs", "pack", "--out", str(zip_path), LABS_IMPL="labs")
    assert process.returncode == 0, process.stdout + process.stderr
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == sorted(f"{m}.py" for m in EXERCISE_MODULES)
        zf.extractall(tmp_path / "unzipped")
    scores = {}
    for name, folder in (("folder", root / "labs"), ("zip", tmp_path / "unzipped")):
        out = tmp_path / f"{name}.json"
        graded = _python(REPO_ROOT, "-m", "labs", "grade", "1.1", "1.4", "2.1", "--submission", str(folder), "--json", str(out), LABS_IMPL="labs")
        assert graded.returncode == 0, graded.stdout + graded.stderr
        scores[name] = json.loads(out.read_text())["score"]
    assert scores["zip"] == scores["folder"] > 0, scores
